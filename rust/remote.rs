// SPDX-License-Identifier: GPL-2.0

//! Access to another task's memory, for `cleanup_robust_list(2)`: reading a robust list head
//! through a page reference ([`MmapReadGuard::get_user_page`], which changes nothing in the
//! target), and clearing a `list_op_pending` slot by compare-and-exchange through the page
//! pinned for writing ([`MmapReadGuard::pin_user_page`]), each under the mm's `mmap_lock`.
//!
//! The caller of `cleanup_robust_list()` must not be made to wait on anything another user
//! controls:
//!
//! - a page is faulted in only where the fault waits for nothing but the kernel (private
//!   anonymous memory and shmem with no userfaultfd registered, see [`fault_in`]); on any other
//!   mapping only a page mapped already is used. A fault on a file waits for its file system:
//!   the server of a FUSE file, which the owner of the memory may run itself, can take the read
//!   request and never answer, and the faulting task then waits uninterruptibly;
//! - a slot is written only in private memory or shmem: unpinning a dirtied page of another
//!   shared file may wait for its page lock, which that file system's writeback may hold;
//! - another process's `mmap_lock` (and another task's `futex.exit_mutex`, see
//!   [`crate::cleanup`]) is only tried, a millisecond apart, for about a second in all per call
//!   ([`LockWait`]): its owner can keep it held for as long as it likes (a read of its own
//!   memory that waits on its own FUSE server holds the `mmap_lock`, and a queued writer then
//!   blocks every new reader; an exit walk that waits on such a fault holds the `exit_mutex`),
//!   or let it go just before each attempt would give up, so other processes delay a call by
//!   about a second at most, killably, however many of them, heads and slots the call looks at.
//!
//! What cannot be reached that way fails with `EFAULT` or `EAGAIN`, which the caller counts as
//! missed.

use core::cell::Cell;
use kernel::{
    bindings,
    error::code::{EAGAIN, EFAULT, EINVAL},
    mm::{virt::VmaRef, FaultIn, MmWithUser, MmapReadGuard},
    page::PAGE_SIZE,
    prelude::*,
    sync::atomic::{Atomic, Full, Relaxed},
    task::Task,
    time::{delay::fsleep, Delta},
};

/// Whether a page of `vma` may be faulted in on behalf of another task: only where the fault
/// cannot wait for user space, its own or another user's (see the module documentation).
fn fault_in(vma: &VmaRef) -> FaultIn {
    if (vma.is_anonymous() || vma.is_shmem()) && !vma.userfaultfd_armed() {
        FaultIn::Allow
    } else {
        FaultIn::Never
    }
}

/// How many times, a millisecond apart, a call may sleep in all waiting for locks that other
/// tasks hold ([`LockWait`]): about a second. A process that forks in a loop holds its
/// `mmap_lock` for writing most of the time, on a slow kernel (KASAN) for milliseconds at a
/// stretch: 20 tries missed it.
pub(crate) const LOCK_WAIT_SLEEPS: u32 = 1000;

/// Calls that gave up waiting for a lock another task holds, once each (shown in debugfs).
pub(crate) static LOCK_GAVE_UP: Atomic<u64> = Atomic::new(0);

/// Sleeps of a millisecond (at least) that calls made waiting for locks other tasks hold (shown
/// in debugfs).
pub(crate) static LOCK_WAITS: Atomic<u64> = Atomic::new(0);

/// How long one call may still wait, in all, for locks that other tasks hold: other processes'
/// `mmap_lock`, other tasks' `futex.exit_mutex`. Every such lock the call takes is tried, and
/// while the budget of [`LOCK_WAIT_SLEEPS`] sleeps lasts, tried again a millisecond later; once
/// it is spent, each is tried once more, without waiting, and what cannot be taken is given up
/// (`EAGAIN`, counted as missed by the caller). So other tasks delay a call by about a second at
/// most, whether they keep a lock taken or let it go just before each attempt would give up,
/// and however many of them share the memory; what they let go of is still taken.
///
/// One per call, made at its start; it is not `Sync`.
pub(crate) struct LockWait {
    /// Sleeps the call may still make.
    left: Cell<u32>,
    /// Whether the call gave up on a lock (counted once in [`LOCK_GAVE_UP`]).
    gave_up: Cell<bool>,
}

