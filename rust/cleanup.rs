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
//!    `get_futex_key()` would resolve each word, mapping by mapping (a range may cover several,
//!    as `munmap()`'s does, but no hole): for a `VM_MAYSHARE` mapping (shared file, shmem,
//!    memfd, shared anonymous memory, SysV shm, and a `MAP_SHARED` mapping of a file opened
//!    read-only, which has `VM_MAYSHARE` without `VM_SHARED`), the backing file and byte
//!    offsets in it; for private memory, the caller's mm and the addresses.
//! 2. **Windows.** Where each mm maps each part's identity: for shared memory, every
//!    `VM_MAYSHARE` VMA on the mapping's `i_mmap` tree that covers part of the offsets, at
//!    whatever address it maps them; for private memory, the caller's range in the caller's mm.
//! 3. **Candidates.** The tasks with a robust list whose mm has a window (threads, `CLONE_VM`
//!    siblings and other processes alike), looked up per mm in the module's [`index`], so the
//!    cost does not depend on the other tasks of the system; just the caller if every window is
//!    in its mm and it is that mm's only user. While the index is incomplete (the module is
//!    being loaded, or an allocation failed) every thread of the system is walked instead.
//! 4. **Clearing.** For each candidate, each head's `list_op_pending` is read, then, if it is
//!    set, its `futex_offset` (two reads): directly for a task of the caller's own mm, through
//!    a reference on the page of the window's mm otherwise ([`remote`]: faulted in only if the
//!    fault cannot wait for user space). Only if the futex word (`pending + futex_offset`, PI bit
//!    masked, 32-bit arithmetic for compat heads) lies in one of that mm's windows is the task's
//!    `futex.exit_mutex` taken (so that an exit that started walking finishes first, within the
//!    call's budget for such waits, and one that finished is skipped), and the slot cleared by
//!    compare-and-exchange against the value read, under the mm's `mmap_lock`, once the word is
//!    checked to still be the memory being cleaned there: a slot changed in the meantime, or
//!    whose word was unmapped and something else mapped at its address, is left alone.
//!
//! Locks: references are collected under `i_mmap_rwsem` or RCU, and heads' addresses and tasks'
//! keys copied under an index shard's mutex, each alone and with no allocation with reclaim and
//! no user memory access under it (steps 2 and 3; a reference on a task is taken only for a
//! slot to clear); heads are read with no lock held; a slot is cleared under its task's
//! `futex.exit_mutex`, then its mm's `mmap_lock` (step 4). A read that faults may sleep as long
//! as the fault does, and the caller alone waits. Another process's memory is faulted in only
//! where the fault waits for nothing but the kernel (anonymous memory and shmem without a
//! userfaultfd) and written only in private memory and shmem; locks that other tasks hold (other
//! processes' `mmap_lock`, other tasks' `exit_mutex`) are only tried, for about a second in all
//! per call ([`LockWait`]), so that the call never waits on what another user controls (a FUSE
//! server that takes a read and never answers, a process that keeps its own `mmap_lock`, an exit
//! walk stuck on such a fault): see [`remote`]. Heads that cannot be read, and slots that cannot
//! be cleared, are counted in debugfs `cleanup_missed`: see `cleanup.rst`, "What it cannot fix".
//!
//! With `CLEANUP_ROBUST_LIST_MM_ONLY` (a C library unmapping the range, or mapping over it),
//! every part is taken as private memory: one window, the caller's range in its own mm, so only
//! its threads and `CLONE_VM` siblings are candidates. Other processes keep the memory, and the
//! locks in it, at their own addresses; their slots must not be touched.
//!
//! Permissions: the caller must be able to write to the range (`VM_WRITE`). It then clears the
//! slots of every task that maps the same memory, whatever its user or PID namespace: they share
//! the lock memory, the only change is NULLing a pointer to it, and the caller could as well
//! write anything into that memory.

use crate::futex::{self, ExitGuard};
use crate::index;
use crate::remote::{self, LockWait};
use crate::robust_list::{CurrentMem, Entry, Head, UserMem};
use core::ops::ControlFlow;
use kernel::{
    bindings,
    error::code::{EAGAIN, EINTR},
    fs::File,
    mm::{
        virt::{RmapVma, VmaRef},
        Mm, MmapReadGuard,
    },
    page::PAGE_SHIFT,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
    },
    task::{cond_resched, Task},
};

