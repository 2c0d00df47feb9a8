// SPDX-License-Identifier: GPL-2.0

//! The futex core's interfaces for robust list walkers, and the futex fields of a task.
//!
//! These are specific to robust futexes (`include/linux/futex_robust.h` of the patched kernel,
//! `struct futex_sched_data` of a task), so they live in the module rather than in the `kernel`
//! crate. Every raw call into them is here, each behind a small safe function whose
//! documentation states its calling context.

use crate::robust_list::{Abi, Head};
use core::marker::PhantomData;
use kernel::{
    bindings,
    error::{
        code::{EFAULT, EINTR},
        to_result,
    },
    fs::File,
    prelude::*,
    sync::{
        lock::{mutex::MutexBackend, Guard, Lock},
        MutexGuard,
    },
    task::Task,
};

// bindgen's layout of `struct task_struct` must be C's: reading a field at a wrong offset would
// silently walk the wrong list. Check the fields this module reads, at build time.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<bindings::task_struct>() == bindings::TASK_STRUCT_SIZE);
    assert!(offset_of!(bindings::task_struct, flags) == bindings::TASK_STRUCT_FLAGS);
    assert!(offset_of!(bindings::task_struct, mm) == bindings::TASK_STRUCT_MM);
    assert!(offset_of!(bindings::task_struct, futex) == bindings::TASK_STRUCT_FUTEX);
};

/// The task the futex core passes to the registered operations.
///
/// # Safety
///
/// `tsk` must point to a valid task that stays valid for `'a`.
pub(crate) unsafe fn task<'a>(tsk: *mut bindings::task_struct) -> &'a Task {
    // SAFETY: `Task` is a transparent wrapper around `struct task_struct`; `tsk` is valid for
    // `'a` per the function's safety requirement.
    unsafe { &*tsk.cast::<Task>() }
}

/// Reads the `u32` at `addr` of the current task's user memory with `get_user()`: one access,
/// as the built-in walker makes, where `UserSlice` goes through `copy_from_user()`.
///
/// Context: process context with a user `mm`; may fault the page in and so may sleep.
#[inline(always)]
pub(crate) fn get_user_u32(addr: usize) -> Result<u32> {
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
/// Context: as [`get_user_u32`].
#[inline(always)]
pub(crate) fn get_user_ulong(addr: usize) -> Result<usize> {
    let mut v = 0usize;
    // SAFETY: `v` is a valid `unsigned long`; `get_user()` checks the user address itself.
    match unsafe { bindings::get_user_ulong(&mut v, addr as *const usize) } {
        0 => Ok(v),
        _ => Err(EFAULT), // the only error get_user() returns
    }
}

/// Page faults disabled for the current task (`pagefault_disable()`) until it is dropped
/// (`pagefault_enable()`): a user access that would fault fails instead. Not `Send`: the task
/// that disabled them enables them again.
///
/// Context: the task must not sleep while it lives.
struct PagefaultsDisabled(PhantomData<*mut ()>);

impl PagefaultsDisabled {
    #[inline(always)]
    fn new() -> Self {
        // SAFETY: always allowed; undone by `drop`, on this task (`Self` is not `Send`).
        unsafe { bindings::pagefault_disable() };
        PagefaultsDisabled(PhantomData)
    }
}

impl Drop for PagefaultsDisabled {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: ends the section `new` began on this task.
        unsafe { bindings::pagefault_enable() };
    }
}

/// Atomically replaces the `u32` at `uaddr` in the current task's memory with `new` if it equals
/// `old`, and returns the value found there (`old` on success).
///
/// This is the futex core's `futex_cmpxchg_value_locked()`, the primitive of the built-in
/// walker, from the same inline code (`futex_atomic_cmpxchg_inatomic()` between
/// `pagefault_disable()` and `pagefault_enable()`, whose helpers are inlined here as in C): a
/// word that is not present or not writable fails with `EFAULT` instead of being faulted in; use
/// [`fault_in_user_writeable`] and retry. Architectures may also return `EAGAIN`.
///
/// Context: any context with a user `mm`; does not sleep.
#[inline(always)]
pub(crate) fn cmpxchg_user_u32(uaddr: usize, old: u32, new: u32) -> Result<u32> {
    let mut found = 0u32;
    let no_faults = PagefaultsDisabled::new();
    // SAFETY: `found` is a valid, writable `u32`. The arch code checks (or masks) the user
    // address, and with page faults disabled a bad address fails with `-EFAULT`.
    let ret =
        unsafe { bindings::futex_atomic_cmpxchg_inatomic(&mut found, uaddr as *mut u32, old, new) };
    drop(no_faults);
    match ret {
        0 => Ok(found),
        e => Err(Error::from_errno(e)),
    }
}