impl LockWait {
    /// The budget of a new call: [`LOCK_WAIT_SLEEPS`].
    pub(crate) fn new() -> Self {
        Self::with_sleeps(LOCK_WAIT_SLEEPS)
    }

    /// A budget of `sleeps` sleeps of a millisecond.
    pub(crate) fn with_sleeps(sleeps: u32) -> Self {
        Self {
            left: Cell::new(sleeps),
            gave_up: Cell::new(false),
        }
    }

    /// Sleeps the call may still make.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn left(&self) -> u32 {
        self.left.get()
    }

    /// Takes a lock with `try_lock`, which returns its guard or `None` if another task holds
    /// it: tried, then again after each sleep of a millisecond while the budget lasts, then
    /// given up (`EAGAIN`). `EINTR` if the caller is killed meanwhile.
    ///
    /// Context: process context, may sleep; hold no lock that other tasks need.
    pub(crate) fn acquire<G>(&self, mut try_lock: impl FnMut() -> Option<G>) -> Result<G> {
        loop {
            if let Some(guard) = try_lock() {
                return Ok(guard);
            }
            let left = self.left.get();
            if left == 0 {
                if !self.gave_up.replace(true) {
                    LOCK_GAVE_UP.add(1, Relaxed);
                }
                return Err(EAGAIN);
            }
            crate::cleanup::killable()?;
            fsleep(Delta::from_millis(1));
            self.left.set(left - 1);
            LOCK_WAITS.add(1, Relaxed);
        }
    }
}

/// Takes the `mmap_lock` of `mm` for reading: killably if it is the caller's own, otherwise
/// as `wait`, the call's budget, allows ([`LockWait::acquire`]: `EAGAIN` once it is spent,
/// `EINTR` if the caller is killed meanwhile).
///
/// Context: process context, may sleep.
fn lock_other<'a>(mm: &'a MmWithUser, wait: &LockWait) -> Result<MmapReadGuard<'a>> {
    let current = kernel::current!();
    if current
        .mm()
        .is_some_and(|own| core::ptr::eq(own.as_raw(), mm.as_raw()))
    {
        return mm.mmap_read_lock_killable();
    }
    wait.acquire(|| mm.mmap_read_trylock())
}

/// Whether a slot in `vma` may be written from here: private memory (a write pin breaks
/// copy-on-write, into an anonymous page) or shmem.
fn writable_from_here(vma: &VmaRef) -> bool {
    vma.flags() & VM_SHARED == 0 || vma.is_shmem()
}

const VM_SHARED: usize = bindings::VM_SHARED;