/// Calls of the system call that reached this module (shown in debugfs).
pub(crate) static CLEANUP_CALLS: Atomic<u64> = Atomic::new(0);
/// `list_op_pending` slots cleared (shown in debugfs).
pub(crate) static CLEANUP_CLEARED: Atomic<u64> = Atomic::new(0);
/// Slots that pointed into a range but were left alone because they are not naturally aligned
/// (shown in debugfs): no clear of them can be atomic against their owner's own stores.
pub(crate) static CLEANUP_UNALIGNED: Atomic<u64> = Atomic::new(0);
/// Heads the call could not read, and matching slots it could not clear (shown in debugfs):
/// their tasks' exit walks may still act on them. See `cleanup.rst`, "What it cannot fix".
pub(crate) static CLEANUP_MISSED: Atomic<u64> = Atomic::new(0);
/// Calls that walked every thread because the index was incomplete (shown in debugfs).
pub(crate) static CLEANUP_SCANS: Atomic<u64> = Atomic::new(0);

/// Only the tasks of the caller's mm: its mapping of the range goes away, not the memory.
const MM_ONLY: u32 = bindings::CLEANUP_ROBUST_LIST_MM_ONLY;
const VM_READ: usize = bindings::VM_READ;
const VM_WRITE: usize = bindings::VM_WRITE;
const VM_EXEC: usize = bindings::VM_EXEC;
const VM_MAYSHARE: usize = bindings::VM_MAYSHARE;
const VM_IO: usize = bindings::VM_IO;
const VM_PFNMAP: usize = bindings::VM_PFNMAP;

/// The caller's range in the identity `get_futex_key()` gives its words.
enum Store {
    /// Bytes `[start, end)` of the page cache of `file`.
    Shared {
        file: ARef<File>,
        start: usize,
        end: usize,
    },
    /// Addresses `[start, end)` of the caller's mm.
    Private { start: usize, end: usize },
}

/// Addresses `[start, end)` of `mm` that map (part of) the caller's range.
struct Window {
    mm: *mut bindings::mm_struct,
    start: usize,
    end: usize,
    /// For shared memory, the page cache the window maps and the byte offset in it of `start`,
    /// to check at the time of a clear that the window still maps it; `None` for the caller's
    /// private memory, whose identity is its addresses.
    shared: Option<(*const bindings::address_space, usize)>,
    /// Merged from windows that did not agree on what they map (see [`merge_overlapping`]):
    /// a slot in it that is not, at the time of the clear, the memory `shared` says is counted
    /// as missed rather than left alone silently.
    mixed: bool,
    /// Keeps `mm` allocated for the call (so that its address cannot be reused by another mm
    /// while it is compared); `None` for the caller's own mm, which is alive while it runs.
    grab: Option<ARef<Mm>>,
}

impl Window {
    /// Addresses `[start, end)` of the caller's own mm.
    fn own(start: usize, end: usize) -> Window {
        Window {
            mm: current_mm(),
            start,
            end,
            shared: None,
            mixed: false,
            grab: None,
        }
    }

    fn holds(&self, word: usize) -> bool {
        self.start <= word && word.saturating_add(4) <= self.end
    }
}

/// The current task's mm (NULL for a kernel thread), to compare with: alive, and unchanged,
/// while it runs.
fn current_mm() -> *mut bindings::mm_struct {
    futex::flags_mm(kernel::current!()).1
}

