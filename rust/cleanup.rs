// SPDX-License-Identifier: GPL-2.0

//! `cleanup_robust_list(2)`: forget pending robust list operations on memory about to be reused.
//!
//! A thread unlocking a robust mutex sets `list_op_pending`, releases the futex word, then clears
//! `list_op_pending`. If it dies between the last two steps while the mutex is destroyed and its
//! memory reused, its exit walk writes `FUTEX_OWNER_DIED` into, or wakes on, the new contents. A
//! C library calls this system call from `pthread_mutex_destroy()` of robust mutexes to clear
//! every such stale `list_op_pending` first.
//!
//! 1. **Identity.** The caller's range `[addr, addr + len)` is resolved in its mm as
//!    `get_futex_key()` would resolve each word: for a `VM_SHARED` mapping (shared file, shmem,
//!    memfd, shared anonymous memory, SysV shm), the backing `address_space` and byte offsets in
//!    it; for private memory, the caller's mm and the addresses.
//! 2. **Windows.** Where each mm maps that identity: for shared memory, every `VM_SHARED` VMA on
//!    the mapping's `i_mmap` tree that covers part of the offsets, at whatever address it maps
//!    them; for private memory, the caller's range in the caller's mm.
//! 3. **Candidates.** The tasks with a robust list whose mm has a window (threads, `CLONE_VM`
//!    siblings and other processes alike), looked up per mm in the module's [`index`], so the
//!    cost does not depend on the other tasks of the system. Only if the index is incomplete
//!    (an allocation failed) is every thread of the system walked instead.
//! 4. **Clearing.** For each candidate, each head's `futex_offset` and `list_op_pending` are read
//!    in one access: directly for a task of the caller's own mm, with `access_process_vm()`
//!    otherwise. Only if the futex word (`pending + futex_offset`, PI bit masked, 32-bit
//!    arithmetic for compat heads) lies in one of that mm's windows is the task's
//!    `futex_exit_mutex` taken (so that an exit that started walking finishes first, and one
//!    that finished is skipped), and the slot cleared by compare-and-exchange against the value
//!    read: a slot changed in the meantime is left alone.
//!
//! Lock order: a task's `futex_exit_mutex`, then an mm's `mmap_lock`. `i_mmap_rwsem`, RCU and
//! the index's mutex are only held while collecting references (steps 2 and 3), never together
//! with the others.
//!
//! Permissions: the caller must be able to write to the range (`VM_WRITE`). It then clears the
//! slots of every task that maps the same memory, whatever its user or PID namespace: they share
//! the lock memory, the only change is NULLing a pointer to it, and the caller could as well
//! write anything into that memory.

use crate::index;
use crate::robust_list::{CurrentMem, Entry, Head, UserMem};
use crate::sys::{self, FileRef, FutexExitGuard, MmGrab, TaskRef, VmaInfo};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{alloc::flags::GFP_ATOMIC, bindings, prelude::*, uaccess::UserPtr};

/// Calls of the system call that reached this module (shown in debugfs).
pub(crate) static CLEANUP_CALLS: AtomicU64 = AtomicU64::new(0);
/// `list_op_pending` slots cleared (shown in debugfs).
pub(crate) static CLEANUP_CLEARED: AtomicU64 = AtomicU64::new(0);
/// Calls that walked every thread because the index was incomplete (shown in debugfs).
pub(crate) static CLEANUP_SCANS: AtomicU64 = AtomicU64::new(0);

const PAGE_SHIFT: u32 = bindings::PAGE_SHIFT;
const VM_READ: usize = bindings::VM_READ as usize;
const VM_WRITE: usize = bindings::VM_WRITE as usize;
const VM_EXEC: usize = bindings::VM_EXEC as usize;
const VM_SHARED: usize = bindings::VM_SHARED as usize;
const VM_IO: usize = bindings::VM_IO as usize;
const VM_PFNMAP: usize = bindings::VM_PFNMAP as usize;

/// The caller's range in the identity `get_futex_key()` gives its words.
enum Store {
    /// Bytes `[start, end)` of the page cache of `file`.
    Shared {
        file: FileRef,
        start: usize,
        end: usize,
    },
    /// Addresses `[start, end)` of the caller's mm.
    Private {
        mm: MmGrab,
        start: usize,
        end: usize,
    },
}

