// SPDX-License-Identifier: GPL-2.0

//! The tasks that have a robust list registered, by mm.
//!
//! `cleanup_robust_list(2)` has to look at every task that may hold a `list_op_pending` pointing
//! into the caller's range: the tasks whose mm maps that memory. A task without a robust list
//! head has no pending operation, so it is enough to know, for each mm, the tasks using it that
//! registered a head (native or compat). Finding them by walking every thread of the system made
//! the call cost O(threads on the machine); this index makes it O(tasks that share the mm).
//!
//! The index is kept up to date by:
//!
//! - `set_robust_list(2)`, native and compat, through the `robust_list_set` operation: a task is
//!   indexed under its mm while it has a head, and removed once it has none;
//! - the exit walk, at exit and at exec (under the task's `futex_exit_mutex`, before its mm goes
//!   away or is replaced): the task is removed;
//! - [`populate`], once the operations are registered, for the tasks that registered a head before
//!   the module was loaded.
//!
//! A task's mm only changes at exec, after its exit walk removed it, so an entry is always filed
//! under the mm the task uses. Tasks created after a `cleanup_robust_list()` call collected its
//! candidates are not seen by that call, and need not be: a new task starts without a robust
//! list, so any pending operation it has was started after the call, not before the destroy it
//! protects.
//!
//! Entries hold a reference on their task, so that an entry left behind (the exit of a task
//! walked by the built-in walker while this module is being unloaded) never dangles; every entry
//! is dropped with the index. If an entry cannot be allocated, the index is marked incomplete and
//! `cleanup_robust_list()` falls back to walking every thread: slower, never wrong.
//!
//! Lock order: a task's `futex_exit_mutex`, then the index's mutex, then an `mmap_lock`. The
//! exit walk and [`populate`] take the index's mutex under a `futex_exit_mutex`;
//! `cleanup_robust_list()` reads candidates' heads under it (a `get_user()` may fault, and
//! `access_process_vm()` takes the target's `mmap_lock`), and takes a `futex_exit_mutex` only
//! after releasing it. Context of every function here: process context, may sleep.

use crate::sys::{self, FutexExitGuard, RawTask, TaskRef};
use core::{
    pin::Pin,
    ptr,
    sync::atomic::{AtomicPtr, AtomicU64, Ordering},
};
use kernel::{alloc::flags::GFP_ATOMIC, bindings, new_mutex, prelude::*, sync::Mutex};

/// Tasks currently indexed (shown in debugfs).
pub(crate) static INDEXED: AtomicU64 = AtomicU64::new(0);
/// 1 once an entry could not be allocated: calls fall back to walking every thread (debugfs).
pub(crate) static INCOMPLETE: AtomicU64 = AtomicU64::new(0);

const BUCKETS: usize = 64;

/// The tasks filed under one mm.
struct MmTasks {
    /// The key, an `mm_struct` pointer: compared, never dereferenced.
    mm: usize,
    tasks: KVec<TaskRef>,
}

/// Tasks with a robust list, grouped by mm, the groups hashed by mm into buckets: a lookup
/// costs one comparison per mm that shares its bucket, whatever the number of tasks of those
/// other mms.
pub(crate) struct TaskIndex {
    buckets: [KVec<MmTasks>; BUCKETS],
    len: usize,
    incomplete: bool,
}

/// Removes element `i` of `v` and moves the last element into its place (order does not
/// matter here).
fn swap_remove<T>(v: &mut KVec<T>, i: usize) -> T {
    let last = v.len() - 1;
    v.as_mut_slice().swap(i, last);
    // SAFETY: `last < v.len()`. The element is moved out once, and the length shrunk before
    // anything else can look at the vector, so it is neither dropped twice nor seen again.
    unsafe {
        let e = ptr::read(v.as_ptr().add(last));
        v.set_len(last);
        e
    }
}

