// SPDX-License-Identifier: GPL-2.0

//! Thin wrappers around the C interfaces this module uses.
//!
//! 6.12's `kernel` crate has no abstractions for futexes, page-fault control, `mmap_lock` or
//! debugfs. Every raw FFI call of the module lives here, each behind a small safe function whose
//! documentation states its calling context.

use core::{
    mem::size_of,
    ptr::{self, NonNull},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};
use kernel::{
    bindings,
    error::{
        code::{EFAULT, EINVAL},
        to_result,
    },
    prelude::*,
    str::CStr,
    types::FromBytes,
    uaccess::{UserPtr, UserSlice},
};

/// A pointer to a `task_struct`, as passed by the futex core to the registered operations.
pub(crate) type RawTask = *mut bindings::task_struct;

// bindgen's layout of `struct task_struct` must be C's: reading a field at a wrong offset would
// silently walk the wrong list. bindgen is known to drop the alignment of an empty aligned member
// (`stats` without `CONFIG_SCHEDSTATS`), so check the fields this module reads, at build time.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<bindings::task_struct>() == bindings::TASK_STRUCT_SIZE);
    assert!(offset_of!(bindings::task_struct, mm) == bindings::TASK_STRUCT_MM);
    assert!(offset_of!(bindings::task_struct, robust_list) == bindings::TASK_STRUCT_ROBUST_LIST);
    #[cfg(CONFIG_COMPAT)]
    assert!(
        offset_of!(bindings::task_struct, compat_robust_list)
            == bindings::TASK_STRUCT_COMPAT_ROBUST_LIST
    );
};

/// Reads a `T` from the current task's user memory at `addr`.
///
/// Context: process context with a user `mm` (a user task, or a kthread that adopted one). May
/// fault pages in and so may sleep.
pub(crate) fn get_user<T: FromBytes>(addr: UserPtr) -> Result<T> {
    UserSlice::new(addr, size_of::<T>()).reader().read()
}

/// Reads the `u32` at `addr` of the current task's user memory with `get_user()`: one access,
/// where [`get_user`] goes through `copy_from_user()`.
///
/// Context: as [`get_user`].
#[inline(always)]
pub(crate) fn get_user_u32(addr: UserPtr) -> Result<u32> {
    let mut v = 0u32;
    // SAFETY: `v` is a valid `u32`; `get_user()` checks the user address itself.
    match unsafe { bindings::get_user_u32(&mut v, addr as *const u32) } {
        0 => Ok(v),
        _ => Err(EFAULT), // the only error get_user() returns
    }
}

/// Reads the native word (`unsigned long`) at `addr` of the current task's user memory with
/// `get_user()`.
///
/// Context: as [`get_user`].
#[inline(always)]
pub(crate) fn get_user_ulong(addr: UserPtr) -> Result<usize> {
    let mut v = 0usize;
    // SAFETY: `v` is a valid `unsigned long`; `get_user()` checks the user address itself.
    match unsafe { bindings::get_user_ulong(&mut v, addr as *const usize) } {
        0 => Ok(v),
        _ => Err(EFAULT), // the only error get_user() returns
    }
}

/// Atomically replaces the `u32` at `uaddr` in the current task's memory with `new` if it equals
/// `old`, and returns the value found there (`old` on success).
///
/// This is `futex_cmpxchg_value_locked()`, the primitive of the built-in walker: page faults
/// are disabled around the access, so a word that is not present or not writable fails with
/// `EFAULT` instead of faulting it in; use [`fault_in_user_writeable`] and retry. Architectures
/// may also return `EAGAIN`.
///
/// Context: any context with a user `mm`; does not sleep.
#[inline(always)]
pub(crate) fn cmpxchg_user_u32(uaddr: UserPtr, old: u32, new: u32) -> Result<u32> {
    let mut found = 0u32;
    // SAFETY: `found` is a valid, writable `u32`. The user address is checked by the arch code
    // (`user_access_begin()`), and with page faults disabled a bad address fails with `-EFAULT`.
    match unsafe { bindings::futex_cmpxchg_value_locked(&mut found, uaddr as *mut u32, old, new) } {
        0 => Ok(found),
        e => Err(Error::from_errno(e)),
    }
}

