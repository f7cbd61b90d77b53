//! Network-namespace mode (Linux, root, `ip` and `tc` from iproute2): every node in its own
//! namespace, one veth pair per node whose host end is attached to a bridge this testnet
//! creates, so traffic between nodes crosses that bridge and nothing else. `tc netem` on each
//! namespace's interface adds latency and loss. `partition NODE...` moves the host ends of the
//! named nodes onto a second bridge (they still reach each other, not the rest); `heal` moves
//! them back. `down` deletes every namespace, veth and bridge listed in the state file.
//!
//! Names carry a tag derived from the testnet directory, so two testnets do not collide:
//! namespaces `pvl-TAG-i`, host veth ends `pvTAGhI`, bridges `pvbrTAG` and `pvbrTAGp`.
//!
//! **NAT testbed** (`--nat K`): the main bridge is the public segment (10.77.0.0/24) and holds
//! node-0 (the bootstrap node) and node-1 (the circuit relay). Each of the K private segments
//! `s` is a bridge `pvbrTAGnS` (10.78.S.0/24) behind its own router namespace `pvl-TAG-rS`:
//! one leg on the public bridge (10.77.0.(200+S), veth `pvTAGrS`), one on its private bridge
//! (10.78.S.1, veth `pvTAGqS`), `ip_forward` on, and an nftables table `pvlnat` that
//! masquerades what leaves through the public leg and drops new connections coming in on it
//! (a home router: nobody outside can dial in). Masquerading keeps the inside port when it can,
//! so DCUtR hole punching works; `--symmetric-nat` picks a random outside port per connection
//! instead, which defeats it (connections between NATs then stay relayed). Nodes 2, 3, ... go round-robin onto the
//! private segments (node-i on segment (i-2) mod K) with their router as default gateway.
//! Public nodes have no route into any private segment.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The subnet's first three octets; node i is `.(i+2)`, the bridge has none.
const SUBNET: &str = "10.77.0";
/// The most nodes one /24 holds here.
const MAX_NODES: usize = 250;
/// The private segments' first two octets: segment s is `10.78.s.0/24`.
const PRIVATE_NET: &str = "10.78";
/// The most private segments of the NAT testbed.
pub const MAX_SEGMENTS: usize = 9;
/// Nodes on the public segment of the NAT testbed (the bootstrap node and the relay).
pub const PUBLIC_NODES: usize = 2;

/// Options of netns mode.
#[derive(Debug, Clone, Default)]
pub struct NetnsOptions {
    /// Added one-way delay on every node's interface, ms.
    pub latency_ms: u32,
    /// Packet loss on every node's interface, percent.
    pub loss_pct: f32,
    /// NAT testbed: this many private segments, each behind its own NAT router (0: none).
    pub nat_segments: usize,
    /// NAT testbed: the routers pick a random outside port for every connection (an
    /// endpoint-dependent, "symmetric" NAT), which defeats hole punching.
    pub nat_symmetric: bool,
}

/// What netns mode created (recorded in the state file, so `down` can remove it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetnsLayout {
    /// Name tag.
    pub tag: String,
    /// Number of nodes.
    pub nodes: usize,
    /// The main bridge.
    pub bridge: String,
    /// The bridge of a partitioned group.
    pub partition_bridge: String,
    /// NAT testbed: the number of private segments behind NAT routers (0: none).
    #[serde(default)]
    pub nat_segments: usize,
    /// NAT testbed: symmetric NAT routers (a random outside port per connection).
    #[serde(default)]
    pub nat_symmetric: bool,
}

impl NetnsLayout {
    /// The namespace of node `index`.
    pub fn namespace(&self, index: usize) -> String {
        format!("pvl-{}-{index}", self.tag)
    }

    /// The host end of node `index`'s veth pair.
    pub fn host_veth(&self, index: usize) -> String {
        format!("pv{}h{index}", self.tag)
    }

