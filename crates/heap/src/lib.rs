//! Gives the memory allocator's free pages back to the operating system.
//!
//! glibc's allocator returns freed memory to the system only from the top of a heap. Memory
//! freed below a live allocation stays resident: after a burst (a node opening hundreds of
//! connections while a network forms, each with its buffers, then closing most of them) a
//! process stays at its peak although most of it is free. Measured on an idle 100-node
//! testnet (2 cores, release build): a node held 16.9 MiB of private memory, and
//! `malloc_trim(0)` gave 5.3 MiB of it back (RSS 34.2 -> 28.9 MiB).
//!
//! [`release_free_memory`] is that call, behind a safe function. It is the only unsafe code
//! of the workspace, which is why it is a crate of its own: every other crate forbids unsafe
//! code outright. Elsewhere than on glibc (musl, macOS) it does nothing: those allocators
//! have no such call, and give memory back on their own.

/// Asks the allocator to give every free page of every arena back to the system
/// (`malloc_trim(0)` on glibc). Returns whether any memory was given back; always false where
/// there is no such call.
///
/// It walks and locks each arena in turn, so threads that allocate meanwhile wait: call it
/// from a blocking thread, now and then (the node does every few seconds), not per request.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and touches only the allocator's own state,
    // under the allocator's own locks; it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks the allocator to give its free pages back to the system; there is no such call here.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_below_a_live_allocation_is_given_back() {
        // Many blocks, then every one but the last freed: the free space sits below a live
        // block, where glibc does not return it on its own.
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8; 16 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        assert!(
            release_free_memory(),
            "32 MiB freed, and nothing given back"
        );
        drop(last);
    }
}