/// The part `[at, end)` of `vma` as a [`Store`] (step 1 for one mapping).
///
/// `mm_only`: taken as private memory (the caller's addresses), whatever backs it.
///
/// Inlined, as are [`examine`] and [`pending_in`]: the common call (private memory, one thread)
/// is little more than a VMA lookup and one read of user memory, and the three calls and
/// returns they cost otherwise were a seventh of it (see `performance.rst`, "What issue 17's
/// levers gave").
#[inline(always)]
fn part(vma: &VmaRef, at: usize, end: usize, mm_only: bool) -> Result<Store> {
    let flags = vma.flags();
    if flags & (VM_READ | VM_WRITE | VM_EXEC) == 0 || flags & (VM_IO | VM_PFNMAP) != 0 {
        return Err(EFAULT);
    }
    if flags & VM_MAYSHARE != 0 && !mm_only {
        if let Some(file) = vma.file() {
            let file: ARef<File> = file.into();
            let start = (vma.pgoff() << PAGE_SHIFT) + (at - vma.start());
            return Ok(Store::Shared {
                file,
                start,
                end: start + (end - at),
            });
        }
    }
    Ok(Store::Private { start: at, end })
}

/// Resolves `[addr, addr + len)` in the caller's mm (step 1): one [`Store`] per mapping the
/// range covers, in address order (adjacent private parts merged): the first, and the others,
/// if any (none, and no allocation, for the usual range within one mapping).
///
/// The whole range is checked before anything is done, so a call either processes all of it or
/// fails with no effect. Errors, in this precedence whatever their order in the range:
/// `EFAULT` if part of the range is unmapped (a hole), or mapped `PROT_NONE` or as I/O memory;
/// then `EACCES` if the caller cannot write to part of it.
///
/// `mm_only`: every part is taken as private memory (`CLEANUP_ROBUST_LIST_MM_ONLY`).
fn resolve(addr: usize, len: usize, mm_only: bool) -> Result<(Store, KVec<Store>)> {
    let task = kernel::current!();
    let mm = task.mm().ok_or(EFAULT)?.mmap_read_lock();
    let end = addr + len; // no overflow: the system call checked access_ok()
    let vma = mm.vma_lookup(addr).ok_or(EFAULT)?;
    let mut writable = vma.flags() & VM_WRITE != 0;
    let mut at = end.min(vma.end());
    let mut first = part(vma, addr, at, mm_only)?;
    let mut rest: KVec<Store> = KVec::new();
    while at < end {
        let vma = mm.vma_lookup(at).ok_or(EFAULT)?;
        writable &= vma.flags() & VM_WRITE != 0;
        let part_end = end.min(vma.end());
        let next = part(vma, at, part_end, mm_only)?;
        let last = match rest.last_mut() {
            Some(last) => last,
            None => &mut first,
        };
        match (last, next) {
            (
                Store::Private { end: e, .. },
                Store::Private {
                    start,
                    end: next_end,
                },
            ) if *e == start => {
                *e = next_end;
            }
            (_, next) => rest.push(next, GFP_KERNEL_ACCOUNT)?,
        }
        at = part_end;
    }
    if !writable {
        return Err(EACCES);
    }
    Ok((first, rest))
}

/// The page cache of `file`.
fn mapping_of(file: &File) -> *const bindings::address_space {
    // SAFETY: The file is valid while borrowed; `f_mapping` is set at open and stays.
    unsafe { (*file.as_ptr()).f_mapping }
}

/// Finds where each mm maps a shared store (step 2).
///
/// The areas are found under `i_mmap_rwsem`, where nothing may be allocated with reclaim: they
/// are counted first, then collected into room made after dropping it (again if areas were
/// added in between), so that memory mapped by thousands of processes needs no large atomic
/// allocation; the room is `kvmalloc()`ed, so that a user who maps the memory many times over
/// cannot make it a large physically contiguous one either.
fn shared_windows(file: &File, start: usize, end: usize, out: &mut KVVec<Window>) -> Result {
    let (first, last) = (start >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT);
    let mapping = mapping_of(file);
    let mut more = 0usize;
    loop {
        out.reserve(more, GFP_KERNEL_ACCOUNT)?;
        let base = out.len();
        more = 0;
        let _ = RmapVma::for_each(file, first, last, |vma: &RmapVma| {
            if vma.flags() & VM_MAYSHARE == 0 {
                return ControlFlow::<()>::Continue(()); // MAP_PRIVATE: not the same memory
            }
            // The part of the store this VMA maps, in bytes of the file.
            let vma_start = vma.pgoff() << PAGE_SHIFT;
            let vma_end = vma_start + (vma.end() - vma.start());
            let (s, e) = (start.max(vma_start), end.min(vma_end));
            if s >= e {
                return ControlFlow::Continue(());
            }
            let w = Window {
                mm: vma.mm().as_raw(),
                start: vma.start() + (s - vma_start),
                end: vma.start() + (e - vma_start),
                shared: Some((mapping, s)),
                mixed: false,
                grab: Some(vma.mm().into()),
            };
            if out.push_within_capacity(w).is_err() {
                more += 1;
            }
            ControlFlow::Continue(())
        });
        if more == 0 {
            return Ok(());
        }
        // Areas were added since the room was made: drop what was collected, make more.
        out.truncate(base);
        killable()?;
        more = more * 2 + (out.capacity() - base);
    }
}

