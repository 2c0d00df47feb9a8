// SPDX-License-Identifier: GPL-2.0

//! The exit-time robust list walk.
//!
//! Reimplements `exit_robust_list()`, `compat_exit_robust_list()` and `handle_futex_death()` of
//! `kernel/futex/core.c` (Debian 7.3.4) on top of [`robust_list::walk`]. The futex core calls
//! the registered functions from `futex_cleanup()`, at exit and at exec, with `tsk == current`
//! and `tsk->futex.exit_mutex` held; they may sleep and fault. After its walk, the task leaves the
//! index `cleanup_robust_list(2)` finds candidates in.

use crate::futex;
use crate::index;
use crate::robust_list::{self, Abi, Flow, Head, Visit};
use crate::unmap::{FileWord, RecordedMem};
use core::cell::{Cell, OnceCell};
use kernel::{
    bindings,
    error::code::{EAGAIN, EFAULT},
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    task::cond_resched,
};

const FUTEX_WAITERS: u32 = bindings::FUTEX_WAITERS;
const FUTEX_OWNER_DIED: u32 = bindings::FUTEX_OWNER_DIED;
const FUTEX_TID_MASK: u32 = bindings::FUTEX_TID_MASK;

/// Native robust lists walked by this module (shown in debugfs).
pub(crate) static EXIT_WALKS: Atomic<u64> = Atomic::new(0);
/// Compat robust lists walked by this module (shown in debugfs).
pub(crate) static COMPAT_EXIT_WALKS: Atomic<u64> = Atomic::new(0);

/// A futex word as the exit walk handles it: in the current task's memory ([`UserWord`]), or
/// through the file of shared memory the task unmapped ([`FileWord`]).
pub(crate) trait FutexWord {
    /// Whether the word is 4-byte aligned.
    fn aligned(&self) -> bool;
    /// Reads it.
    fn get(&self) -> Result<u32>;
    /// Replaces it with `new` if it holds `old`; returns the value found. Fails with `EFAULT`
    /// (fault it in and retry) or `EAGAIN` (retry).
    fn cmpxchg(&self, old: u32, new: u32) -> Result<u32>;
    /// Makes it writable after `cmpxchg()` failed with `EFAULT`; fails if it cannot be.
    fn fault_in(&self) -> Result;
    /// Wakes one waiter, by the word's shared key.
    fn wake(&self);
}

/// The futex word at a user address of the current task.
pub(crate) struct UserWord(pub(crate) usize);

impl FutexWord for UserWord {
    #[inline(always)]
    fn aligned(&self) -> bool {
        self.0 % core::mem::size_of::<u32>() == 0
    }

    #[inline(always)]
    fn get(&self) -> Result<u32> {
        futex::get_user_u32(self.0)
    }

    #[inline(always)]
    fn cmpxchg(&self, old: u32, new: u32) -> Result<u32> {
        futex::cmpxchg_user_u32(self.0, old, new)
    }

    fn fault_in(&self) -> Result {
        futex::fault_in_user_writeable(self.0)
    }

    fn wake(&self) {
        futex::wake_robust(self.0);
    }
}

/// Handles the futex `word` of a dying thread whose TID is `tid`, as
/// `handle_futex_death()` does:
///
/// - an unaligned word, or one that cannot be read, stops the walk;
/// - a word owned by `tid` gets `FUTEX_OWNER_DIED`, keeping `FUTEX_WAITERS`, by compare-and-swap
///   (retried if the word changed; faulted in for writing on `EFAULT`, the walk stops if that
///   fails; rescheduled and retried on `EAGAIN`); then, unless `pi`, one waiter is woken if
///   `FUTEX_WAITERS` was set (PI waiters are woken by the PI state cleanup);
/// - a word not owned by `tid` is left alone, but for a pending, non-PI entry whose word is
///   unlocked, or locked by another thread without `FUTEX_WAITERS`, one waiter is woken so that
///   no wakeup is lost.
///
/// Context: process context, may sleep.
#[inline(always)]
pub(crate) fn handle_word_death(
    word: &impl FutexWord,
    tid: i32,
    pi: bool,
    pending_op: bool,
) -> Flow {
    if !word.aligned() {
        return Flow::Stop;
    }

    loop {
        let Ok(uval) = word.get() else {
            return Flow::Stop;
        };

        // The mask keeps the owner positive, as the C code's `pid_t owner`.
        let owner = (uval & FUTEX_TID_MASK) as i32;
        if owner != tid {
            if pending_op && !pi && (owner == 0 || uval & FUTEX_WAITERS == 0) {
                word.wake();
            }
            return Flow::Continue;
        }

        let mval = (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        match word.cmpxchg(uval, mval) {
            Ok(nval) if nval != uval => continue,
            Ok(_) => {}
            Err(e) if e == EFAULT => {
                if word.fault_in().is_err() {
                    return Flow::Stop;
                }
                continue;
            }
            Err(e) if e == EAGAIN => {
                cond_resched();
                continue;
            }
            Err(e) => {
                // Unreachable on x86; the C code warns once and gives up.
                static WARNED: Atomic<bool> = Atomic::new(false);
                if !WARNED.xchg(true, Relaxed) {
                    pr_warn!("unexpected futex cmpxchg error {:?}\n", e);
                }
                return Flow::Stop;
            }
        }

        if !pi && uval & FUTEX_WAITERS != 0 {
            word.wake();
        }
        return Flow::Continue;
    }
}

/// Walks the robust list at `head` of the current task, which is dying and whose TID (in its own
/// PID namespace) is `tid`, and handles every futex on it.
///
/// Context: process context, may sleep.
///
/// Where the current mm unmapped shared memory that its lists may point into
/// ([`crate::unmap`]), an
/// entry or a futex word the task can no longer reach is reached through the memory's file;
/// elsewhere, and with nothing recorded, the walk is `exit_robust_list()`'s.
pub(crate) fn exit_walk(head: Head, tid: i32) {
    let mem = RecordedMem::for_exit();
    robust_list::walk(&mem, &head, |v: Visit| {
        handle_word_death(&ExitWord::new(v.uaddr, &mem), tid, v.pi, v.pending)
    });
}

/// The futex word at `addr` as the exit walk reaches it: in the current task's memory, as the
/// built-in walk (one `get_user()` first, as `handle_futex_death()`), unless that first read
/// faults on an address a record covers and no mapping does: then through the record's file
/// from there on.
struct ExitWord<'a> {
    user: UserWord,
    mem: &'a RecordedMem,
    /// Set by the first read, if it went through a record.
    file: OnceCell<FileWord>,
    /// Whether a read was made (only the first may switch to the file).
    read: Cell<bool>,
}