/// Faults in the user word at `uaddr` of the current task for writing, as
/// `fault_in_user_writeable()` does. Fails with `EFAULT` if it is not mapped writable.
///
/// Context: process context, takes the current `mm`'s `mmap_lock` for reading, may sleep. Must
/// not be called with `mmap_lock` held.
pub(crate) fn fault_in_user_writeable(uaddr: UserPtr) -> Result {
    // SAFETY: `get_current()` always returns the valid current task.
    let mm = unsafe { (*bindings::get_current()).mm };
    if mm.is_null() {
        return Err(EFAULT);
    }
    // SAFETY: `mm` is the current task's mm, which stays alive while the task runs.
    let locked = unsafe { MmapReadGuard::lock(mm) };
    // SAFETY: `mm` is valid and its `mmap_lock` is held for reading, as required.
    let ret = unsafe {
        bindings::fixup_user_fault(
            locked.mm(),
            uaddr as _,
            bindings::fault_flag_FAULT_FLAG_WRITE,
            ptr::null_mut(),
        )
    };
    drop(locked);
    to_result(ret)
}

/// Wakes one waiter on the futex word at `uaddr` (shared key), the wakeup the robust list walk
/// issues. Failures are ignored, as by the built-in walker.
///
/// Context: process context; may sleep (it may fault in the word to compute the key).
pub(crate) fn futex_wake_robust(uaddr: UserPtr) {
    // SAFETY: `futex_wake_robust()` accepts any user address and validates it itself.
    unsafe { bindings::futex_wake_robust(uaddr as *mut u32) };
}

/// Returns the thread ID of `task` in the PID namespace of the current task (`task_pid_vnr()`).
///
/// # Safety
///
/// `task` must point to a valid `task_struct`.
pub(crate) unsafe fn task_pid_vnr(task: RawTask) -> i32 {
    // SAFETY: `task` is valid by the function's safety requirement.
    unsafe { bindings::task_pid_vnr(task) }
}

/// Gives the CPU away if a reschedule is due.
///
/// Context: process context, no spinlock held; may sleep.
#[inline(always)]
pub(crate) fn cond_resched() {
    // SAFETY: No preconditions beyond the documented context.
    unsafe { bindings::cond_resched() };
}

/// The operations this module registers; see `struct futex_robust_ops`.
pub(crate) struct RobustOps {
    pub(crate) exit_robust_list: Option<unsafe extern "C" fn(RawTask)>,
    pub(crate) compat_exit_robust_list: Option<unsafe extern "C" fn(RawTask)>,
    pub(crate) cleanup_robust_list: Option<unsafe extern "C" fn(usize, usize, u32) -> isize>,
    pub(crate) robust_list_set: Option<unsafe extern "C" fn(RawTask)>,
}

/// A registration of [`RobustOps`] with the futex core; unregistered on drop.
///
/// The `futex_robust_ops` lives in its own allocation, whose address stays valid for as long as
/// the registration exists, as the futex core requires.
pub(crate) struct RobustOpsRegistration {
    ops: KBox<bindings::futex_robust_ops>,
}

// SAFETY: The registration only holds the `futex_robust_ops` it registered, which the futex core
// reads from any thread; dropping it (unregistering) from another thread is allowed.
unsafe impl Send for RobustOpsRegistration {}
// SAFETY: `&RobustOpsRegistration` gives no access to anything.
unsafe impl Sync for RobustOpsRegistration {}