    /// The address of node `index`.
    pub fn address(&self, index: usize) -> String {
        match self.segment(index) {
            Some(segment) => format!("{PRIVATE_NET}.{segment}.{}", index + 2),
            None => format!("{SUBNET}.{}", index + 2),
        }
    }

    /// NAT testbed: the private segment node `index` is on (`None`: the public segment).
    pub fn segment(&self, index: usize) -> Option<usize> {
        (self.nat_segments > 0 && index >= PUBLIC_NODES)
            .then(|| (index - PUBLIC_NODES) % self.nat_segments)
    }

    /// The bridge node `index` is attached to.
    fn bridge_of(&self, index: usize) -> String {
        match self.segment(index) {
            Some(segment) => self.segment_bridge(segment),
            None => self.bridge.clone(),
        }
    }

    /// The bridge of private segment `segment`.
    pub fn segment_bridge(&self, segment: usize) -> String {
        format!("pvbr{}n{segment}", self.tag)
    }

    /// The NAT router namespace of private segment `segment`.
    pub fn router(&self, segment: usize) -> String {
        format!("pvl-{}-r{segment}", self.tag)
    }

    /// The router's public address (its leg on the public bridge).
    pub fn router_public_address(&self, segment: usize) -> String {
        format!("{SUBNET}.{}", 200 + segment)
    }

    /// Where node `index` sits, in words (for `up`'s output).
    pub fn placement(&self, index: usize) -> String {
        match (self.nat_segments, self.segment(index)) {
            (0, _) => "bridge".into(),
            (_, Some(segment)) => format!(
                "private segment {segment} behind NAT {} ({})",
                self.router(segment),
                self.router_public_address(segment)
            ),
            (_, None) if index == 0 => "public segment (bootstrap)".into(),
            (_, None) => "public segment (relay)".into(),
        }
    }
}

/// Why netns mode cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let root = rustix::process::geteuid().is_root();
    let tools = ["ip", "tc"]
        .iter()
        .all(|tool| Command::new(tool).arg("-V").output().is_ok());
    match (root, tools) {
        (true, true) => None,
        (false, _) => Some("skipped: needs root and ip netns (run as root)".into()),
        (true, false) => {
            Some("skipped: needs root and ip netns (install iproute2: `ip` and `tc`)".into())
        }
    }
}

/// A short tag for names from the testnet directory (4 hex digits of a hash of its path).
fn tag_for(dir: &Path) -> String {
    let hash = dir
        .display()
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{:04x}", hash & 0xffff)
}