/// The windows in `mm`, of `windows` sorted by mm.
fn windows_of(windows: &[Window], mm: *mut bindings::mm_struct) -> &[Window] {
    let first = windows.partition_point(|w| (w.mm as usize) < mm as usize);
    let rest = &windows[first..];
    &rest[..rest.partition_point(|w| w.mm == mm)]
}

/// Collects every thread of the system whose mm has a window, of `windows` sorted by mm (the
/// fallback of step 3).
fn scan(windows: &[Window]) -> Result<KVVec<ARef<Task>>> {
    index::collect_user_tasks(|t| !windows_of(windows, futex::flags_mm(t).1).is_empty())
}

/// Another task's memory, read through its pinned pages ([`remote::read_task_memory`]), waiting
/// for its mm's `mmap_lock` as `wait`, the call's budget, allows.
struct TaskMem<'a> {
    task: &'a Task,
    wait: &'a LockWait,
}

impl UserMem for TaskMem<'_> {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result {
        remote::read_task_memory(self.task, self.wait, addr, buf)
    }
}

/// Another process's memory, read through its mm's pages ([`remote::read_mm_memory`]),
/// waiting for its `mmap_lock` as `wait`, the call's budget, allows.
struct MmMem<'a> {
    mm: &'a kernel::mm::MmWithUser,
    wait: &'a LockWait,
}

impl UserMem for MmMem<'_> {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result {
        remote::read_mm_memory(self.mm, self.wait, addr, buf)
    }
}

/// A `list_op_pending` slot that pointed into the range when it was read.
struct Match<'a> {
    task: &'a Task,
    mm: *mut bindings::mm_struct,
    head: Head,
    raw: usize,
    /// The futex word it points at, in `mm`.
    word: usize,
    /// The window that holds `word`.
    window: &'a Window,
}

/// The window of `windows` (the windows in one mm, sorted by start, disjoint) that holds the
/// futex word at `word`.
fn window_holding(windows: &[Window], word: usize) -> Option<&Window> {
    let i = windows.partition_point(|w| w.end <= word);
    windows.get(i).filter(|w| w.holds(word))
}

/// Step 4: reads each head of `task`, a task of `mm`, with no lock held, and clears each slot
/// that points into one of `windows`, the windows in `mm` (sorted by start). A slot that does
/// not needs nothing, and cannot start to: only its own task sets it, and not to a mutex being
/// destroyed. Returns how many it cleared. Nothing is allocated: what a call keeps does not
/// grow with the tasks that point at the memory.
///
/// `local`: `mm` is the caller's own (its memory is read directly).
///
/// Context: process context, no lock held; may sleep as long as a fault on the heads does, and
/// for locks other tasks hold as long as `wait`, the call's budget, allows.
///
/// Inlined: see [`part`].
#[inline(always)]
fn examine(
    task: &Task,
    mm: *mut bindings::mm_struct,
    local: bool,
    windows: &[Window],
    wait: &LockWait,
) -> Result<usize> {
    let mut cleared = 0;
    for head in futex::heads(task).into_iter().flatten() {
        // Directly from the caller's own memory for its threads and `CLONE_VM` siblings.
        let found = if local {
            pending_in(&CurrentMem, head, windows)
        } else {
            pending_in(&TaskMem { task, wait }, head, windows)
        };
        if let Some(p) = readable(found, task, head)? {
            cleared += usize::from(clear(&p.into_match(task, mm, head), wait)?);
        }
    }
    Ok(cleared)
}