fn bucket(mm: usize) -> usize {
    // `mm_struct`s are slab objects about 1 KiB apart: fold the bits above that, then
    // Fibonacci hashing.
    ((mm >> 10) ^ (mm >> 20)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> (usize::BITS - BUCKETS.trailing_zeros())
}

impl TaskIndex {
    pub(crate) const fn new() -> Self {
        TaskIndex {
            buckets: [const { KVec::new() }; BUCKETS],
            len: 0,
            incomplete: false,
        }
    }

    fn group(&self, mm: usize) -> Option<&MmTasks> {
        self.buckets[bucket(mm)].iter().find(|g| g.mm == mm)
    }

    /// Files `task` under `mm`, unless it is already; marks the index incomplete if there is no
    /// memory for the entry.
    ///
    /// # Safety
    ///
    /// `task` must be valid for the call.
    pub(crate) unsafe fn insert(&mut self, mm: usize, task: RawTask) {
        let b = &mut self.buckets[bucket(mm)];
        let g = match b.iter().position(|g| g.mm == mm) {
            Some(g) => g,
            None => {
                let group = MmTasks {
                    mm,
                    tasks: KVec::new(),
                };
                if b.push(group, GFP_KERNEL).is_err() {
                    self.incomplete = true;
                    return;
                }
                b.len() - 1
            }
        };
        let tasks = &mut b.as_mut_slice()[g].tasks;
        if tasks.iter().any(|t| t.as_ptr() == task) {
            return;
        }
        // SAFETY: `task` is valid per the safety requirement.
        let Some(task) = (unsafe { TaskRef::new(task) }) else {
            return;
        };
        if tasks.push(task, GFP_KERNEL).is_ok() {
            self.len += 1;
        } else {
            self.incomplete = true;
        }
    }

    /// Removes `task` from under `mm`; returns whether it was there.
    pub(crate) fn remove(&mut self, mm: usize, task: RawTask) -> bool {
        let b = &mut self.buckets[bucket(mm)];
        let Some(g) = b.iter().position(|g| g.mm == mm) else {
            return false;
        };
        let tasks = &mut b.as_mut_slice()[g].tasks;
        let Some(i) = tasks.iter().position(|t| t.as_ptr() == task) else {
            return false;
        };
        drop(swap_remove(tasks, i));
        if tasks.is_empty() {
            drop(swap_remove(b, g));
        }
        self.len -= 1;
        true
    }

    /// Calls `f` for every task filed under `mm`, stopping at its first error. Returns `false`
    /// if the index is incomplete: then some tasks of `mm` may be missing.
    ///
    /// Each task is valid during its call (the index holds a reference on it).
    pub(crate) fn for_each(&self, mm: usize, mut f: impl FnMut(RawTask) -> Result) -> Result<bool> {
        if let Some(g) = self.group(mm) {
            for t in g.tasks.iter() {
                f(t.as_ptr())?;
            }
        }
        Ok(!self.incomplete)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The module's index, reachable from the operations the futex core calls.
static INDEX: AtomicPtr<Mutex<TaskIndex>> = AtomicPtr::new(ptr::null_mut());

/// Owns the module's index; installs it on creation, removes it on drop.
///
/// It must be created before the operations that use it are registered, and dropped after they
/// are unregistered: every call through [`with`] then finds it alive.
pub(crate) struct IndexRegistration {
    /// Owned here, used through `INDEX`.
    _index: Pin<KBox<Mutex<TaskIndex>>>,
}

impl IndexRegistration {
    pub(crate) fn new() -> Result<Self> {
        let index = KBox::pin_init(
            new_mutex!(TaskIndex::new(), "robust_futex_index"),
            GFP_KERNEL,
        )?;
        let p: *const Mutex<TaskIndex> = &*index;
        INDEX.store(p.cast_mut(), Ordering::Release);
        Ok(Self { _index: index })
    }
}

impl Drop for IndexRegistration {
    fn drop(&mut self) {
        INDEX.store(ptr::null_mut(), Ordering::Release);
        INDEXED.store(0, Ordering::Relaxed);
        INCOMPLETE.store(0, Ordering::Relaxed);
    }
}

/// Runs `f` on the locked index; `None` if the module has none (being loaded or unloaded).
pub(crate) fn with<R>(f: impl FnOnce(&mut TaskIndex) -> R) -> Option<R> {
    let p = INDEX.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: the index is installed before the operations are registered and removed after they
    // are unregistered (`IndexRegistration`); callers run in those operations, or in the module's
    // init, so it is alive.
    let index = unsafe { &*p };
    let mut guard = index.lock();
    let r = f(&mut guard);
    INDEXED.store(guard.len as u64, Ordering::Relaxed);
    INCOMPLETE.store(guard.incomplete as u64, Ordering::Relaxed);
    Some(r)
}

/// Files or unfiles `task` according to the heads it has now.
///
/// # Safety
///
/// `task` must be valid, and be the current task or have its `futex_exit_mutex` held by the
/// caller (so that neither its mm nor, at exit or exec, its heads change under us).
unsafe fn update(index: &mut TaskIndex, task: RawTask) {
    // SAFETY: `task` is valid per the safety requirement.
    let (flags, mm) = unsafe { sys::task_flags_mm(task) };
    // SAFETY: as above.
    let registered = unsafe { sys::task_heads(task) }
        .iter()
        .any(|&(addr, _)| addr != 0);
    if registered && !mm.is_null() && flags & bindings::PF_KTHREAD == 0 {
        // SAFETY: `task` is valid.
        unsafe { index.insert(mm as usize, task) };
    } else {
        index.remove(mm as usize, task);
    }
}

/// `futex_robust_ops::robust_list_set`: `task` (current) just set a robust list head.
///
/// # Safety
///
/// Called by the futex core from `set_robust_list(2)`, in process context, with `task == current`.
pub(crate) unsafe extern "C" fn robust_list_set(task: RawTask) {
    // SAFETY: `task` is current.
    with(|index| unsafe { update(index, task) });
}

/// Removes `task`, whose robust lists its exit (or exec) walk has just handled.
///
/// Context: the exit walk, `task == current` with its `futex_exit_mutex` held.
pub(crate) fn forget(task: RawTask) {
    // SAFETY: `task` is current, whose `mm` is stable.
    let (_, mm) = unsafe { sys::task_flags_mm(task) };
    with(|index| index.remove(mm as usize, task));
}

/// Files every task that registered a robust list before the module was loaded.
///
/// Call it after the operations are registered. The grace period first makes every
/// `set_robust_list()` that did not see the operations visible here; every later one reaches
/// [`robust_list_set`]. Each task is looked at under its `futex_exit_mutex` and the index lock,
/// so neither a concurrent `set_robust_list()` nor an exit can leave a stale entry behind.
///
/// Context: process context, may sleep.
pub(crate) fn populate() -> Result {
    sys::synchronize_rcu();
    let mut count = 0usize;
    sys::for_each_thread(|_| {
        count += 1;
        Ok(())
    })?;
    let mut tasks = KVec::with_capacity(count + 64, GFP_KERNEL)?;
    let filled = sys::for_each_thread(|t| {
        // SAFETY: `t` is valid under RCU, held by `for_each_thread`.
        let (flags, mm) = unsafe { sys::task_flags_mm(t) };
        if flags & bindings::PF_KTHREAD != 0 || mm.is_null() {
            return Ok(());
        }
        // SAFETY: `t` is valid under RCU.
        if let Some(task) = unsafe { TaskRef::new(t) } {
            // Within the capacity reserved above, unless tasks were created meanwhile.
            tasks.push(task, GFP_ATOMIC)?;
        }
        Ok(())
    });
    if filled.is_err() {
        with(|index| index.incomplete = true);
    }
    for task in tasks.iter() {
        let guard = FutexExitGuard::lock(task);
        if !guard.exited() {
            // SAFETY: the task is referenced and its `futex_exit_mutex` held.
            with(|index| unsafe { update(index, task.as_ptr()) });
        }
    }
    Ok(())
}