impl RobustOpsRegistration {
    /// Registers `ops` on behalf of `module`. Fails with `EBUSY` if another set is registered.
    ///
    /// Context: process context, may sleep.
    pub(crate) fn new(module: &'static ThisModule, ops: RobustOps) -> Result<Self> {
        let ops = KBox::new(
            bindings::futex_robust_ops {
                owner: module.as_ptr(),
                exit_robust_list: ops.exit_robust_list,
                compat_exit_robust_list: ops.compat_exit_robust_list,
                cleanup_robust_list: ops.cleanup_robust_list,
                robust_list_set: ops.robust_list_set,
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `ops` points to an initialised `futex_robust_ops` that stays valid until
        // `futex_robust_ops_unregister()` is called in `drop`.
        to_result(unsafe { bindings::futex_robust_ops_register(&*ops) })?;
        Ok(Self { ops })
    }
}

impl Drop for RobustOpsRegistration {
    fn drop(&mut self) {
        // SAFETY: `self.ops` was registered in `new`; after this call returns no new call into
        // it starts, and the ones under way pin this module, so freeing `ops` is safe.
        unsafe { bindings::futex_robust_ops_unregister(&*self.ops) };
    }
}

/// A debugfs directory, removed with its contents on drop.
///
/// Debugfs failures are not errors (the kernel convention): the directory or a file may be
/// missing, and the rest of the module works all the same.
pub(crate) struct DebugfsDir {
    dentry: *mut bindings::dentry,
}

// SAFETY: A dentry may be removed from any thread.
unsafe impl Send for DebugfsDir {}
// SAFETY: Adding files to a debugfs directory is allowed concurrently from any thread.
unsafe impl Sync for DebugfsDir {}

impl DebugfsDir {
    /// Creates the directory `name` at the debugfs root.
    ///
    /// Context: process context, may sleep.
    pub(crate) fn new(name: &'static CStr) -> Self {
        // SAFETY: `name` is a NUL-terminated string; a NULL parent means the debugfs root.
        let dentry = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), ptr::null_mut()) };
        Self { dentry }
    }

    /// Adds a read-only file `name` that shows `counter` in decimal.
    ///
    /// debugfs reads the value with a plain 64-bit load, which cannot tear on the 64-bit
    /// architectures this module builds for.
    pub(crate) fn add_counter(&self, name: &'static CStr, counter: &'static AtomicU64) {
        // SAFETY: `name` is NUL-terminated, `self.dentry` is a debugfs directory (or an error
        // pointer, which debugfs accepts), and `counter` is `'static`, so it outlives the file,
        // which is removed with the directory.
        unsafe {
            bindings::debugfs_create_u64(name.as_char_ptr(), 0o444, self.dentry, counter.as_ptr())
        };
    }
}

impl Drop for DebugfsDir {
    fn drop(&mut self) {
        // SAFETY: `self.dentry` came from `debugfs_create_dir()`; `debugfs_remove()` accepts
        // error pointers too.
        unsafe { bindings::debugfs_remove(self.dentry) };
    }
}

// The fields of these structures the cleanup system call reads; see the check above.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(bindings::task_struct, flags) == bindings::TASK_STRUCT_FLAGS);
    assert!(
        offset_of!(bindings::task_struct, futex_exit_mutex)
            == bindings::TASK_STRUCT_FUTEX_EXIT_MUTEX
    );
    assert!(offset_of!(bindings::task_struct, futex_state) == bindings::TASK_STRUCT_FUTEX_STATE);
    assert!(size_of::<bindings::vm_area_struct>() == bindings::VM_AREA_STRUCT_SIZE);
    assert!(
        offset_of!(bindings::vm_area_struct, __bindgen_anon_2) == bindings::VM_AREA_STRUCT_VM_FLAGS
    );
    assert!(offset_of!(bindings::vm_area_struct, vm_pgoff) == bindings::VM_AREA_STRUCT_VM_PGOFF);
    assert!(offset_of!(bindings::vm_area_struct, vm_file) == bindings::VM_AREA_STRUCT_VM_FILE);
    assert!(offset_of!(bindings::file, f_mapping) == bindings::FILE_F_MAPPING);
    assert!(
        offset_of!(bindings::mm_struct, __bindgen_anon_1.mm_users) == bindings::MM_STRUCT_MM_USERS
    );
};

/// The fields of a `vm_area_struct` this module uses, copied while its `mmap_lock` (or the
/// `i_mmap_rwsem` of its file) is held.
#[derive(Clone, Copy)]
pub(crate) struct VmaInfo {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) flags: usize,
    /// Offset of `start` in the backing file, in pages.
    pub(crate) pgoff: usize,
    pub(crate) file: *mut bindings::file,
    pub(crate) mm: *mut bindings::mm_struct,
}

impl VmaInfo {
    /// # Safety
    ///
    /// `vma` must be valid, and stay so for the call: its mm's `mmap_lock` or its file's
    /// `i_mmap_rwsem` is held.
    unsafe fn read(vma: *const bindings::vm_area_struct) -> Self {
        // SAFETY: `vma` is valid per the safety requirement; `vm_start`/`vm_end` and `vm_flags`
        // are plain fields in their unions.
        unsafe {
            let v = &*vma;
            VmaInfo {
                start: v.__bindgen_anon_1.__bindgen_anon_1.vm_start,
                end: v.__bindgen_anon_1.__bindgen_anon_1.vm_end,
                flags: v.__bindgen_anon_2.vm_flags,
                pgoff: v.vm_pgoff,
                file: v.vm_file,
                mm: v.vm_mm,
            }
        }
    }
}

