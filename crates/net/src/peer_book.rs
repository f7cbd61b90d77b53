//! The peer book: the addresses of peers this node has reached, kept across restarts.
//!
//! A node that restarts would otherwise know nobody but its configured bootstrap peers, so a
//! network whose bootstrap node restarted (or that never had one) could not reassemble. The
//! event loop records, for every peer it connects to, the addresses that peer listens on (from
//! identify) or the address it was dialled at, with the time it was last connected. On start
//! the most recently seen peers are dialled; while the node has fewer connections than it
//! wants, more entries are dialled, each with its own back-off after a failed dial.
//!
//! The book is bounded: at most [`PeerBook::CAPACITY`] peers (the least recently seen is
//! forgotten first), [`PeerBook::MAX_ADDRS`] addresses per peer (the newest kept), and entries
//! not seen for [`PeerBook::MAX_AGE_MS`] are dropped when the book is loaded or saved.
//!
//! On disk it is one JSON file (`peers.json` in the node directory), written atomically
//! (temporary file, then rename) when it changed: the first change at once, later ones at most
//! every [`PeerBook::SAVE_EVERY`], and when the event loop stops. A damaged or unreadable file is reported and the node starts with
//! an empty book: the book is a cache, never a reason not to start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// One peer in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPeer {
    peer: String,
    addrs: Vec<String>,
    last_seen_ms: u64,
}

/// The file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct StoredBook {
    version: u32,
    peers: Vec<StoredPeer>,
}

/// One peer in memory.
#[derive(Debug, Clone)]
struct Entry {
    addrs: Vec<Multiaddr>,
    last_seen_ms: u64,
    /// Failed dials since the last success (not persisted).
    failures: u32,
    /// Not dialled from the book again before this instant (not persisted).
    next_dial: Option<Instant>,
}

/// The peer book (see the module documentation).
#[derive(Debug)]
pub(crate) struct PeerBook {
    path: Option<PathBuf>,
    entries: HashMap<PeerId, Entry>,
    dirty: bool,
    last_save: Instant,
}

impl PeerBook {
    /// Most peers kept.
    pub(crate) const CAPACITY: usize = 512;
    /// Most addresses kept per peer.
    pub(crate) const MAX_ADDRS: usize = 8;
    /// Entries not seen for this long (7 days) are forgotten.
    pub(crate) const MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;
    /// The file is written at most this often while the node runs.
    pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(10);
    /// The longest back-off between two dials of one entry.
    const MAX_BACKOFF: Duration = Duration::from_secs(60);

    /// An empty book that is never written (tools and tests of the network layer).
    pub(crate) fn in_memory() -> Self {
        let now = Instant::now();
        PeerBook {
            path: None,
            entries: HashMap::new(),
            dirty: false,
            // The first change is saved at once (a node killed soon after it started still
            // leaves its peers behind), later ones at most every SAVE_EVERY.
            last_save: now.checked_sub(Self::SAVE_EVERY).unwrap_or(now),
        }
    }

    /// Loads the book at `path` (a missing file is an empty book). The second value is a
    /// one-line warning when the file could not be used.
    pub(crate) fn load(path: &Path, now_ms: u64) -> (Self, Option<String>) {
        let mut book = PeerBook {
            path: Some(path.to_owned()),
            ..PeerBook::in_memory()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (book, None),
            Err(e) => {
                let warning = format!("cannot read the peer book {}: {e}", path.display());
                return (book, Some(warning));
            }
        };
        let stored: StoredBook = match serde_json::from_str(&text) {
            Ok(stored) => stored,
            Err(e) => {
                let warning = format!(
                    "the peer book {} is damaged ({e}); starting with an empty one",
                    path.display()
                );
                return (book, Some(warning));
            }
        };
        let mut skipped = 0usize;
        for peer in stored.peers {
            let Ok(id) = peer.peer.parse::<PeerId>() else {
                skipped += 1;
                continue;
            };
            let addrs: Vec<Multiaddr> = peer
                .addrs
                .iter()
                .filter_map(|a| a.parse().ok())
                .take(Self::MAX_ADDRS)
                .collect();
            if addrs.is_empty() || now_ms.saturating_sub(peer.last_seen_ms) > Self::MAX_AGE_MS {
                skipped += 1;
                continue;
            }
            book.entries.insert(
                id,
                Entry {
                    addrs,
                    last_seen_ms: peer.last_seen_ms,
                    failures: 0,
                    next_dial: None,
                },
            );
        }
        book.evict();
        let warning = (skipped > 0).then(|| {
            format!(
                "the peer book {} had {skipped} unusable or expired entries; they are dropped",
                path.display()
            )
        });
        (book, warning)
    }