/// Creates the bridges, namespaces and veth pairs for `nodes` nodes.
pub fn create(dir: &Path, nodes: usize, options: &NetnsOptions) -> Result<NetnsLayout> {
    if let Some(reason) = unavailable() {
        bail!("{reason}");
    }
    if nodes > MAX_NODES {
        bail!("netns mode holds at most {MAX_NODES} nodes");
    }
    let segments = options.nat_segments;
    if segments > MAX_SEGMENTS {
        bail!("the NAT testbed has at most {MAX_SEGMENTS} private segments");
    }
    if segments > 0 && nodes < PUBLIC_NODES + segments {
        bail!(
            "--nat {segments} needs at least {} nodes: node-0 (bootstrap) and node-1 (relay) on              the public segment and one node per private segment",
            PUBLIC_NODES + segments
        );
    }
    if segments > 0
        && !Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        bail!("the NAT testbed needs nftables (`nft`): apt-get install nftables");
    }
    let tag = tag_for(dir);
    let layout = NetnsLayout {
        bridge: format!("pvbr{tag}"),
        partition_bridge: format!("pvbr{tag}p"),
        tag,
        nodes,
        nat_segments: segments,
        nat_symmetric: options.nat_symmetric,
    };
    // Leftovers of an earlier run with the same tag would make `ip` fail.
    destroy(&layout)?;
    let made = (|| -> Result<()> {
        for bridge in layout.bridges() {
            ip(&["link", "add", &bridge, "type", "bridge"])?;
            ip(&["link", "set", &bridge, "up"])?;
        }
        for segment in 0..segments {
            add_router(&layout, segment)?;
        }
        for index in 0..nodes {
            add_node(&layout, index, options)?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        let _ = destroy(&layout);
        return Err(e);
    }
    Ok(layout)
}

fn add_node(layout: &NetnsLayout, index: usize, options: &NetnsOptions) -> Result<()> {
    let ns = layout.namespace(index);
    let host = layout.host_veth(index);
    let peer = format!("{host}n");
    ip(&["netns", "add", &ns])?;
    ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
    ip(&["link", "set", &peer, "netns", &ns])?;
    ip(&["link", "set", &host, "master", &layout.bridge_of(index)])?;
    ip(&["link", "set", &host, "up"])?;
    let in_ns = |args: &[&str]| -> Result<()> {
        let mut full = vec!["netns", "exec", &ns, "ip"];
        full.extend_from_slice(args);
        ip(&full)
    };
    in_ns(&["link", "set", "lo", "up"])?;
    in_ns(&["link", "set", &peer, "name", "eth0"])?;
    let cidr = format!("{}/24", layout.address(index));
    in_ns(&["addr", "add", &cidr, "dev", "eth0"])?;
    in_ns(&["link", "set", "eth0", "up"])?;
    if let Some(segment) = layout.segment(index) {
        let gateway = format!("{PRIVATE_NET}.{segment}.1");
        in_ns(&["route", "add", "default", "via", &gateway])?;
    }
    if options.latency_ms > 0 || options.loss_pct > 0.0 {
        let delay = format!("{}ms", options.latency_ms);
        let loss = format!("{}%", options.loss_pct);
        run(Command::new("ip").args([
            "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay",
            &delay, "loss", &loss,
        ]))
        .context(
            "cannot add latency or loss: `tc qdisc ... netem` needs the kernel's sch_netem \
             (run without --latency/--loss on this kernel)",
        )?;
    }
    Ok(())
}

/// The nftables ruleset of a NAT router: masquerade out of the public leg (`eth0`), and let
/// in from it only what answers a connection made from inside.
const NAT_RULES: &str = "table inet pvlnat {
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname \"eth0\" ct state established,related accept
    iifname \"eth0\" drop
  }
  chain input {
    type filter hook input priority 0; policy accept;
    iifname \"eth0\" ct state new drop
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname \"eth0\" MASQUERADE
  }
}
";

/// Creates the NAT router of private segment `segment`.
fn add_router(layout: &NetnsLayout, segment: usize) -> Result<()> {
    let ns = layout.router(segment);
    let public = format!("pv{}r{segment}", layout.tag);
    let private = format!("pv{}q{segment}", layout.tag);
    ip(&["netns", "add", &ns])?;
    for (host, bridge, inner) in [
        (&public, layout.bridge.clone(), "eth0"),
        (&private, layout.segment_bridge(segment), "eth1"),
    ] {
        let peer = format!("{host}n");
        ip(&["link", "add", host, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &ns])?;
        ip(&["link", "set", host, "master", &bridge])?;
        ip(&["link", "set", host, "up"])?;
        ip(&[
            "netns", "exec", &ns, "ip", "link", "set", &peer, "name", inner,
        ])?;
        ip(&["netns", "exec", &ns, "ip", "link", "set", inner, "up"])?;
    }
    ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
    let public_cidr = format!("{}/24", layout.router_public_address(segment));
    let private_cidr = format!("{PRIVATE_NET}.{segment}.1/24");
    for (cidr, dev) in [(&public_cidr, "eth0"), (&private_cidr, "eth1")] {
        ip(&["netns", "exec", &ns, "ip", "addr", "add", cidr, "dev", dev])?;
    }
    run(Command::new("ip").args([
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
    ]))?;
    let rules = std::env::temp_dir().join(format!("pvl-nat-{}-{segment}.nft", layout.tag));
    let masquerade = if layout.nat_symmetric {
        "masquerade random"
    } else {
        "masquerade"
    };
    std::fs::write(&rules, NAT_RULES.replace("MASQUERADE", masquerade))?;
    let loaded = run(Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-f"])
        .arg(&rules));
    let _ = std::fs::remove_file(&rules);
    loaded.context("cannot load the NAT router's nftables rules")
}