/// Addresses `[start, end)` of `mm` that map (part of) the caller's range.
struct Window {
    mm: MmGrab,
    start: usize,
    end: usize,
}

/// Resolves `[addr, addr + len)` in the caller's mm (step 1).
///
/// Errors: `EFAULT` if part of the range is unmapped, or mapped `PROT_NONE` or as I/O memory;
/// `EINVAL` if it spans several mappings; `EACCES` if the caller cannot write to it.
fn resolve(addr: usize, len: usize) -> Result<Store> {
    let mm = sys::MmapReadGuard::current().ok_or(EFAULT)?;
    let vma = mm.vma_at(addr).ok_or(EFAULT)?;
    let end = addr + len; // no overflow: the system call checked access_ok()
    if end > vma.end {
        return Err(match mm.vma_at(vma.end) {
            Some(next) if next.start == vma.end => EINVAL,
            _ => EFAULT,
        });
    }
    if vma.flags & (VM_READ | VM_WRITE | VM_EXEC) == 0 || vma.flags & (VM_IO | VM_PFNMAP) != 0 {
        return Err(EFAULT);
    }
    if vma.flags & VM_WRITE == 0 {
        return Err(EACCES);
    }
    if vma.flags & VM_SHARED != 0 {
        // SAFETY: the VMA, and so its file, is stable under the `mmap_lock` held by `mm`.
        if let Some(file) = unsafe { FileRef::new(vma.file) } {
            let start = (vma.pgoff << PAGE_SHIFT) + (addr - vma.start);
            return Ok(Store::Shared {
                file,
                start,
                end: start + len,
            });
        }
    }
    // SAFETY: the current mm is valid while the task runs.
    let grabbed = unsafe { MmGrab::new(mm.mm()) }.ok_or(EFAULT)?;
    Ok(Store::Private {
        mm: grabbed,
        start: addr,
        end,
    })
}

