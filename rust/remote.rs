// SPDX-License-Identifier: GPL-2.0

//! Access to another task's memory, for `cleanup_robust_list(2)`: reading a robust list head,
//! and clearing a `list_op_pending` slot by compare-and-exchange, through the page pinned under
//! the mm's `mmap_lock` ([`MmapReadGuard::pin_user_page`]).
//!
//! A page is faulted in only where the fault can wait for nothing but the kernel (private
//! anonymous memory and shmem with no userfaultfd registered: swap-in at most, see
//! [`fault_in`]); on any other mapping only a page mapped already is used. A fault on a file
//! waits for its filesystem as long as that takes: the server of a FUSE file, which the owner of
//! the memory may run itself, can take the read request and never answer, and the faulting task
//! then waits uninterruptibly. The caller of `cleanup_robust_list()` must not be made to wait on
//! another user's file system.

use kernel::{
    error::code::{EFAULT, EINVAL},
    mm::{virt::VmaRef, FaultIn, MmWithUser, MmapReadGuard},
    page::PAGE_SIZE,
    prelude::*,
    sync::atomic::{Atomic, Full, Relaxed},
    task::Task,
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

/// Atomically replaces the `size`-byte (4 or 8) naturally aligned word at `addr` in `mm` with 0
/// if it holds `old` and `check`, called with `mm`'s `mmap_lock` held, approves. Returns whether
/// it did.
///
/// The page is pinned for writing (`FOLL_PIN`, which breaks copy-on-write for `mm`, as a write
/// by its owner would), written through a kernel mapping and unpinned dirty, all under the
/// `mmap_lock`: the mapping cannot change between `check` and the write, and no `fork()` can
/// make the page copy-on-write shared with a child before the write lands. The page is faulted
/// in only as [`fault_in`] allows: `EFAULT` if it cannot be.
///
/// Context: process context, may sleep; takes `mm`'s `mmap_lock` for reading, killably (fails
/// with `EINTR` if the caller is killed while it waits).
pub(crate) fn compare_and_clear(
    mm: &MmWithUser,
    addr: usize,
    old: u64,
    size: usize,
    check: impl FnOnce(&MmapReadGuard<'_>) -> bool,
) -> Result<bool> {
    if (size != 4 && size != 8) || addr % size != 0 {
        return Err(EINVAL);
    }
    let locked = mm.mmap_read_lock_killable()?;
    if !check(&locked) {
        return Ok(false);
    }
    let fault = locked.vma_lookup(addr).map_or(FaultIn::Never, fault_in);
    let mut page = locked.pin_user_page(addr, true, fault)?;
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
/// Context: process context, may sleep; takes the task's `alloc_lock` and, killably (`EINTR`),
/// its mm's `mmap_lock`.
pub(crate) fn read_task_memory(task: &Task, addr: usize, buf: &mut [u8]) -> Result {
    let mm = task.get_mm().ok_or(EFAULT)?;
    let locked = mm.mmap_read_lock_killable()?;
    let mut done = 0;
    while done < buf.len() {
        let at = addr.checked_add(done).ok_or(EFAULT)?;
        let vma = locked.vma_lookup(at).ok_or(EFAULT)?;
        let page = locked.pin_user_page(at, false, fault_in(vma))?;
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
                        &Atomic::<u64>::from_ptr(p.cast())
                            .load(Relaxed)
                            .to_ne_bytes(),
                    ),
                    4 if offset % 4 == 0 => part.copy_from_slice(
                        &Atomic::<u32>::from_ptr(p.cast())
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