/// An mm with its `mmap_lock` held for reading; unlocked on drop.
///
/// Context: process context, may sleep. Lock order: after a task's `futex_exit_mutex`; never
/// under `i_mmap_rwsem` or RCU.
pub(crate) struct MmapReadGuard(*mut bindings::mm_struct);

impl MmapReadGuard {
    /// Locks `mm`.
    ///
    /// # Safety
    ///
    /// `mm` must stay valid until the guard is dropped (the current task's mm, or one the
    /// caller holds a reference on).
    pub(crate) unsafe fn lock(mm: *mut bindings::mm_struct) -> Self {
        // SAFETY: `mm` is valid per the safety requirement.
        unsafe { bindings::mmap_read_lock(mm) };
        Self(mm)
    }

    /// Locks the current task's mm; `None` for a task without one (a kernel thread).
    pub(crate) fn current() -> Option<Self> {
        // SAFETY: `get_current()` returns the valid current task, whose `mm` stays valid while
        // the task runs.
        let mm = unsafe { (*bindings::get_current()).mm };
        // SAFETY: see above.
        (!mm.is_null()).then(|| unsafe { Self::lock(mm) })
    }

    pub(crate) fn mm(&self) -> *mut bindings::mm_struct {
        self.0
    }

    /// The VMA that contains `addr`, if any.
    pub(crate) fn vma_at(&self, addr: usize) -> Option<VmaInfo> {
        // SAFETY: the mm is valid and its `mmap_lock` is held.
        let vma = unsafe { bindings::find_vma(self.0, addr as _) };
        if vma.is_null() {
            return None;
        }
        // SAFETY: `vma` was just found under the `mmap_lock` we hold.
        let info = unsafe { VmaInfo::read(vma) };
        (info.start <= addr).then_some(info)
    }
}

impl Drop for MmapReadGuard {
    fn drop(&mut self) {
        // SAFETY: locked in `lock`.
        unsafe { bindings::mmap_read_unlock(self.0) };
    }
}

/// A reference on an `mm_struct` itself (`mmgrab()`): it stays allocated, so it can be compared
/// and locked, but its address space may be torn down.
pub(crate) struct MmGrab(NonNull<bindings::mm_struct>);

impl MmGrab {
    /// # Safety
    ///
    /// `mm` must be valid for the call (e.g. found under a lock that keeps it alive).
    pub(crate) unsafe fn new(mm: *mut bindings::mm_struct) -> Option<Self> {
        let mm = NonNull::new(mm)?;
        // SAFETY: `mm` is valid per the safety requirement.
        unsafe { bindings::mmgrab(mm.as_ptr()) };
        Some(Self(mm))
    }
}

impl Drop for MmGrab {
    fn drop(&mut self) {
        // SAFETY: grabbed in `new`.
        unsafe { bindings::mmdrop(self.0.as_ptr()) };
    }
}

/// A reference on an address space (`mmget()`, through `get_task_mm()`): its memory can be
/// accessed. Released with `mmput()` on drop, which may sleep.
pub(crate) struct MmGet(NonNull<bindings::mm_struct>);

impl MmGet {
    /// The current task's address space, also for a kernel thread that adopted one (as a KUnit
    /// test does with `kunit_vm_mmap()`), where `get_task_mm()` returns NULL.
    pub(crate) fn current() -> Option<Self> {
        // SAFETY: `get_current()` returns the valid current task.
        let mm = NonNull::new(unsafe { (*bindings::get_current()).mm })?;
        // SAFETY: the current mm is valid while the task runs.
        unsafe { bindings::mmget_not_zero(mm.as_ptr()) }.then_some(MmGet(mm))
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::mm_struct {
        self.0.as_ptr()
    }
}

impl Drop for MmGet {
    fn drop(&mut self) {
        // SAFETY: taken by `get_task_mm()` in `TaskRef::mm`.
        unsafe { bindings::mmput(self.0.as_ptr()) };
    }
}

/// A counted reference on a task (`get_task_struct()`).
pub(crate) struct TaskRef(NonNull<bindings::task_struct>);

// SAFETY: A task reference may be dropped (`put_task_struct()`) from any thread, and the methods
// of `TaskRef` may be called from any thread.
unsafe impl Send for TaskRef {}

impl TaskRef {
    /// # Safety
    ///
    /// `task` must be valid for the call (e.g. found under RCU).
    pub(crate) unsafe fn new(task: RawTask) -> Option<Self> {
        let task = NonNull::new(task)?;
        // SAFETY: `task` is valid per the safety requirement.
        unsafe { bindings::get_task_struct(task.as_ptr()) };
        Some(Self(task))
    }