/// Moves the named nodes onto the partition bridge: they reach each other, not the rest.
pub fn partition(layout: &NetnsLayout, nodes: &[usize]) -> Result<()> {
    for &index in nodes {
        ip(&[
            "link",
            "set",
            &layout.host_veth(index),
            "master",
            &layout.partition_bridge,
        ])?;
    }
    Ok(())
}

/// Puts every node back on the main bridge.
pub fn heal(layout: &NetnsLayout) -> Result<()> {
    for index in 0..layout.nodes {
        ip(&[
            "link",
            "set",
            &layout.host_veth(index),
            "master",
            &layout.bridge_of(index),
        ])?;
    }
    Ok(())
}

/// Deletes every namespace, veth and bridge of the layout that exists.
pub fn destroy(layout: &NetnsLayout) -> Result<()> {
    let existing_ns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .context("cannot run `ip netns list`")?
            .stdout,
    )
    .into_owned();
    for index in 0..layout.nodes {
        let ns = layout.namespace(index);
        if existing_ns
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str()))
        {
            ip(&["netns", "del", &ns])?;
        }
        del_link(&layout.host_veth(index))?;
    }
    for segment in 0..layout.nat_segments {
        let ns = layout.router(segment);
        if existing_ns
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str()))
        {
            ip(&["netns", "del", &ns])?;
        }
        for host in [
            format!("pv{}r{segment}", layout.tag),
            format!("pv{}q{segment}", layout.tag),
        ] {
            del_link(&host)?;
        }
    }
    for bridge in layout.bridges() {
        del_link(&bridge)?;
    }
    Ok(())
}

impl NetnsLayout {
    /// Every bridge of the layout.
    fn bridges(&self) -> Vec<String> {
        let mut bridges = vec![self.bridge.clone(), self.partition_bridge.clone()];
        bridges.extend((0..self.nat_segments).map(|s| self.segment_bridge(s)));
        bridges
    }
}

/// Deletes a link if it exists. The host end of a veth pair vanishes on its own, a moment
/// after the namespace holding its peer is deleted: a link gone in between is not an error.
fn del_link(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    match ip(&["link", "del", name]) {
        Err(_) if !link_exists(name) => Ok(()),
        other => other,
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

fn run(command: &mut Command) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let layout = NetnsLayout {
            tag: tag_for(Path::new("/tmp/some/testnet")),
            nodes: 250,
            bridge: String::new(),
            partition_bridge: String::new(),
            nat_segments: 0,
            nat_symmetric: false,
        };
        assert!(format!("{}n", layout.host_veth(249)).len() <= 15);
        assert!(format!("pvbr{}p", layout.tag).len() <= 15);
        assert_eq!(layout.address(0), "10.77.0.2");
    }

    #[test]
    fn the_nat_testbed_puts_two_nodes_in_public_and_the_rest_round_robin() {
        let layout = NetnsLayout {
            tag: "abcd".into(),
            nodes: 5,
            bridge: "pvbrabcd".into(),
            partition_bridge: "pvbrabcdp".into(),
            nat_segments: 2,
            nat_symmetric: false,
        };
        assert_eq!(layout.segment(0), None);
        assert_eq!(layout.segment(1), None);
        assert_eq!(layout.segment(2), Some(0));
        assert_eq!(layout.segment(3), Some(1));
        assert_eq!(layout.segment(4), Some(0));
        assert_eq!(layout.address(1), "10.77.0.3");
        assert_eq!(layout.address(3), "10.78.1.5");
        assert_eq!(layout.bridge_of(4), "pvbrabcdn0");
        assert!(format!("pv{}q{}n", layout.tag, MAX_SEGMENTS - 1).len() <= 15);
        assert_eq!(layout.bridges().len(), 4);
    }
}