/// A slot that points into a window, as [`pending_in`] read it.
struct Pending<'a> {
    raw: usize,
    word: usize,
    window: &'a Window,
}

impl<'a> Pending<'a> {
    fn into_match(self, task: &'a Task, mm: *mut bindings::mm_struct, head: Head) -> Match<'a> {
        Match {
            task,
            mm,
            head,
            raw: self.raw,
            word: self.word,
            window: self.window,
        }
    }
}

/// Reads the `list_op_pending` slot of `head` from `mem`: whether it points into one of
/// `windows` (sorted by start). Most slots are empty: `futex_offset` is only read for one that
/// is not. A head that cannot be read from here fails with an error that is [`unreadable`].
///
/// Inlined: see [`part`].
#[inline(always)]
fn pending_in<'w>(
    mem: &impl UserMem,
    head: Head,
    windows: &'w [Window],
) -> Result<Option<Pending<'w>>> {
    let raw = head.fetch_raw(mem, head.pending_slot())?;
    let pending = Entry::decode(raw, head.abi);
    if pending.addr == 0 {
        return Ok(None);
    }
    let futex_offset = head.futex_offset(mem)?;
    let word = head.futex_word(pending, futex_offset);
    Ok(window_holding(windows, word).map(|window| Pending { raw, word, window }))
}

