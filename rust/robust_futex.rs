// SPDX-License-Identifier: GPL-2.0

//! Robust futex list walkers and `cleanup_robust_list(2)`, as a loadable module.
//!
//! The patched kernel lets one module replace the exit-time robust list walk
//! (see `include/linux/futex_robust.h`). This module provides:
//!
//! - [`walker`]: the exit-time walk of the native and the 32-bit compat robust list, with the
//!   semantics of `exit_robust_list()`, `compat_exit_robust_list()` and
//!   `handle_futex_death()` of the kernel it is built for;
//! - [`cleanup`]: the `cleanup_robust_list(2)` system call;
//! - [`index`]: the tasks with a robust list, by mm, where that call finds its candidates;
//! - [`robust_list`]: the one parser of the user-space robust list ABI that the walk and the
//!   cleanup system call use;
//! - [`futex`]: the futex core's interfaces for walkers, and the futex fields of a task;
//! - [`remote`]: access to another task's memory (reading a head, clearing a slot);
//! - [`unmap`]: robust futexes in shared memory their holder unmapped, reached through its file;
//! - KUnit suites (`robust_futex_*`), run when the module is loaded.
//!
//! Statistics are exposed in debugfs under `robust_futex/`, so that tests can tell that the walks
//! of this module, not the built-in ones, ran.
//!
//! Unloading the module is safe at any time: it waits for the calls under way (the futex core
//! runs every call in an SRCU read-side section that unregistering waits for), and later exits
//! fall back to the built-in walker. So does a load that fails after registering.

use kernel::{
    debugfs,
    prelude::*,
    sync::atomic::Atomic,
    time::{delay::fsleep, Delta},
};

mod cleanup;
mod futex;
mod index;
mod remote;
mod robust_list;
mod unmap;
mod walker;

#[cfg(CONFIG_KUNIT)]
mod tests;

module! {
    type: RobustFutex,
    name: "robust_futex",
    authors: ["robust-futex prototype"],
    description: "Rust robust futex list walkers and cleanup_robust_list()",
    license: "GPL",
    params: {
        inject_load_failure: u32 {
            default: 0,
            description: "Testing only: if not 0, fail the load with ENOMEM this many \
                milliseconds after registering the operations, as a failed index scan would",
        },
        inject_index_lost: u32 {
            default: 0,
            description: "Testing only: if not 0, the index is taken as incomplete from the \
                load on, as after an entry that could not be allocated: every \
                cleanup_robust_list() call walks every thread",
        },
        bench_unmap_floor: u32 {
            default: 0,
            description: "Benchmarking only: if not 0, the unmap operations do nothing but \
                ask for the task work, so that make bench measures the floor of the mechanism",
        },
    },
}

/// `futex_robust_ops::unmap` and `unmap_done`.
type UnmapOp = unsafe extern "C" fn(*mut kernel::bindings::vm_area_struct) -> bool;
type UnmapDoneOp = unsafe extern "C" fn();

/// A counter shown in debugfs.
type Counter = Atomic<u64>;

/// The module's statistics in debugfs, so that tests can tell that the walks of this module,
/// not the built-in ones, ran. Debugfs failures are not errors (the kernel convention): the
/// files may be missing, and the rest of the module works all the same.
static COUNTERS: [(&CStr, &Counter); 17] = [
    (c"exit_walks", &walker::EXIT_WALKS),
    (c"compat_exit_walks", &walker::COMPAT_EXIT_WALKS),
    (c"cleanup_calls", &cleanup::CLEANUP_CALLS),
    (c"cleanup_cleared", &cleanup::CLEANUP_CLEARED),
    (c"cleanup_scans", &cleanup::CLEANUP_SCANS),
    (c"cleanup_unaligned", &cleanup::CLEANUP_UNALIGNED),
    (c"cleanup_missed", &cleanup::CLEANUP_MISSED),
    (c"cleanup_lock_gave_up", &remote::LOCK_GAVE_UP),
    (c"cleanup_lock_waits", &remote::LOCK_WAITS),
    (c"index_tasks", &index::INDEXED),
    (c"index_incomplete", &index::INCOMPLETE),
    (c"unmap_records", &unmap::RECORDS),
    (c"unmap_recorded", &unmap::RECORDED),
    (c"unmap_dropped", &unmap::DROPPED),
    (c"unmap_words", &unmap::WORDS),
    (c"unmap_not_covered", &unmap::NOT_COVERED),
    (c"unmap_lost", &unmap::LOST),
];

struct RobustFutex {
    // Field order is drop order: unregister before the index and the statistics go away.
    _ops: futex::Registration,
    _index: index::IndexRegistration,
    _stats: KVec<Pin<KBox<debugfs::File<&'static Counter>>>>,
    _dir: debugfs::Dir,
}

impl kernel::Module for RobustFutex {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let dir = debugfs::Dir::new(c"robust_futex");
        let mut stats = KVec::with_capacity(COUNTERS.len(), GFP_KERNEL)?;
        for &(name, counter) in COUNTERS.iter() {
            stats.push(
                KBox::pin_init(dir.read_only_file(name, counter), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }

        let index = index::IndexRegistration::new()?;

        let (unmap, unmap_done): (UnmapOp, UnmapDoneOp) =
            if module_parameters::bench_unmap_floor.value() != 0 {
                pr_warn!(
                    "bench_unmap_floor: unmapped robust mutexes are not recorded (benchmarking)\n"
                );
                (unmap::floor_unmap, unmap::floor_unmap_done)
            } else {
                (unmap::unmap, unmap::unmap_done)
            };

        let ops = futex::Registration::new(futex::RobustOps {
            exit_robust_list: Some(walker::exit_robust_list),
            compat_exit_robust_list: walker::COMPAT_EXIT_ROBUST_LIST,
            cleanup_robust_list: Some(cleanup::cleanup_robust_list),
            robust_list_set: Some(index::robust_list_set),
            unmap: Some(unmap),
            unmap_done: Some(unmap_done),
        })?;
        // The tasks that registered a robust list before the module was loaded; until they are
        // filed, calls walk every thread. If this fails, dropping `ops` waits for every call.
        let inject = module_parameters::inject_load_failure.value();
        if inject != 0 {
            // Exits and calls run in the module meanwhile; the test checks that none of them
            // runs in it once the failed load has freed it.
            fsleep(Delta::from_millis(i64::from(inject)));
            return Err(ENOMEM);
        }
        if module_parameters::inject_index_lost.value() != 0 {
            pr_warn!("inject_index_lost: every call walks every thread (testing)\n");
            index.lose();
        }
        index::populate()?;
        pr_info!("robust list walkers registered\n");

        Ok(RobustFutex {
            _ops: ops,
            _index: index,
            _stats: stats,
            _dir: dir,
        })
    }
}

impl Drop for RobustFutex {
    fn drop(&mut self) {
        pr_info!("robust list walkers unregistered\n");
    }
}
