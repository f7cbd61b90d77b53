//! Processes by pid: liveness, signals, resource use from `/proc`, and the clean-up that runs on
//! every exit path (normal return, error, Ctrl-C, SIGTERM).
//!
//! Nodes outlive the `pvl-testnet up` invocation that started them, so they are addressed by the
//! pid recorded in `DIR/node-i/pid`, not by a `Child` handle. Signals go through `rustix` (no
//! `unsafe`). A command that owns its testnet (`demo`, `bench`, `chaos`) registers the testnet
//! directory here; [`install_interrupt_handler`] and [`CleanupGuard`] stop every registered
//! testnet when the command ends, however it ends.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Testnet directories whose nodes must be stopped when this process ends.
static OWNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Whether a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_field(&stat, 0), Some("Z") | Some("X")),
        Err(_) => false,
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let _ = rustix::process::kill_process(pid, signal);
}

/// SIGTERM to every pid, then up to `grace` for them to exit, then SIGKILL to the stragglers.
/// Returns the pids that had to be killed.
pub fn terminate_all(pids: &[u32], grace: Duration) -> Vec<u32> {
    for &pid in pids {
        signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stragglers: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &pid in &stragglers {
        signal(pid, Signal::KILL);
    }
    stragglers
}

/// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time in clock ticks (fields 14 and 15 of `/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let utime: u64 = stat_field(&stat, 11)?.parse().ok()?;
    let stime: u64 = stat_field(&stat, 12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second for [`cpu_ticks`] (USER_HZ, 100 on every Linux configuration in use).
pub const TICKS_PER_SECOND: u64 = 100;

/// Field `n` of `/proc/PID/stat` counted from the state field (0), after the `(comm)` that may
/// contain spaces.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(n)
}

/// Registers a testnet directory to stop when this process ends.
pub fn own(dir: PathBuf) {
    if let Ok(mut owned) = OWNED.lock() {
        owned.push(dir);
    }
}

/// Stops every registered testnet (idempotent: a stopped testnet is unregistered).
pub fn stop_owned() {
    let dirs: Vec<PathBuf> = match OWNED.lock() {
        Ok(mut owned) => std::mem::take(&mut *owned),
        Err(_) => return,
    };
    for dir in dirs {
        if let Err(e) = crate::testnet::down_dir(&dir) {
            eprintln!("clean-up of {}: {e:#}", dir.display());
        }
    }
}

/// Stops the registered testnets when dropped (normal return, `?` errors, panics).
pub struct CleanupGuard;

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        stop_owned();
    }
}

/// On Ctrl-C or SIGTERM: stop every registered testnet and exit with 130.
pub fn install_interrupt_handler() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            runtime.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            eprintln!("\ninterrupted: stopping the testnet");
            stop_owned();
            std::process::exit(130);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(cpu_ticks(me).is_some());
    }

    #[test]
    fn a_finished_child_is_not_alive_once_reaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn stat_fields_survive_spaces_in_the_command_name() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        assert_eq!(stat_field(stat, 0), Some("S"));
        assert_eq!(stat_field(stat, 11), Some("7"));
        assert_eq!(stat_field(stat, 12), Some("3"));
    }
}