/// Step 4 for the tasks of `mm` from the index, without allocating and without a reference per
/// task: the heads are copied out 16 at a time ([`index::TaskIndex::for_each_head`]), read from
/// `mem` (the caller's own memory, or `mm`'s pages) with no lock held, and a task's reference
/// is taken only for a slot to clear. Adds the slots it clears to `cleared`.
///
/// `wait` is the call's budget ([`LockWait`]), which `mem` draws on as well: another process
/// that keeps its `mmap_lock` delays the call once, not once per thread or slot.
///
/// Returns `false` if the index is incomplete.
fn examine_indexed(
    index: &index::TaskIndex,
    mm: *mut bindings::mm_struct,
    mem: &impl UserMem,
    windows: &[Window],
    wait: &LockWait,
    cleared: &mut usize,
) -> Result<bool> {
    let mut seen = 0usize;
    let mut examine_head = |th: index::TaskHead| -> Result {
        // A fatal signal ends the call within [`KILLABLE_EVERY`] heads: reads that do not
        // fault take no time to speak of, and one that faults is cut short by the signal.
        if seen % KILLABLE_EVERY == 0 {
            killable()?;
        }
        seen = seen.wrapping_add(1);
        let found = match pending_in(mem, th.head, windows) {
            Ok(found) => found,
            Err(e) if unreadable(e) => {
                // A fault cut short by a fatal signal fails as an unreadable head would: the
                // call ends there, nothing is counted.
                killable()?;
                if let Some(task) = index.task(mm, th.task) {
                    count_missed(&task, th.head);
                }
                // Otherwise it exited since the copy: nothing was missed.
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let Some(p) = found else {
            return Ok(());
        };
        let Some(task) = index.task(mm, th.task) else {
            // It left the index: its lists are walked, or it has no head left to walk.
            return Ok(());
        };
        *cleared += usize::from(clear(&p.into_match(&task, mm, th.head), wait)?);
        Ok(())
    };
    match index.for_each_head(mm, |th| match examine_head(th) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    }) {
        None => Ok(false),
        Some(ControlFlow::Continue(())) => Ok(true),
        Some(ControlFlow::Break(e)) => Err(e),
    }
}

/// Whether a read of a head failed because it cannot be read from here (unmapped, not faulted
/// in for another process, or that process's `mmap_lock` stays taken: see [`remote`]); other
/// errors (`EINTR`, `ENOMEM`) end the call.
fn unreadable(e: Error) -> bool {
    e == EFAULT || e == EAGAIN
}

/// What [`pending_in`] found for `head`, a head of `task`: `None` if nothing, or if the head
/// cannot be read from here ([`unreadable`]; see [`count_missed`]); other errors end the call.
fn readable<'w>(
    read: Result<Option<Pending<'w>>>,
    task: &Task,
    head: Head,
) -> Result<Option<Pending<'w>>> {
    match read {
        Ok(found) => Ok(found),
        Err(e) if unreadable(e) => {
            // As in `examine_indexed`: a fault cut short by a fatal signal is not a miss.
            killable()?;
            count_missed(task, head);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Counts a head of `task` that could not be read as missed, if `task` still has it: a task
/// that exited (or exec'd) since its heads were found has walked its lists and dropped them
/// (its stack, which may hold its head, may be unmapped since), and nothing was missed.
fn count_missed(task: &Task, head: Head) {
    if futex::heads(task).contains(&Some(head)) {
        CLEANUP_MISSED.add(1, Relaxed);
    }
}

/// Whether `m`'s futex word is still, in its mm locked by `mm`, the memory being cleaned: for
/// shared memory, an area that maps the same page cache at the same offset; for the caller's
/// private memory (and any memory with `CLEANUP_ROBUST_LIST_MM_ONLY`), any mapping at the
/// address: its identity is the address.
fn still_maps(mm: &MmapReadGuard<'_>, m: &Match<'_>) -> bool {
    let Some(vma) = mm.vma_lookup(m.word) else {
        return false;
    };
    let Some((mapping, offset)) = m.window.shared else {
        return true;
    };
    let Some(file) = vma.file() else {
        return false;
    };
    let at = (vma.pgoff() << PAGE_SHIFT) + (m.word - vma.start());
    vma.flags() & VM_MAYSHARE != 0
        && core::ptr::eq(mapping_of(file), mapping)
        && at == offset + (m.word - m.window.start)
}

/// Clears a slot found by [`examine`] or [`examine_indexed`], under its task's
/// `futex.exit_mutex`, so that an exit walk under way finishes first (and then nothing is left
/// to do) and none starts while the slot is cleared. Returns whether it cleared it.
///
/// The task's `futex.exit_mutex` and its mm's `mmap_lock` are waited for as `wait`, the call's
/// budget, allows: an exit walk can hold the mutex for as long as the task's owner wants (it
/// waits on a fault on its list, in a FUSE file it serves). A slot whose locks cannot be
/// taken within it is counted as missed.
///
/// Context: process context, no lock held; may sleep. Fails with `EINTR` if the caller is
/// killed while it waits.
fn clear(m: &Match<'_>, wait: &LockWait) -> Result<bool> {
    let slot = m.head.pending_slot();
    if slot % m.head.word_size() != 0 {
        // A head at an odd address (no C library registers one): the owner's own plain stores
        // to the slot are not single-copy atomic, so no compare-and-exchange is atomic against
        // them; clearing it could overwrite a pending operation the owner started meanwhile.
        CLEANUP_UNALIGNED.add(1, Relaxed);
        return Ok(false);
    }
    let guard = match wait.acquire(|| ExitGuard::try_lock(m.task)) {
        Ok(guard) => guard,
        Err(e) if e == EAGAIN => {
            // An exit walk (or a registration) under way kept it: the walk may still act on
            // the slot.
            CLEANUP_MISSED.add(1, Relaxed);
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    if guard.exited() {
        return Ok(false);
    }
    // Its mm now: exec may have replaced it since the slot was read.
    let Some(mm) = m.task.get_mm().filter(|mm| mm.as_raw() == m.mm) else {
        return Ok(false);
    };
    if !guard.heads().contains(&Some(m.head)) {
        return Ok(false); // registered another head meanwhile
    }
    // A slot that changed since it was read, or whose word is no longer the memory being
    // cleaned, is left alone.
    let mut elsewhere = false;
    let size = m.head.word_size();
    match remote::compare_and_clear(&mm, wait, slot, m.raw as u64, size, |locked| {
        elsewhere = !still_maps(locked, m);
        !elsewhere
    }) {
        Ok(cleared) => {
            if elsewhere && m.window.mixed {
                // Its window was merged from two that disagreed: the word may be the memory
                // being cleaned through the identity that was not kept.
                CLEANUP_MISSED.add(1, Relaxed);
            }
            Ok(cleared)
        }
        // The slot's page could not be pinned for writing (its owner unmapped it or made it
        // read-only meanwhile, it is not faulted in for another process, or lies in a shared
        // file other than shmem), or the owner's `mmap_lock` stayed taken. It cannot be
        // cleared from here, and its exit walk may still act on it: counted.
        Err(e) if e == EFAULT || e == EAGAIN => {
            CLEANUP_MISSED.add(1, Relaxed);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

// bindgen's layout of the `mm_struct` field read below must be C's (see `futex.rs`).
const _: () = assert!(
    core::mem::offset_of!(bindings::mm_struct, __bindgen_anon_1.mm_users)
        == bindings::MM_STRUCT_MM_USERS
);

/// Whether the current task is the only user of its mm: `mm_users` is 1. Every other task
/// using the mm (thread, `CLONE_VM` sibling, `vfork()` child) holds a reference on it, and none
/// can be created while the current task runs this check, so the answer cannot become wrong
/// during a system call; a transient user (`/proc`, ptrace) only makes it false.
fn current_mm_single_user() -> bool {
    let task = kernel::current!();
    let Some(mm) = task.mm() else {
        return false;
    };
    // SAFETY: `mm` is the live current mm; `mm_users` is only changed atomically.
    unsafe { Atomic::<i32>::from_ptr(&raw mut (*mm.as_raw()).__bindgen_anon_1.mm_users.counter) }
        .load(Relaxed)
        == 1
}

/// How many heads [`examine_indexed`] reads between two checks for a fatal signal.
const KILLABLE_EVERY: usize = 16;

/// Ends the call if its task is being killed (`EINTR`): a call may wait on faults as long as
/// they last, and retries what other tasks can make it retry.
pub(crate) fn killable() -> Result {
    if kernel::current!().fatal_signal_pending() {
        return Err(EINTR);
    }
    Ok(())
}

/// Steps 3 and 4 for a set of windows, sorted by mm, then by start.
///
/// Context: process context, no lock held; may sleep.
fn clean(windows: &[Window]) -> Result<usize> {
    let me = current_mm();
    if windows.iter().all(|w| w.mm == me) && current_mm_single_user() {
        // Only the caller's mm maps the memory, and no other task uses that mm: the caller's
        // own heads are all there is to see.
        return examine(kernel::current!(), me, true, windows, &LockWait::new());
    }
    let wait = LockWait::new();
    let mut cleared = 0;
    if clean_indexed(windows, me, &wait, &mut cleared)? {
        return Ok(cleared);
    }
    // The index is incomplete: every thread of the system. A task found there whose mm
    // changed since (exec) has no window any more.
    CLEANUP_SCANS.add(1, Relaxed);
    for t in scan(windows)?.iter() {
        killable()?;
        let mm = futex::flags_mm(t).1;
        let in_mm = windows_of(windows, mm);
        if !in_mm.is_empty() {
            cleared += examine(t, mm, mm == me, in_mm, &wait)?;
        }
    }
    Ok(cleared)
}

/// Steps 3 and 4 from the index, for each mm that has a window (of `windows`, sorted by mm),
/// adding the slots it clears to `cleared`, waiting for locks other tasks hold as `wait`, the
/// call's budget, allows. Returns `false` if the index is incomplete: the
/// slots cleared before that was known stay cleared and counted, and the scan that follows
/// finds them empty.
fn clean_indexed(
    windows: &[Window],
    me: *mut bindings::mm_struct,
    wait: &LockWait,
    cleared: &mut usize,
) -> Result<bool> {
    let Some(index) = index::get() else {
        return Ok(false);
    };
    for in_mm in windows.chunk_by(|a, b| a.mm == b.mm) {
        let mm = in_mm[0].mm;
        let done = if mm == me {
            examine_indexed(index, me, &CurrentMem, in_mm, wait, cleared)?
        } else {
            // Read through the mm the window holds (another process's windows always hold
            // theirs; without one, the scan). One whose last user is gone has no task left
            // that has not walked its lists (they are walked before the mm is released). If
            // its last user exits meanwhile, the mm is torn down when this reference is dropped,
            // here, as after `process_vm_readv()`.
            let Some(grab) = in_mm[0].grab.as_ref() else {
                return Ok(false);
            };
            let Some(user) = grab.mmget_not_zero() else {
                continue;
            };
            let mem = MmMem { mm: &user, wait };
            examine_indexed(index, mm, &mem, in_mm, wait, cleared)?
        };
        if !done {
            return Ok(false);
        }
    }
    Ok(true)
}

fn cleanup(addr: usize, len: usize, flags: u32) -> Result<usize> {
    let (first, rest) = resolve(addr, len, flags & MM_ONLY != 0)?;
    if let (Store::Private { start, end }, true) = (&first, rest.is_empty()) {
        // The common case, without allocating: private memory, one window.
        return clean(&[Window::own(*start, *end)]);
    }
    let mut windows = KVVec::new();
    for store in Iterator::chain(core::iter::once(first), rest) {
        match store {
            Store::Private { start, end } => {
                windows.push(Window::own(start, end), GFP_KERNEL_ACCOUNT)?
            }
            Store::Shared { file, start, end } => shared_windows(&file, start, end, &mut windows)?,
        }
    }
    heapsort_by_key(&mut windows, |w| (w.mm as usize, w.start));
    merge_overlapping(&mut windows);
    clean(&windows)
}

/// Merges the windows of `windows` (sorted by mm, then by start) that overlap in one mm, so
/// that the windows of each mm are disjoint, as [`window_holding`] needs. They overlap when
/// the caller's range maps parts of one file that overlap (the same page mapped at two of its
/// addresses): each part then finds every mapping of the other, in the same area of that mm,
/// which maps each address at one offset, so the two agree. They disagree only if that mm
/// replaced the area between the two searches (it remapped the memory while the call ran):
/// the merged window keeps the first's identity and is marked [`Window::mixed`], so that a
/// slot the clear then finds outside that identity is counted as missed.
fn merge_overlapping(windows: &mut KVVec<Window>) {
    let mut kept = 0;
    for i in 1..windows.len() {
        let (last, next) = (&windows[kept], &windows[i]);
        if last.mm == next.mm && next.start < last.end {
            let agree = match (last.shared, next.shared) {
                (None, None) => true,
                (Some((m1, o1)), Some((m2, o2))) => {
                    core::ptr::eq(m1, m2) && o2 == o1 + (next.start - last.start)
                }
                _ => false,
            };
            let (end, mixed) = (last.end.max(next.end), last.mixed || next.mixed || !agree);
            windows[kept].end = end;
            windows[kept].mixed = mixed;
        } else {
            kept += 1;
            windows.swap(kept, i);
        }
    }
    windows.truncate((kept + 1).min(windows.len()));
}

/// Sorts `v` by `key` in place: a heapsort, O(n log n) without allocating. (`core`'s sorts end
/// in a panic on an inconsistent order that objtool does not know as noreturn with rustc 1.86:
/// "falls through to next function".)
///
/// Context: process context; may sleep (between two sifts: a user can make the windows of one
/// call many).
pub(crate) fn heapsort_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    // Moves `v[root]` down the max-heap `v[..end]`.
    let sift = |v: &mut [T], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && key(&v[child]) < key(&v[child + 1]) {
            child += 1;
        }
        if key(&v[root]) >= key(&v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    };
    for i in (0..v.len() / 2).rev() {
        sift(v, i, v.len());
        cond_resched();
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift(v, 0, end);
        cond_resched();
    }
}

/// `futex_robust_ops::cleanup_robust_list`.
///
/// # Safety
///
/// Called by the futex core in process context, for the current task, with arguments it
/// validated: no flag but `CLEANUP_ROBUST_LIST_MM_ONLY`, `addr` and `len` 4-byte aligned,
/// `len > 0`, and the range in user space without wrapping.
pub(crate) unsafe extern "C" fn cleanup_robust_list(addr: usize, len: usize, flags: u32) -> isize {
    CLEANUP_CALLS.add(1, Relaxed);
    match cleanup(addr, len, flags) {
        Ok(n) => {
            CLEANUP_CLEARED.add(n as u64, Relaxed);
            n as isize
        }
        Err(e) => e.to_errno() as isize,
    }
}
