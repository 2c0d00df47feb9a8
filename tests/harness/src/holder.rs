//! Holders: threads and processes that die between releasing a robust futex and clearing their
//! `list_op_pending`, the window of the race. A holder registers a robust list head (in a shared
//! control page the test can read) whose `list_op_pending` points at a lock, signals that it is
//! ready, and waits to be told to die.

use crate::list::HEAD_LEN;
use crate::sys::{self, Shared};
use std::time::Duration;

/// The futex_offset of the holders' heads: the word lies 0x20 bytes before the list entry, as in
/// glibc's mutexes (whose offsets are negative too).
pub const OFFSET: isize = -0x20;

/// Up to 32 holders share one control page: head `i` at `64 * i`, ready flag `i` at
/// `2048 + 4 * i` (the holder's TID once registered), and one go word at 3072.
pub struct Control {
    pub mem: Shared,
}

impl Control {
    pub fn new() -> Control {
        Control {
            mem: Shared::new(4096),
        }
    }

    pub fn head(&self, i: usize) -> usize {
        self.mem.at(64 * i)
    }

    /// The `list_op_pending` slot of holder `i`.
    pub fn slot(&self, i: usize) -> usize {
        self.head(i) + 16
    }

    fn ready(&self, i: usize) -> usize {
        self.mem.at(2048 + 4 * i)
    }

    fn go(&self) -> usize {
        self.mem.at(3072)
    }

    /// Prepares head `i`: empty list, pending entry for the futex word `word` (in the holder's
    /// own address space), with the PI bit if `pi`.
    pub fn prepare(&self, i: usize, word: usize, pi: bool) {
        let h = self.head(i);
        sys::write_usize(h, h);
        sys::write_usize(h + 8, OFFSET as usize);
        sys::write_usize(h + 16, pending_for(word) | pi as usize);
        sys::write_u32(self.ready(i), 0);
    }

    /// Publishes that holder `i`, whose TID is `tid`, registered its head.
    pub fn set_ready(&self, i: usize, tid: u32) {
        sys::write_u32(self.ready(i), tid);
    }

    /// Waits until holder `i` registered its head; returns its TID.
    pub fn wait_ready(&self, i: usize) -> Result<u32, String> {
        for _ in 0..20000 {
            let tid = sys::read_u32(self.ready(i));
            if tid != 0 {
                return Ok(tid);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(format!("holder {} never got ready", i))
    }

    /// Tells every holder to die.
    pub fn release(&self) {
        sys::write_u32(self.go(), 1);
        let _ = sys::futex_wake(self.go(), i32::MAX);
    }

    /// The holder side: registers head `i`, publishes its TID (storing it first in each of
    /// `tid_words`), and waits for the go. Only raw system calls: it also runs in a `CLONE_VM`
    /// sibling that shares the test's memory but not its thread-local state.
    pub fn hold(&self, i: usize, tid_words: &[usize]) {
        let tid = sys::gettid();
        if sys::set_robust_list(self.head(i), HEAD_LEN).is_err() {
            return;
        }
        for &w in tid_words {
            sys::write_u32(w, tid);
        }
        self.set_ready(i, tid);
        while sys::read_u32(self.go()) == 0 {
            let _ = sys::futex_wait(self.go(), 0, Duration::from_secs(1));
        }
    }
}

/// The list entry whose futex word is `word`.
pub fn pending_for(word: usize) -> usize {
    word.wrapping_add_signed(-OFFSET)
}

/// A forked process holding head `i` of `ctl`; `word` runs in the child and returns the address
/// of the futex word in the child's own address space (it may map memory itself).
pub fn fork_holder(ctl: &Control, i: usize, pi: bool, word: impl FnOnce() -> usize) -> libc::pid_t {
    sys::fork_with(|| {
        let w = word();
        ctl.prepare(i, w, pi);
        ctl.hold(i, &[]);
        0
    })
}

struct SiblingArgs {
    ctl: *const Control,
    i: usize,
}

extern "C" fn sibling_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the `SiblingArgs` of `clone_vm_holder`, alive until reaped.
    let a = unsafe { &*(arg as *const SiblingArgs) };
    // SAFETY: the control page is shared (CLONE_VM) and outlives the sibling.
    unsafe { (*a.ctl).hold(a.i, &[]) };
    // SAFETY: exits this task only, without touching the state it shares with its parent.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    0
}

/// A `CLONE_VM` sibling (same mm, not a thread of the test's process) holding head `i`, already
/// prepared. Returns its pid; reap it with `wait_pid` after `release`.
pub fn clone_vm_holder(ctl: &Control, i: usize) -> libc::pid_t {
    let stack = Shared::new(64 * 1024);
    let args = Box::leak(Box::new(SiblingArgs { ctl, i }));
    // SAFETY: a fresh stack for the sibling, which runs `sibling_main` only; the memory is
    // leaked on purpose: the sibling may use it until it exits.
    let pid = unsafe {
        libc::clone(
            sibling_main,
            (stack.base + stack.len) as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            args as *mut SiblingArgs as *mut libc::c_void,
        )
    };
    std::mem::forget(stack);
    assert!(pid > 0, "clone: {}", std::io::Error::last_os_error());
    pid
}