    /// Number of peers in the book.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The known addresses of `peer`.
    pub(crate) fn addrs(&self, peer: &PeerId) -> Option<&[Multiaddr]> {
        self.entries.get(peer).map(|e| e.addrs.as_slice())
    }

    /// Records that `peer` was reached now, at `addrs` (newest first; merged with what was
    /// known). Resets the peer's back-off.
    pub(crate) fn record(&mut self, peer: PeerId, addrs: &[Multiaddr], now_ms: u64) {
        // Kept without a trailing `/p2p/<id>`: the entry is the peer's already.
        let usable: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| !is_unusable(a))
            .map(|a| {
                let mut a = a.clone();
                if matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                    a.pop();
                }
                a
            })
            .collect();
        let entry = self.entries.entry(peer).or_insert_with(|| Entry {
            addrs: Vec::new(),
            last_seen_ms: now_ms,
            failures: 0,
            next_dial: None,
        });
        for addr in usable.into_iter().rev() {
            entry.addrs.retain(|a| *a != addr);
            entry.addrs.insert(0, addr);
        }
        entry.addrs.truncate(Self::MAX_ADDRS);
        entry.last_seen_ms = now_ms;
        entry.failures = 0;
        entry.next_dial = None;
        if entry.addrs.is_empty() {
            self.entries.remove(&peer);
        }
        self.dirty = true;
        self.evict();
    }

    /// Records a failed dial of `peer`: its next dial from the book waits longer.
    pub(crate) fn dial_failed(&mut self, peer: &PeerId, now: Instant) {
        if let Some(entry) = self.entries.get_mut(peer) {
            entry.failures = entry.failures.saturating_add(1);
            let backoff = Duration::from_secs(1u64 << entry.failures.min(6)).min(Self::MAX_BACKOFF);
            entry.next_dial = Some(now + backoff);
        }
    }

    /// Forgets `peer` (it is banned, or not on the allow-list).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        if self.entries.remove(peer).is_some() {
            self.dirty = true;
        }
    }

    /// Up to `max` peers to dial now, the most recently seen first, skipping those `skip`
    /// names and those still backing off. Each one returned is not returned again for a second.
    pub(crate) fn due_for_dial(
        &mut self,
        max: usize,
        now: Instant,
        skip: impl Fn(&PeerId) -> bool,
    ) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut due: Vec<(&PeerId, &Entry)> = self
            .entries
            .iter()
            .filter(|(peer, e)| e.next_dial.is_none_or(|t| t <= now) && !skip(peer))
            .collect();
        due.sort_by_key(|(_, e)| std::cmp::Reverse(e.last_seen_ms));
        let picked: Vec<(PeerId, Vec<Multiaddr>)> = due
            .into_iter()
            .take(max)
            .map(|(peer, e)| (*peer, e.addrs.clone()))
            .collect();
        for (peer, _) in &picked {
            if let Some(entry) = self.entries.get_mut(peer) {
                entry.next_dial = Some(now + Duration::from_secs(1));
            }
        }
        picked
    }

    /// Writes the book if it changed and `force` or [`Self::SAVE_EVERY`] has passed.
    pub(crate) fn save_if_due(&mut self, force: bool) -> Result<(), String> {
        if !self.dirty || (!force && self.last_save.elapsed() < Self::SAVE_EVERY) {
            return Ok(());
        }
        let Some(path) = self.path.clone() else {
            self.dirty = false;
            return Ok(());
        };
        self.last_save = Instant::now();
        let mut peers: Vec<StoredPeer> = self
            .entries
            .iter()
            .map(|(peer, e)| StoredPeer {
                peer: peer.to_string(),
                addrs: e.addrs.iter().map(ToString::to_string).collect(),
                last_seen_ms: e.last_seen_ms,
            })
            .collect();
        peers.sort_by_key(|p| std::cmp::Reverse(p.last_seen_ms));
        let text = serde_json::to_string_pretty(&StoredBook { version: 1, peers })
            .map_err(|e| format!("cannot encode the peer book: {e}"))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write the peer book {}: {e}", path.display()))?;
        self.dirty = false;
        Ok(())
    }

    /// Drops the least recently seen entries beyond [`Self::CAPACITY`].
    fn evict(&mut self) {
        if self.entries.len() <= Self::CAPACITY {
            return;
        }
        let mut by_age: Vec<(PeerId, u64)> = self
            .entries
            .iter()
            .map(|(p, e)| (*p, e.last_seen_ms))
            .collect();
        by_age.sort_by_key(|(_, seen)| *seen);
        let excess = self.entries.len() - Self::CAPACITY;
        for (peer, _) in by_age.into_iter().take(excess) {
            self.entries.remove(&peer);
        }
    }
}

