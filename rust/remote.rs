// SPDX-License-Identifier: GPL-2.0

//! Access to another task's memory, for `cleanup_robust_list(2)`: reading a robust list head
//! (`access_process_vm()`), and clearing a `list_op_pending` slot by compare-and-exchange through
//! the pinned page ([`MmapReadGuard::pin_user_page`]).

use kernel::{
    bindings,
    error::code::{EFAULT, EINVAL},
    mm::{MmWithUser, MmapReadGuard},
    page::PAGE_SIZE,
    prelude::*,
    sync::atomic::{Atomic, Full},
    task::Task,
};

/// Atomically replaces the `size`-byte (4 or 8) naturally aligned word at `addr` in `mm` with 0
/// if it holds `old` and `check`, called with `mm`'s `mmap_lock` held, approves. Returns whether
/// it did.
///
/// The page is pinned for writing (`FOLL_PIN`, which breaks copy-on-write for `mm`, as a write
/// by its owner would), written through a kernel mapping and unpinned dirty, all under the
/// `mmap_lock`: the mapping cannot change between `check` and the write, and no `fork()` can
/// make the page copy-on-write shared with a child before the write lands.
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
    let mut page = locked.pin_user_page(addr, true)?;
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

/// Reads `buf.len()` bytes at `addr` of `task`'s memory (`access_process_vm()`).
///
/// Context: process context, may sleep; takes the task's `alloc_lock` and `mmap_lock`.
pub(crate) fn read_task_memory(task: &Task, addr: usize, buf: &mut [u8]) -> Result {
    let len = i32::try_from(buf.len()).map_err(|_| EINVAL)?;
    // SAFETY: `task` is valid; `buf` is valid for writes of its length.
    let n = unsafe {
        bindings::access_process_vm(task.as_ptr(), addr, buf.as_mut_ptr().cast(), len, 0)
    };
    if n == len {
        Ok(())
    } else {
        Err(EFAULT)
    }
}