    pub(crate) fn as_ptr(&self) -> RawTask {
        self.0.as_ptr()
    }

    /// A racy snapshot of the task's `mm` pointer, to compare with, never to dereference: it may
    /// change (exec) or go away (exit) at any time.
    pub(crate) fn mm_ptr(&self) -> *mut bindings::mm_struct {
        // SAFETY: the task is valid while referenced.
        unsafe { task_flags_mm(self.as_ptr()).1 }
    }

    /// The task's robust list heads; see [`task_heads`].
    pub(crate) fn heads(&self) -> [(UserPtr, crate::robust_list::Abi); 2] {
        // SAFETY: the task is valid while referenced.
        unsafe { task_heads(self.as_ptr()) }
    }

    /// The task's address space, if it has one (`get_task_mm()`; NULL for kernel threads and
    /// tasks past `exit_mm()`).
    ///
    /// Context: process context; takes the task's `alloc_lock`.
    pub(crate) fn mm(&self) -> Option<MmGet> {
        // SAFETY: the task is valid while referenced.
        NonNull::new(unsafe { bindings::get_task_mm(self.as_ptr()) }).map(MmGet)
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: taken in `new`.
        unsafe { bindings::put_task_struct(self.0.as_ptr()) };
    }
}

/// A task's `futex_exit_mutex`, held: the task cannot start or be in the middle of walking its
/// robust lists at exit or exec.
pub(crate) struct FutexExitGuard<'a>(&'a TaskRef);

impl<'a> FutexExitGuard<'a> {
    /// Context: process context, may sleep. Lock order: before any `mmap_lock`; never two at once.
    pub(crate) fn lock(task: &'a TaskRef) -> Self {
        // SAFETY: the task is valid while referenced, and so is its mutex.
        unsafe { bindings::mutex_lock(&raw mut (*task.as_ptr()).futex_exit_mutex) };
        Self(task)
    }

    /// True once the task's exit has walked its robust lists (`FUTEX_STATE_DEAD`).
    pub(crate) fn exited(&self) -> bool {
        // SAFETY: `futex_state` is written under `futex_exit_mutex`, which we hold.
        unsafe { (*self.0.as_ptr()).futex_state == bindings::FUTEX_STATE_DEAD }
    }

    /// The task's robust list heads, stable while the mutex is held against exit and exec (the
    /// task itself may still register another one).
    pub(crate) fn heads(&self) -> [(UserPtr, crate::robust_list::Abi); 2] {
        self.0.heads()
    }
}

impl Drop for FutexExitGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: locked in `lock`.
        unsafe { bindings::mutex_unlock(&raw mut (*self.0.as_ptr()).futex_exit_mutex) };
    }
}

/// A counted reference on a file (`get_file()`).
pub(crate) struct FileRef(NonNull<bindings::file>);

impl FileRef {
    /// # Safety
    ///
    /// `file` must be valid for the call (e.g. a VMA's file under its `mmap_lock`).
    pub(crate) unsafe fn new(file: *mut bindings::file) -> Option<Self> {
        let file = NonNull::new(file)?;
        // SAFETY: `file` is valid per the safety requirement.
        unsafe { bindings::get_file(file.as_ptr()) };
        Some(Self(file))
    }

    /// The file's page cache, the identity of its shared mappings.
    pub(crate) fn mapping(&self) -> *mut bindings::address_space {
        // SAFETY: the file is valid while referenced; `f_mapping` is set at open.
        unsafe { (*self.0.as_ptr()).f_mapping }
    }
}

impl Drop for FileRef {
    fn drop(&mut self) {
        // SAFETY: taken in `new`.
        unsafe { bindings::fput(self.0.as_ptr()) };
    }
}