/// Faults in the user word at `uaddr` of the current task for writing, as the futex core's
/// `fault_in_user_writeable()` does. Fails with `EFAULT` if it is not mapped writable.
///
/// Context: process context; takes the current `mm`'s `mmap_lock` for reading, may sleep. Must
/// not be called with `mmap_lock` held.
pub(crate) fn fault_in_user_writeable(uaddr: usize) -> Result {
    let task = kernel::current!();
    let mm = task.mm().ok_or(EFAULT)?;
    let _locked = mm.mmap_read_lock();
    // SAFETY: `mm` is the current task's live mm and its `mmap_lock` is held for reading, as
    // `fixup_user_fault()` requires.
    to_result(unsafe {
        bindings::fixup_user_fault(
            mm.as_raw(),
            uaddr,
            bindings::fault_flag_FAULT_FLAG_WRITE,
            core::ptr::null_mut(),
        )
    })
}

/// Wakes one waiter on the futex word at `uaddr` (shared key), the wakeup the robust list walk
/// issues. Failures are ignored, as by the built-in walker.
///
/// Context: process context; may sleep (it may fault in the word to compute the key).
pub(crate) fn wake_robust(uaddr: usize) {
    // SAFETY: `futex_wake_robust()` accepts any user address and validates it itself.
    unsafe { bindings::futex_wake_robust(uaddr as *mut u32) };
}

/// Reads `buf.len()` bytes at `addr` of the current task's user memory without faulting
/// (`copy_from_user_nofault()`): fails with `EFAULT` where a page is not mapped in, whatever
/// would bring it in (swap, a file system, a userfaultfd handler).
///
/// Context: process context with a user `mm`; does not sleep.
pub(crate) fn read_user_nofault(addr: usize, buf: &mut [u8]) -> Result {
    // SAFETY: `buf` is valid for writes of its length; the user address is checked by the
    // function, which fails instead of faulting.
    match unsafe {
        bindings::copy_from_user_nofault(buf.as_mut_ptr().cast(), addr as *const _, buf.len())
    } {
        0 => Ok(()),
        _ => Err(EFAULT),
    }
}

/// Reads `buf.len()` bytes (within one page) at byte `pos` of the shmem file `file`, through
/// its page cache (`futex_robust_file_read()`).
///
/// Context: process context, may sleep (swap-in).
pub(crate) fn file_read(file: &File, pos: i64, buf: &mut [u8]) -> Result {
    // SAFETY: `file` is valid while borrowed; `buf` is valid for writes of its length.
    to_result(unsafe {
        bindings::futex_robust_file_read(file.as_ptr(), pos, buf.as_mut_ptr().cast(), buf.len())
    })
}

/// Replaces the futex word at byte `pos` of the shmem file `file` with `new` if it holds
/// `old`, in its page cache (`futex_robust_file_cmpxchg()`); returns the value found.
///
/// Context: process context, may sleep.
pub(crate) fn file_cmpxchg_u32(file: &File, pos: i64, old: u32, new: u32) -> Result<u32> {
    let mut found = 0u32;
    // SAFETY: `file` is valid while borrowed; `found` is a valid, writable `u32`.
    to_result(unsafe {
        bindings::futex_robust_file_cmpxchg(&mut found, file.as_ptr(), pos, old, new)
    })?;
    Ok(found)
}

/// Wakes one waiter of the futex word at byte `pos` of the shmem file `file`, by the shared key
/// of the word (`futex_wake_robust_file()`). Failures are ignored, as by the built-in walker.
///
/// Context: process context, may sleep.
pub(crate) fn wake_robust_file(file: &File, pos: i64) {
    // SAFETY: `file` is valid while borrowed; the function checks `pos` itself.
    unsafe { bindings::futex_wake_robust_file(file.as_ptr(), pos) };
}

