//! Build script of the `pvl` binary: code layout for release builds.
//!
//! A node touches about 6 MB of the binary's 19 MB of machine code, but those functions lie
//! scattered across `.text`, and the kernel maps code in 64 KiB blocks around each page fault
//! (fault-around). Before this script, each node of a 100-node testnet had about 16 MiB of
//! the binary resident, much of it code it never ran. `symbol-order.txt` lists the functions a
//! node ran in a profiled testnet (hottest first); the linker places them together at the
//! start of `.text`, so a node's code pages are the functions it runs. Functions missing from
//! the list (a path the profile did not take, a symbol renamed since) are laid out as before:
//! a stale list costs memory, never correctness. `symbol-order.sh` beside it regenerates it.
//!
//! Only where the toolchain links with rust-lld by default (x86_64 Linux, Rust 1.90 and
//! later), only in release builds, and not when a linker of one's own is configured; set
//! `PVL_SYMBOL_ORDER=0` to leave it out.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=symbol-order.txt");
    println!("cargo::rerun-if-env-changed=PVL_SYMBOL_ORDER");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if let Some(order) = ordering_file() {
        println!(
            "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // The list names the symbols of one build; those gone since are skipped quietly.
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The ordering file, when this build links with rust-lld and wants it.
fn ordering_file() -> Option<PathBuf> {
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("PVL_SYMBOL_ORDER") == "0"
        || var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        || !rustc_links_with_lld()
    {
        return None;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    order.is_file().then_some(order)
}

/// rustc 1.90 and later link x86_64 Linux binaries with its bundled rust-lld.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(output) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&output.stdout);
    let mut version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
