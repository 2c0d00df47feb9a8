//! Hand-built robust lists in shared memory, and threads and processes that die holding them.

use crate::sys::{self, Shared};
use std::time::Duration;

/// Size of `struct robust_list_head` on x86_64.
pub const HEAD_LEN: usize = 24;

/// A robust list head and its entries in one `MAP_SHARED` region, visible to the parent after
/// the owner died. The head is at the start; entry `i` at `0x100 + 0x40 * i`.
pub struct List {
    pub mem: Shared,
}

impl List {
    pub fn new(len: usize) -> List {
        List {
            mem: Shared::new(len.max(4096)),
        }
    }

    pub fn head(&self) -> usize {
        self.mem.base
    }

    pub fn entry(&self, i: usize) -> usize {
        self.mem.at(0x100 + 0x40 * i)
    }

    /// Links `links` (entry addresses, bit 0 = PI) after the head, in order and back to the head,
    /// and sets `futex_offset` and `list_op_pending` (raw, 0 for none).
    pub fn link(&self, links: &[usize], futex_offset: isize, pending: usize) {
        let head = self.head();
        sys::write_usize(head, links.first().copied().unwrap_or(head));
        sys::write_usize(head + 8, futex_offset as usize);
        sys::write_usize(head + 16, pending);
        for (i, l) in links.iter().enumerate() {
            sys::write_usize(l & !1, links.get(i + 1).copied().unwrap_or(head));
        }
    }
}

/// Forks a process that registers the robust list at `head`, sets each of `owned` to its TID
/// (or'ed with the given bits), and exits: its exit walks the list. Returns its wait status.
pub fn process_dies(head: usize, owned: &[(usize, u32)]) -> i32 {
    let pid = sys::fork_with(|| {
        let tid = sys::gettid();
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 2;
        }
        for &(addr, bits) in owned {
            // SAFETY: the caller's words lie in the shared mapping; some tests misalign them.
            unsafe { std::ptr::write_unaligned(addr as *mut u32, tid | bits) };
        }
        0
    });
    sys::wait_pid(pid)
}

/// Like [`process_dies`], but the process execs `/bin/sleep` instead: exec walks the list.
/// Returns the pid of the sleeping process, to be killed by the caller.
pub fn process_execs(head: usize, owned: &[(usize, u32)]) -> libc::pid_t {
    sys::fork_with(|| {
        let tid = sys::gettid();
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 2;
        }
        for &(addr, bits) in owned {
            sys::write_u32(addr, tid | bits);
        }
        let argv = [c"/bin/sleep".as_ptr(), c"30".as_ptr(), std::ptr::null()];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv.
        unsafe { libc::execv(argv[0], argv.as_ptr()) };
        3
    })
}

/// Waiters blocked in shared `FUTEX_WAIT` on one word.
pub struct Waiters {
    addr: usize,
    threads: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Waiters {
    /// Starts `n` threads waiting on `addr` while it holds `val`, and returns once every one of
    /// them sleeps on the futex.
    pub fn start(addr: usize, val: u32, n: usize) -> Result<Waiters, String> {
        let mut threads = Vec::new();
        for _ in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                tx.send(sys::gettid()).unwrap();
                sys::futex_wait(addr, val, Duration::from_secs(60))
            }));
            let tid = rx.recv().map_err(|e| e.to_string())?;
            if !sys::wait_blocked_in_futex(sys::getpid(), tid) {
                return Err(format!("waiter {} never blocked in futex()", tid));
            }
        }
        Ok(Waiters { addr, threads })
    }

    /// Returns how many waiters were woken before this call: wakes the rest itself (the number
    /// FUTEX_WAKE reports is exactly those still queued), then joins all.
    pub fn woken_before(self) -> Result<usize, String> {
        let n = self.threads.len();
        let ours = sys::futex_wake(self.addr, i32::MAX).map_err(|e| e.to_string())? as usize;
        for t in self.threads {
            t.join()
                .map_err(|_| "waiter panicked".to_string())?
                .map_err(|e| format!("waiter: {}", e))?;
        }
        if ours > n {
            return Err(format!("FUTEX_WAKE woke {} of {} waiters", ours, n));
        }
        Ok(n - ours)
    }
}
