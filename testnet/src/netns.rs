//! Network-namespace mode (Linux, root, `ip` and `tc` from iproute2): every node in its own
//! namespace, one veth pair per node whose host end is attached to a bridge this testnet
//! creates, so traffic between nodes crosses that bridge and nothing else. `tc netem` on each
//! namespace's interface adds latency and loss. `partition NODE...` moves the host ends of the
//! named nodes onto a second bridge (they still reach each other, not the rest); `heal` moves
//! them back. `down` deletes every namespace, veth and bridge listed in the state file.
//!
//! Names carry a tag derived from the testnet directory, so two testnets do not collide:
//! namespaces `pvl-TAG-i`, host veth ends `pvTAGhI`, bridges `pvbrTAG` and `pvbrTAGp`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The subnet's first three octets; node i is `.(i+2)`, the bridge has none.
const SUBNET: &str = "10.77.0";
/// The most nodes one /24 holds here.
const MAX_NODES: usize = 250;

/// Options of netns mode.
#[derive(Debug, Clone, Default)]
pub struct NetnsOptions {
    /// Added one-way delay on every node's interface, ms.
    pub latency_ms: u32,
    /// Packet loss on every node's interface, percent.
    pub loss_pct: f32,
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
        format!("{SUBNET}.{}", index + 2)
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
    let tag = tag_for(dir);
    let layout = NetnsLayout {
        bridge: format!("pvbr{tag}"),
        partition_bridge: format!("pvbr{tag}p"),
        tag,
        nodes,
    };
    // Leftovers of an earlier run with the same tag would make `ip` fail.
    destroy(&layout)?;
    let made = (|| -> Result<()> {
        for bridge in [&layout.bridge, &layout.partition_bridge] {
            ip(&["link", "add", bridge, "type", "bridge"])?;
            ip(&["link", "set", bridge, "up"])?;
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
    ip(&["link", "set", &host, "master", &layout.bridge])?;
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
            &layout.bridge,
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
        let host = layout.host_veth(index);
        if link_exists(&host) {
            ip(&["link", "del", &host])?;
        }
    }
    for bridge in [&layout.bridge, &layout.partition_bridge] {
        if link_exists(bridge) {
            ip(&["link", "del", bridge])?;
        }
    }
    Ok(())
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
        };
        assert!(format!("{}n", layout.host_veth(249)).len() <= 15);
        assert!(format!("pvbr{}p", layout.tag).len() <= 15);
        assert_eq!(layout.address(0), "10.77.0.2");
    }
}
