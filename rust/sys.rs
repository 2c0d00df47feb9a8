// SPDX-License-Identifier: GPL-2.0

//! Thin wrappers around the C interfaces this module uses.
//!
//! 6.12's `kernel` crate has no abstractions for futexes, page-fault control, `mmap_lock` or
//! debugfs. Every raw FFI call of the module lives here, each behind a small safe function whose
//! documentation states its calling context.

use core::{mem::size_of, ptr, sync::atomic::AtomicU64};
use kernel::{
    bindings,
    error::{code::EFAULT, to_result},
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

/// Atomically replaces the `u32` at `uaddr` in the current task's memory with `new` if it equals
/// `old`, and returns the value found there (`old` on success).
///
/// Page faults are disabled around the access, as in `futex_cmpxchg_value_locked()`: a word that
/// is not present or not writable fails with `EFAULT` instead of faulting it in; use
/// [`fault_in_user_writeable`] and retry. Architectures may also return `EAGAIN`.
///
/// Context: any context with a user `mm`; does not sleep.
pub(crate) fn cmpxchg_user_u32(uaddr: UserPtr, old: u32, new: u32) -> Result<u32> {
    let mut found = 0u32;
    // SAFETY: No preconditions; re-enabled below on every path.
    unsafe { bindings::pagefault_disable() };
    // SAFETY: `found` is a valid, writable `u32`. The user address is checked by the arch code
    // (`user_access_begin()`), and with page faults disabled a bad address fails with `-EFAULT`.
    let ret =
        unsafe { bindings::futex_atomic_cmpxchg_inatomic(&mut found, uaddr as *mut u32, old, new) };
    // SAFETY: Pairs with the `pagefault_disable()` above.
    unsafe { bindings::pagefault_enable() };
    to_result(ret).map(|()| found)
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
    unsafe { bindings::mmap_read_lock(mm) };
    // SAFETY: `mm` is valid and its `mmap_lock` is held for reading, as required.
    let ret = unsafe {
        bindings::fixup_user_fault(
            mm,
            uaddr as _,
            bindings::fault_flag_FAULT_FLAG_WRITE,
            ptr::null_mut(),
        )
    };
    // SAFETY: Pairs with the `mmap_read_lock()` above.
    unsafe { bindings::mmap_read_unlock(mm) };
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
pub(crate) fn cond_resched() {
    // SAFETY: No preconditions beyond the documented context.
    unsafe { bindings::cond_resched() };
}

/// The operations this module registers; see `struct futex_robust_ops`.
pub(crate) struct RobustOps {
    pub(crate) exit_robust_list: Option<unsafe extern "C" fn(RawTask)>,
    pub(crate) compat_exit_robust_list: Option<unsafe extern "C" fn(RawTask)>,
    pub(crate) cleanup_robust_list: Option<unsafe extern "C" fn(usize, usize, u32) -> isize>,
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