/// Calls `f` for every VMA on `mapping`'s `i_mmap` tree that maps a page in
/// `[first_pgoff, last_pgoff]`, with `i_mmap_rwsem` held for reading.
///
/// Context: process context, may sleep. `f` runs under `i_mmap_rwsem`: it must not take an
/// `mmap_lock` or allocate with reclaim.
pub(crate) fn for_each_mapping_vma(
    mapping: *mut bindings::address_space,
    first_pgoff: usize,
    last_pgoff: usize,
    mut f: impl FnMut(&VmaInfo) -> Result,
) -> Result {
    // SAFETY: the caller holds a reference on a file of `mapping`, which keeps it alive.
    unsafe { bindings::i_mmap_lock_read(mapping) };
    // SAFETY: `i_mmap_rwsem` is held, so the tree and its VMAs are stable.
    let mut vma = unsafe {
        bindings::vma_interval_tree_iter_first(
            &raw mut (*mapping).i_mmap,
            first_pgoff as _,
            last_pgoff as _,
        )
    };
    let mut ret = Ok(());
    while !vma.is_null() {
        // SAFETY: `vma` is on the tree, which is stable under `i_mmap_rwsem`.
        ret = f(&unsafe { VmaInfo::read(vma) });
        if ret.is_err() {
            break;
        }
        // SAFETY: as above.
        vma = unsafe {
            bindings::vma_interval_tree_iter_next(vma, first_pgoff as _, last_pgoff as _)
        };
    }
    // SAFETY: locked above.
    unsafe { bindings::i_mmap_unlock_read(mapping) };
    ret
}

/// Calls `f` for every thread of every process, under `rcu_read_lock()`.
///
/// Context: any; `f` runs in an RCU read-side critical section and must not sleep.
pub(crate) fn for_each_thread(mut f: impl FnMut(RawTask) -> Result) -> Result {
    let init = &raw mut bindings::init_task;
    // SAFETY: no preconditions; unlocked below on every path.
    unsafe { bindings::rcu_read_lock() };
    let mut ret = Ok(());
    let mut p = init;
    'processes: loop {
        // SAFETY: the task list is stable under RCU; `p` is a thread group leader on it.
        p = unsafe { bindings::next_task(p) };
        if p == init {
            break;
        }
        let mut t = p;
        loop {
            ret = f(t);
            if ret.is_err() {
                break 'processes;
            }
            // SAFETY: `t` is a thread of `p`, under RCU.
            t = unsafe { bindings::next_thread(t) };
            if t == p {
                break;
            }
        }
    }
    // SAFETY: locked above.
    unsafe { bindings::rcu_read_unlock() };
    ret
}

/// Reads `flags` and `mm` of a task found by [`for_each_thread`] (racy snapshots: compare only).
///
/// # Safety
///
/// `task` must be valid (under RCU).
pub(crate) unsafe fn task_flags_mm(task: RawTask) -> (u32, *mut bindings::mm_struct) {
    // SAFETY: valid per the safety requirement; volatile reads of fields others may write.
    unsafe {
        (
            ptr::read_volatile(&raw const (*task).flags),
            ptr::read_volatile(&raw const (*task).mm),
        )
    }
}

/// The robust list heads of `task` (native, and compat where configured), as registered: a racy
/// snapshot, since only the task itself changes them, at `set_robust_list()`, exit or exec.
///
/// # Safety
///
/// `task` must be valid for the call.
pub(crate) unsafe fn task_heads(task: RawTask) -> [(UserPtr, crate::robust_list::Abi); 2] {
    // SAFETY: `task` is valid per the safety requirement; a racy read returns a head that was
    // registered at some point.
    let native = unsafe { ptr::read_volatile(&raw const (*task).robust_list) } as UserPtr;
    #[cfg(CONFIG_COMPAT)]
    // SAFETY: as above.
    let compat = unsafe { ptr::read_volatile(&raw const (*task).compat_robust_list) } as UserPtr;
    #[cfg(not(CONFIG_COMPAT))]
    let compat = 0;
    [
        (native, crate::robust_list::Abi::Native),
        (compat, crate::robust_list::Abi::Compat),
    ]
}