/// The robust list heads of `task` (native, and compat where configured), as registered: a racy
/// snapshot, since only the task itself changes them, at `set_robust_list()`, a robust unlock
/// that cannot clear its `list_op_pending`, exit or exec.
pub(crate) fn heads(task: &Task) -> [Option<Head>; 2] {
    let futex = task_futex(task);
    // SAFETY: `futex` points into the valid task; a racy read returns a head that was registered
    // at some point.
    let native = unsafe { (&raw const (*futex).robust_list).read_volatile() } as usize;
    #[cfg(CONFIG_COMPAT)]
    // SAFETY: as above.
    let compat = unsafe { (&raw const (*futex).compat_robust_list).read_volatile() } as usize;
    #[cfg(not(CONFIG_COMPAT))]
    let compat = 0;
    let head = |addr, abi| (addr != 0).then_some(Head { addr, abi });
    [head(native, Abi::Native), head(compat, Abi::Compat)]
}

/// `task->futex`.
fn task_futex(task: &Task) -> *mut bindings::futex_sched_data {
    // SAFETY: `task` is valid; this only computes a field's address.
    unsafe { &raw mut (*task.as_ptr()).futex }
}

/// Racy snapshots of a task's `flags` and `mm` pointer, to compare with, never to dereference:
/// they change at exec and exit.
pub(crate) fn flags_mm(task: &Task) -> (u32, *mut bindings::mm_struct) {
    let t = task.as_ptr();
    // SAFETY: `task` is valid; volatile reads of fields others may write.
    unsafe {
        (
            (&raw const (*t).flags).read_volatile(),
            (&raw const (*t).mm).read_volatile(),
        )
    }
}

/// Whether `task` is a user task: not a kernel thread, and with an address space.
pub(crate) fn is_user_task(task: &Task) -> bool {
    let (flags, mm) = flags_mm(task);
    flags & bindings::PF_KTHREAD == 0 && !mm.is_null()
}

/// A task's `futex.exit_mutex`, held: the task cannot start or be in the middle of walking its
/// robust lists at exit or exec. Functions that rely on that take an `&ExitGuard` as proof.
///
/// # Invariants
///
/// `_lock` is the guard of `task`'s `futex.exit_mutex`.
pub(crate) struct ExitGuard<'a> {
    task: &'a Task,
    _lock: MutexGuard<'a, ()>,
}

impl<'a> ExitGuard<'a> {
    /// Takes `task`'s `futex.exit_mutex`, unless the current task is killed while it waits:
    /// then fails with `EINTR`. The wait can be long: an exit walk under way holds the mutex,
    /// and it may wait on a fault on the task's memory for as long as its owner wants (a FUSE
    /// file it serves itself).
    ///
    /// Context: process context, may sleep; hold no lock that other tasks need. Lock order:
    /// before the module's index locks and any `mmap_lock`; never two at once.
    pub(crate) fn lock_killable(task: &'a Task) -> Result<Self> {
        // SAFETY: `task` is valid; this only computes a field's address.
        let raw = unsafe { &raw mut (*task_futex(task)).exit_mutex };
        // SAFETY: `exit_mutex` is an initialised `struct mutex` of the valid task, which outlives
        // `'a`, and the kernel only ever uses it as a mutex.
        let mutex = unsafe { Lock::<(), MutexBackend>::from_raw(raw) };
        // SAFETY: as above.
        if unsafe { bindings::mutex_lock_killable(raw) } != 0 {
            return Err(EINTR);
        }
        // SAFETY: we hold the mutex, just taken; the guard releases it.
        let lock = unsafe { Guard::new(mutex, ()) };
        // INVARIANT: the guard of `task`'s `exit_mutex`.
        Ok(Self { task, _lock: lock })
    }