impl<'a> ExitWord<'a> {
    #[inline(always)]
    fn new(addr: usize, mem: &'a RecordedMem) -> Self {
        ExitWord {
            user: UserWord(addr),
            mem,
            file: OnceCell::new(),
            read: Cell::new(false),
        }
    }
}

impl FutexWord for ExitWord<'_> {
    #[inline(always)]
    fn aligned(&self) -> bool {
        // A record maps page-aligned addresses to page-aligned file offsets.
        self.user.aligned()
    }

    #[inline(always)]
    fn get(&self) -> Result<u32> {
        if let Some(f) = self.file.get() {
            return f.get();
        }
        let first = !self.read.replace(true);
        let r = self.user.get();
        if r.is_ok() || !first {
            return r;
        }
        let record = self.mem.locate(self.user.0, 4).ok_or(EFAULT)?;
        self.file
            .get_or_init(|| FileWord::new(record, self.user.0))
            .get()
    }

    #[inline(always)]
    fn cmpxchg(&self, old: u32, new: u32) -> Result<u32> {
        match self.file.get() {
            Some(f) => f.cmpxchg(old, new),
            None => self.user.cmpxchg(old, new),
        }
    }

    fn fault_in(&self) -> Result {
        match self.file.get() {
            Some(f) => f.fault_in(),
            None => self.user.fault_in(),
        }
    }

    fn wake(&self) {
        match self.file.get() {
            Some(f) => f.wake(),
            None => self.user.wake(),
        }
    }
}

/// Walks the list at `head` of the dying current task `task`; after its last walk, removes it
/// from the index.
///
/// The futex core walks the native list, clears the native head, then walks the compat list:
/// a task that has both stays indexed through the native walk, so that a
/// `cleanup_robust_list()` call made between the two walks still finds its compat
/// `list_op_pending`.
fn exit(task: &kernel::task::Task, head: Option<Head>) {
    if let Some(head) = head {
        exit_walk(head, task.pid_vnr());
    }
    if head.is_some_and(|h| h.abi == Abi::Native) && futex::heads(task)[1].is_some() {
        return; // the compat walk comes next
    }
    // Its lists are handled: it leaves the cleanup index (see `index`).
    index::forget(task);
}

/// `futex_robust_ops::exit_robust_list`: walks `tsk->futex.robust_list`.
///
/// # Safety
///
/// Called by the futex core with `tsk == current`, a valid task with a non-NULL `robust_list`.
pub(crate) unsafe extern "C" fn exit_robust_list(tsk: *mut bindings::task_struct) {
    // SAFETY: `tsk` is the valid current task, per the function's safety requirement.
    let task = unsafe { futex::task(tsk) };
    EXIT_WALKS.add(1, Relaxed);
    exit(task, futex::heads(task)[0]);
}

/// `futex_robust_ops::compat_exit_robust_list`: walks `tsk->futex.compat_robust_list`.
///
/// # Safety
///
/// Called by the futex core with `tsk == current`, a valid task with a non-NULL
/// `compat_robust_list`.
#[cfg(CONFIG_COMPAT)]
unsafe extern "C" fn compat_exit_robust_list(tsk: *mut bindings::task_struct) {
    // SAFETY: `tsk` is the valid current task, per the function's safety requirement.
    let task = unsafe { futex::task(tsk) };
    COMPAT_EXIT_WALKS.add(1, Relaxed);
    exit(task, futex::heads(task)[1]);
}

/// The walker type the futex core calls.
pub(crate) type ExitFn = unsafe extern "C" fn(*mut bindings::task_struct);

/// The compat walker to register, if the kernel has compat tasks.
#[cfg(CONFIG_COMPAT)]
pub(crate) const COMPAT_EXIT_ROBUST_LIST: Option<ExitFn> = Some(compat_exit_robust_list);
/// The compat walker to register, if the kernel has compat tasks.
#[cfg(not(CONFIG_COMPAT))]
pub(crate) const COMPAT_EXIT_ROBUST_LIST: Option<ExitFn> = None;