/// Addresses never worth keeping: unspecified ones (`0.0.0.0`, `::`), which no peer can dial.
fn is_unusable(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn survives_a_round_trip_through_its_file_and_ages_out() {
        let dir = std::env::temp_dir().join(format!("pvl-peer-book-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peers.json");
        let _ = std::fs::remove_file(&path);
        let now = 10 * PeerBook::MAX_AGE_MS;
        let (mut book, warning) = PeerBook::load(&path, now);
        assert!(warning.is_none() && book.len() == 0);
        let (fresh, old) = (peer(), peer());
        book.record(fresh, &[addr(1), addr(2)], now);
        book.record(old, &[addr(3)], now - PeerBook::MAX_AGE_MS - 1);
        book.save_if_due(true).unwrap();
        let (again, warning) = PeerBook::load(&path, now);
        assert_eq!(again.addrs(&fresh).unwrap(), &[addr(1), addr(2)]);
        assert!(
            again.addrs(&old).is_none(),
            "an entry older than the limit is dropped"
        );
        assert!(warning.unwrap().contains("1 unusable or expired"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_reported_and_the_book_starts_empty() {
        let dir = std::env::temp_dir().join(format!("pvl-peer-book-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peers.json");
        std::fs::write(&path, "{not json").unwrap();
        let (book, warning) = PeerBook::load(&path, 0);
        assert_eq!(book.len(), 0);
        assert!(warning.unwrap().contains("is damaged"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn is_bounded_in_peers_and_addresses() {
        let mut book = PeerBook::in_memory();
        let first = peer();
        book.record(first, &[addr(1)], 0);
        for i in 0..PeerBook::CAPACITY {
            book.record(peer(), &[addr(2)], 1 + i as u64);
        }
        assert_eq!(book.len(), PeerBook::CAPACITY);
        assert!(
            book.addrs(&first).is_none(),
            "the least recently seen goes first"
        );
        let many: Vec<Multiaddr> = (0..20).map(addr).collect();
        let p = peer();
        book.record(p, &many, 5_000);
        assert_eq!(book.addrs(&p).unwrap().len(), PeerBook::MAX_ADDRS);
        let unspecified: Multiaddr = "/ip4/0.0.0.0/tcp/1".parse().unwrap();
        let q = peer();
        book.record(q, &[unspecified], 5_000);
        assert!(book.addrs(&q).is_none(), "no dialable address, no entry");
        let r = peer();
        let with_id: Multiaddr = format!("/dns4/localhost/tcp/7/p2p/{r}").parse().unwrap();
        book.record(r, &[with_id], 5_000);
        let kept: Multiaddr = "/dns4/localhost/tcp/7".parse().unwrap();
        assert_eq!(book.addrs(&r).unwrap(), &[kept]);
    }

    #[test]
    fn dials_the_most_recent_first_and_backs_off_after_failures() {
        let mut book = PeerBook::in_memory();
        let (a, b, c) = (peer(), peer(), peer());
        book.record(a, &[addr(1)], 1);
        book.record(b, &[addr(2)], 3);
        book.record(c, &[addr(3)], 2);
        let now = Instant::now();
        let picked: Vec<PeerId> = book
            .due_for_dial(2, now, |p| *p == c)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(picked, vec![b, a]);
        assert!(
            book.due_for_dial(3, now, |_| false)
                .iter()
                .all(|(p, _)| *p == c),
            "picked ones wait"
        );
        book.dial_failed(&b, now);
        book.dial_failed(&b, now);
        let later = now + Duration::from_secs(2);
        assert!(
            book.due_for_dial(3, later, |_| false)
                .iter()
                .all(|(p, _)| *p != b)
        );
        let much_later = now + Duration::from_secs(5);
        assert!(
            book.due_for_dial(3, much_later, |_| false)
                .iter()
                .any(|(p, _)| *p == b)
        );
    }
}
