//! Standard output that a closed reader does not turn into a panic.
//!
//! `println!` panics when stdout is a pipe whose reader went away (`pvl-testnet status | head`):
//! "failed printing to stdout: Broken pipe", and a command that owns a testnet would unwind
//! through its clean-up in the middle of its work. `out!` writes the line if it
//! can; once the reader is gone it writes nothing more and the command goes on (and stops its
//! nodes) as if nobody were reading, like any Unix tool whose output is cut short.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout; see the module documentation.
pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("cannot write to stdout: {e}; the rest of the output is left out");
        }
    }
}

/// `println!` without the panic: see [`line`].
macro_rules! out {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