/// Finds where each mm maps the store (step 2).
fn windows(store: Store) -> Result<KVec<Window>> {
    let mut out = KVec::new();
    match store {
        Store::Private { mm, start, end } => {
            out.push(Window { mm, start, end }, GFP_KERNEL)?;
        }
        Store::Shared { file, start, end } => {
            let (first, last) = (start >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT);
            sys::for_each_mapping_vma(file.mapping(), first, last, |vma: &VmaInfo| {
                if vma.flags & VM_SHARED == 0 {
                    return Ok(()); // a MAP_PRIVATE mapping of the file: not the same memory
                }
                // The part of the store this VMA maps, in bytes of the file.
                let vma_start = vma.pgoff << PAGE_SHIFT;
                let vma_end = vma_start + (vma.end - vma.start);
                let (s, e) = (start.max(vma_start), end.min(vma_end));
                if s >= e {
                    return Ok(());
                }
                // SAFETY: the VMA and its mm are stable under `i_mmap_rwsem`.
                let mm = unsafe { MmGrab::new(vma.mm) }.ok_or(EFAULT)?;
                let w = Window {
                    mm,
                    start: vma.start + (s - vma_start),
                    end: vma.start + (e - vma_start),
                };
                // No reclaim under i_mmap_rwsem.
                out.push(w, GFP_ATOMIC)?;
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// Collects the tasks that use an mm with a window (step 3): from the index of tasks with a
/// robust list, or, if the index is incomplete, by walking every thread.
fn candidates(windows: &[Window]) -> Result<KVec<TaskRef>> {
    let mut out = KVec::new();
    let mut complete = true;
    for (i, w) in windows.iter().enumerate() {
        let mm = w.mm.as_ptr();
        if windows[..i].iter().any(|o| o.mm.as_ptr() == mm) {
            continue; // several windows in one mm
        }
        complete &= index::with(|index| index.collect(mm as usize, &mut out))
            .transpose()?
            .unwrap_or(false);
    }
    if complete {
        return Ok(out);
    }
    CLEANUP_SCANS.fetch_add(1, Ordering::Relaxed);
    let mut all = KVec::new();
    scan(windows, &mut all)?;
    Ok(all)
}

/// Collects every thread of the system whose mm has a window.
fn scan(windows: &[Window], out: &mut KVec<TaskRef>) -> Result {
    sys::for_each_thread(|t| {
        // SAFETY: `t` is valid under RCU, held by `for_each_thread`.
        let (flags, mm) = unsafe { sys::task_flags_mm(t) };
        if flags & bindings::PF_KTHREAD != 0 || mm.is_null() {
            return Ok(());
        }
        if !windows.iter().any(|w| w.mm.as_ptr() == mm) {
            return Ok(());
        }
        // SAFETY: `t` is valid under RCU.
        let task = unsafe { TaskRef::new(t) }.ok_or(EFAULT)?;
        // Under RCU: no sleeping allocation.
        out.push(task, GFP_ATOMIC)?;
        Ok(())
    })
}

/// Another task's memory, read with `access_process_vm()`.
struct TaskMem<'a>(&'a TaskRef);

impl UserMem for TaskMem<'_> {
    fn read_bytes(&self, addr: UserPtr, buf: &mut [u8]) -> Result {
        self.0.read_memory(addr, buf)
    }
}

/// Reads `futex_offset` and `list_op_pending` of `head`, from the caller's own memory directly
/// when `local`, else from `task`'s.
fn read_head(head: &Head, task: &TaskRef, local: bool) -> Result<(usize, usize)> {
    if local {
        head.fetch_offset_and_pending(&CurrentMem)
    } else {
        head.fetch_offset_and_pending(&TaskMem(task))
    }
}

/// Clears the matching `list_op_pending` slots of `task` (step 4); returns how many it cleared.
///
/// Slots are read without locks: a slot that does not point into the range needs nothing, and
/// cannot start to, since only its own task sets it, and not to a mutex being destroyed. Only
/// for a slot that matches is the task's `futex_exit_mutex` taken, so that an exit walk under
/// way finishes first (and then nothing is left to do) and none starts while the slot is
/// cleared.
fn clean_task(task: &TaskRef, windows: &[Window]) -> usize {
    // A racy snapshot: a task that exec'd since it was collected is skipped (its lists were
    // handled at exec), which is checked again under the mutex before writing.
    let mm = task.mm_ptr();
    let mine = || windows.iter().filter(|w| w.mm.as_ptr() == mm);
    if mine().next().is_none() {
        return 0;
    }
    // SAFETY: `current()` is valid; its mm does not change while it runs this call.
    let local = mm == unsafe { sys::task_flags_mm(sys::current()) }.1;
    let mut cleared = 0;
    for (addr, abi) in task.heads() {
        if addr == 0 {
            continue;
        }
        let head = Head { addr, abi };
        let Ok((futex_offset, raw)) = read_head(&head, task, local) else {
            continue;
        };
        let pending = Entry::decode(raw, abi);
        if pending.addr == 0 {
            continue;
        }
        let word = head.futex_word(pending, futex_offset);
        if !mine().any(|w| w.start <= word && word.saturating_add(4) <= w.end) {
            continue;
        }
        let guard = FutexExitGuard::lock(task);
        if guard.exited() {
            break;
        }
        let Some(now) = task.mm().filter(|now| now.as_ptr() == mm) else {
            break; // exec'd meanwhile
        };
        if !guard.heads().contains(&(addr, abi)) {
            continue; // registered another head meanwhile
        }
        // A slot that is not naturally aligned, or changed since it was read, is left alone.
        let slot = head.pending_slot();
        if let Ok(true) = sys::compare_and_clear_remote(&now, slot, raw as u64, head.word_size()) {
            cleared += 1;
        }
    }
    cleared
}

fn cleanup(addr: usize, len: usize) -> Result<usize> {
    let windows = windows(resolve(addr, len)?)?;
    let tasks = candidates(&windows)?;
    Ok(tasks.iter().map(|t| clean_task(t, &windows)).sum())
}

/// `futex_robust_ops::cleanup_robust_list`.
///
/// # Safety
///
/// Called by the futex core in process context, for the current task, with arguments it
/// validated: `flags == 0`, `addr` and `len` 4-byte aligned, `len > 0`, and the range in user
/// space without wrapping.
pub(crate) unsafe extern "C" fn cleanup_robust_list(addr: usize, len: usize, flags: u32) -> isize {
    let _ = flags;
    CLEANUP_CALLS.fetch_add(1, Ordering::Relaxed);
    match cleanup(addr, len) {
        Ok(n) => {
            CLEANUP_CLEARED.fetch_add(n as u64, Ordering::Relaxed);
            n as isize
        }
        Err(e) => e.to_errno() as isize,
    }
}