/// Atomically replaces the `size`-byte (4 or 8) naturally aligned word at `addr` in `mm` with 0
/// if it holds `old`. Returns whether it did.
///
/// The page is pinned with `get_user_pages_remote(FOLL_WRITE)` (which breaks copy-on-write for
/// `mm`, as a write by its owner would) and written through a kernel mapping.
///
/// Context: process context, may sleep; takes `mm`'s `mmap_lock` for reading.
pub(crate) fn compare_and_clear_remote(
    mm: &MmGet,
    addr: usize,
    old: u64,
    size: usize,
) -> Result<bool> {
    if addr % size != 0 {
        return Err(EINVAL);
    }
    let page_size = 1usize << bindings::PAGE_SHIFT;
    let mut page: *mut bindings::page = ptr::null_mut();
    // SAFETY: `mm` is a live address space (we hold `mmget`) until the guard is dropped.
    let locked = unsafe { MmapReadGuard::lock(mm.as_ptr()) };
    // SAFETY: `mmap_lock` is held as `locked == NULL` requires; `page` receives one page.
    let n = unsafe {
        bindings::get_user_pages_remote(
            locked.mm(),
            (addr & !(page_size - 1)) as _,
            1,
            bindings::FOLL_WRITE,
            &mut page,
            ptr::null_mut(),
        )
    };
    drop(locked);
    if n != 1 {
        return Err(EFAULT);
    }
    // SAFETY: `page` is pinned; the mapping is released below, in the same context.
    let base = unsafe { bindings::kmap_local_page(page) };
    // SAFETY: `addr` is `size`-aligned, so the word lies within this page; the kernel mapping
    // is valid until `kunmap_local()`. User space may access the word concurrently, with
    // atomic instructions on the same memory: these atomics are what make the clear safe.
    let cleared = unsafe {
        let p = base.cast::<u8>().add(addr & (page_size - 1));
        if size == 8 {
            AtomicU64::from_ptr(p.cast())
                .compare_exchange(old, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        } else {
            AtomicU32::from_ptr(p.cast())
                .compare_exchange(old as u32, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        }
    };
    // SAFETY: mapped above.
    unsafe { bindings::kunmap_local(base) };
    if cleared {
        // SAFETY: `page` is pinned.
        unsafe { bindings::set_page_dirty_lock(page) };
    }
    // SAFETY: pinned by `get_user_pages_remote()`.
    unsafe { bindings::put_page(page) };
    Ok(cleared)
}

/// Reads `buf.len()` bytes at `addr` of `task`'s memory (`access_process_vm()`).
///
/// Context: process context, may sleep; takes the task's `alloc_lock` and `mmap_lock`.
///
/// # Safety
///
/// `task` must be valid for the call.
pub(crate) unsafe fn access_process_vm(task: RawTask, addr: usize, buf: &mut [u8]) -> Result {
    // SAFETY: `task` is valid per the safety requirement; `buf` is valid for its length.
    let n = unsafe {
        bindings::access_process_vm(task, addr as _, buf.as_mut_ptr().cast(), buf.len() as _, 0)
    };
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(EFAULT)
    }
}

/// The current task's mm (NULL for a kernel thread): alive, and unchanged, while it runs.
pub(crate) fn current_mm() -> *mut bindings::mm_struct {
    // SAFETY: the current task is valid; only the task itself changes its `mm`.
    unsafe { (*bindings::get_current()).mm }
}

/// Whether the current task is the only user of its mm: `mm_users` is 1. Every other task
/// using the mm (thread, `CLONE_VM` sibling, `vfork()` child) holds a reference on it, and none
/// can be created while the current task runs this check, so the answer cannot become wrong
/// during a system call; a transient user (`/proc`, ptrace) only makes it false.
pub(crate) fn current_mm_single_user() -> bool {
    let mm = current_mm();
    // SAFETY: `mm` is the live current mm; `mm_users` is an atomic counter.
    !mm.is_null()
        && unsafe { ptr::read_volatile(&raw const (*mm).__bindgen_anon_1.mm_users.counter) } == 1
}

/// The current task.
pub(crate) fn current() -> RawTask {
    // SAFETY: no preconditions; the current task is valid while it runs.
    unsafe { bindings::get_current() }
}

/// Waits until every RCU read-side critical section that started before the call has ended
/// (`synchronize_rcu()`); this also orders every write made before those sections ended before
/// whatever the caller does next.
///
/// Context: process context, may sleep.
pub(crate) fn synchronize_rcu() {
    // SAFETY: no preconditions beyond the documented context.
    unsafe { bindings::synchronize_rcu() };
}