    /// Takes `task`'s `futex.exit_mutex` if it is free: `None` if another task holds it (an
    /// exit walk under way, or a registration, or another call's clear).
    ///
    /// Context: process context; does not sleep. Lock order: as
    /// [`ExitGuard::lock_killable`].
    pub(crate) fn try_lock(task: &'a Task) -> Option<Self> {
        // SAFETY: `task` is valid; this only computes a field's address.
        let raw = unsafe { &raw mut (*task_futex(task)).exit_mutex };
        // SAFETY: `exit_mutex` is an initialised `struct mutex` of the valid task, which outlives
        // `'a`, and the kernel only ever uses it as a mutex.
        let mutex = unsafe { Lock::<(), MutexBackend>::from_raw(raw) };
        // SAFETY: as above.
        if unsafe { bindings::mutex_trylock(raw) } == 0 {
            return None;
        }
        // SAFETY: we hold the mutex, just taken; the guard releases it.
        let lock = unsafe { Guard::new(mutex, ()) };
        // INVARIANT: the guard of `task`'s `exit_mutex`.
        Some(Self { task, _lock: lock })
    }

    /// True once the task's exit (or exec) has walked its robust lists: `futex.state` is
    /// `FUTEX_STATE_DEAD`. An exec sets it back to `FUTEX_STATE_OK` when it is done, under the
    /// task's `pi_lock` only; either way the walk this guard excludes has run.
    pub(crate) fn exited(&self) -> bool {
        // SAFETY: the task is valid. `futex.state` is written under `exit_mutex`, which we hold,
        // but also under `pi_lock` alone (exec done) and without a lock (a recursive fault at
        // exit): a volatile read, as `READ_ONCE()`, returns one of the values it held.
        let state = unsafe { (&raw const (*task_futex(self.task)).state).read_volatile() };
        state == bindings::FUTEX_STATE_DEAD
    }

    /// The task's robust list heads, stable while the mutex is held against exit and exec (the
    /// task itself may still register another one).
    pub(crate) fn heads(&self) -> [Option<Head>; 2] {
        heads(self.task)
    }
}

/// The operations this module registers; see `struct futex_robust_ops`.
pub(crate) struct RobustOps {
    pub(crate) exit_robust_list: Option<unsafe extern "C" fn(*mut bindings::task_struct)>,
    pub(crate) compat_exit_robust_list: Option<unsafe extern "C" fn(*mut bindings::task_struct)>,
    pub(crate) cleanup_robust_list: Option<unsafe extern "C" fn(usize, usize, u32) -> isize>,
    pub(crate) robust_list_set: Option<unsafe extern "C" fn(*mut bindings::task_struct)>,
    pub(crate) unmap: Option<unsafe extern "C" fn(*mut bindings::vm_area_struct) -> bool>,
    pub(crate) unmap_done: Option<unsafe extern "C" fn()>,
}

/// A registration of [`RobustOps`] with the futex core; unregistered on drop.
///
/// The `futex_robust_ops` lives in its own allocation, whose address stays valid for as long as
/// the registration exists, as the futex core requires.
pub(crate) struct Registration {
    ops: KBox<bindings::futex_robust_ops>,
}

// SAFETY: The registration only holds the `futex_robust_ops` it registered, which the futex core
// reads from any thread; dropping it (unregistering) from another thread is allowed.
unsafe impl Send for Registration {}
// SAFETY: `&Registration` gives no access to anything.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers `ops`; they may be called as soon as this returns. Fails with `EBUSY` if
    /// another set is registered.
    ///
    /// Context: process context, may sleep.
    pub(crate) fn new(ops: RobustOps) -> Result<Self> {
        let ops = KBox::new(
            bindings::futex_robust_ops {
                exit_robust_list: ops.exit_robust_list,
                compat_exit_robust_list: ops.compat_exit_robust_list,
                cleanup_robust_list: ops.cleanup_robust_list,
                robust_list_set: ops.robust_list_set,
                unmap: ops.unmap,
                unmap_done: ops.unmap_done,
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `ops` points to an initialised `futex_robust_ops` that stays valid until
        // `futex_robust_ops_unregister()` is called in `drop`.
        to_result(unsafe { bindings::futex_robust_ops_register(&*ops) })?;
        Ok(Self { ops })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `self.ops` was registered in `new`. When this returns, no call into it is under
        // way (the futex core waits for them, SRCU) and none starts, so freeing `ops`, and the
        // module's code and data, is safe.
        unsafe { bindings::futex_robust_ops_unregister(&*self.ops) };
    }
}