/// Atomically replaces the `size`-byte (4 or 8) naturally aligned word at `addr` in `mm` with 0
/// if it holds `old` and `check`, called with `mm`'s `mmap_lock` held, approves. Returns whether
/// it did.
///
/// The page is pinned for writing (`FOLL_PIN`, which breaks copy-on-write for `mm`, as a write
/// by its owner would), written through a kernel mapping and unpinned dirty, all under the
/// `mmap_lock`: the mapping cannot change between `check` and the write, and no `fork()` can
/// make the page copy-on-write shared with a child before the write lands. The page is faulted
/// in only as [`fault_in`] allows, and written only as [`writable_from_here`] allows: `EFAULT`
/// otherwise.
///
/// Context: process context, may sleep; takes `mm`'s `mmap_lock` for reading ([`lock_other`],
/// with `wait`, the call's budget: `EAGAIN` if another process's stays taken, `EINTR` if the
/// caller is killed).
pub(crate) fn compare_and_clear(
    mm: &MmWithUser,
    wait: &LockWait,
    addr: usize,
    old: u64,
    size: usize,
    check: impl FnOnce(&MmapReadGuard<'_>) -> bool,
) -> Result<bool> {
    if (size != 4 && size != 8) || addr % size != 0 {
        return Err(EINVAL);
    }
    let locked = lock_other(mm, wait)?;
    if !check(&locked) {
        return Ok(false);
    }
    let vma = locked.vma_lookup(addr).ok_or(EFAULT)?;
    if !writable_from_here(vma) {
        return Err(EFAULT);
    }
    let mut page = locked.pin_user_page(addr, true, fault_in(vma))?;
    let cleared = page.with_mapped(|base| {
        // SAFETY: `addr` is `size`-aligned, so the word lies within this page, which is mapped
        // during the call. User space may store to the word concurrently: C libraries use plain
        // stores, which are single-copy atomic for a naturally aligned word, so an atomic
        // compare-and-exchange here sees either value whole and never tears one.
        unsafe {
            let p = base.add(addr & (PAGE_SIZE - 1));
            if size == 8 {
                Atomic::<u64>::from_ptr(p.cast())
                    .cmpxchg(old, 0, Full)
                    .is_ok()
            } else {
                Atomic::<u32>::from_ptr(p.cast())
                    .cmpxchg(old as u32, 0, Full)
                    .is_ok()
            }
        }
    });
    if cleared {
        page.set_dirty();
    }
    Ok(cleared)
}

/// Reads `buf.len()` bytes at `addr` of `task`'s memory. A naturally aligned `u32` or `u64` is
/// read in one access. Fails with `EFAULT` where a page is not mapped and [`fault_in`] does not
/// allow faulting it in.
///
/// Context: process context, may sleep; takes the task's `alloc_lock` and its mm's `mmap_lock`
/// ([`lock_other`], with `wait`, the call's budget: `EAGAIN` if another process's stays taken,
/// `EINTR` if the caller is killed).
pub(crate) fn read_task_memory(
    task: &Task,
    wait: &LockWait,
    addr: usize,
    buf: &mut [u8],
) -> Result {
    let mm = task.get_mm().ok_or(EFAULT)?;
    read_mm_memory(&mm, wait, addr, buf)
}

/// Reads `buf.len()` bytes at `addr` of `mm`, as [`read_task_memory`] does.
///
/// Context: process context, may sleep; takes `mm`'s `mmap_lock` ([`lock_other`], with `wait`,
/// the call's budget).
pub(crate) fn read_mm_memory(
    mm: &MmWithUser,
    wait: &LockWait,
    addr: usize,
    buf: &mut [u8],
) -> Result {
    let locked = lock_other(mm, wait)?;
    let mut done = 0;
    while done < buf.len() {
        let at = addr.checked_add(done).ok_or(EFAULT)?;
        let vma = locked.vma_lookup(at).ok_or(EFAULT)?;
        let page = locked.get_user_page(at, fault_in(vma))?;
        let offset = at & (PAGE_SIZE - 1);
        let n = (PAGE_SIZE - offset).min(buf.len() - done);
        let part = &mut buf[done..done + n];
        page.with_mapped(|base| {
            // SAFETY: `part` lies within the page from `offset` on, and the page is mapped during
            // the call. User space may store to it concurrently: a naturally aligned word is read
            // in one atomic access, so that it is seen whole, as `get_user()` would see it; other
            // bytes are read one at a time.
            unsafe {
                let p = base.add(offset);
                match part.len() {
                    8 if offset % 8 == 0 => part.copy_from_slice(
                        &Atomic::<u64>::from_ptr(p.cast_mut().cast())
                            .load(Relaxed)
                            .to_ne_bytes(),
                    ),
                    4 if offset % 4 == 0 => part.copy_from_slice(
                        &Atomic::<u32>::from_ptr(p.cast_mut().cast())
                            .load(Relaxed)
                            .to_ne_bytes(),
                    ),
                    _ => {
                        for (i, b) in part.iter_mut().enumerate() {
                            *b = p.add(i).read_volatile();
                        }
                    }
                }
            }
        });
        done += part.len();
    }
    Ok(())
}
