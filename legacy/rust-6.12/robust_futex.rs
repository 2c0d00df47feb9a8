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
//! - [`sys`]: thin, documented wrappers around the C interfaces used;
//! - KUnit suites (`robust_futex_*`), run when the module is loaded.
//!
//! Statistics are exposed in debugfs under `robust_futex/`, so that tests can tell that the walks
//! of this module, not the built-in ones, ran.
//!
//! Unloading the module is safe at any time: exits that started a walk hold a reference on the
//! module, later exits fall back to the built-in walker.

use kernel::{c_str, prelude::*};

mod cleanup;
mod index;
mod kunit;
mod robust_list;
mod sys;
mod walker;

#[cfg(CONFIG_KUNIT)]
mod tests;

module! {
    type: RobustFutex,
    name: "robust_futex",
    author: "robust-futex prototype",
    description: "Rust robust futex list walkers and cleanup_robust_list()",
    license: "GPL",
}

struct RobustFutex {
    // Field order is drop order: unregister before the index and the statistics go away.
    _ops: sys::RobustOpsRegistration,
    _index: index::IndexRegistration,
    _stats: sys::DebugfsDir,
}

impl kernel::Module for RobustFutex {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let stats = sys::DebugfsDir::new(c_str!("robust_futex"));
        stats.add_counter(c_str!("exit_walks"), &walker::EXIT_WALKS);
        stats.add_counter(c_str!("compat_exit_walks"), &walker::COMPAT_EXIT_WALKS);
        stats.add_counter(c_str!("cleanup_calls"), &cleanup::CLEANUP_CALLS);
        stats.add_counter(c_str!("cleanup_cleared"), &cleanup::CLEANUP_CLEARED);
        stats.add_counter(c_str!("cleanup_scans"), &cleanup::CLEANUP_SCANS);
        stats.add_counter(c_str!("index_tasks"), &index::INDEXED);
        stats.add_counter(c_str!("index_incomplete"), &index::INCOMPLETE);

        let index = index::IndexRegistration::new()?;

        let ops = sys::RobustOpsRegistration::new(
            module,
            sys::RobustOps {
                exit_robust_list: Some(walker::exit_robust_list),
                compat_exit_robust_list: walker::COMPAT_EXIT_ROBUST_LIST,
                cleanup_robust_list: Some(cleanup::cleanup_robust_list),
                robust_list_set: Some(index::robust_list_set),
            },
        )?;
        // The tasks that registered a robust list before the module was loaded.
        index::populate()?;
        pr_info!("robust list walkers registered\n");

        Ok(RobustFutex {
            _ops: ops,
            _index: index,
            _stats: stats,
        })
    }
}

impl Drop for RobustFutex {
    fn drop(&mut self) {
        pr_info!("robust list walkers unregistered\n");
    }
}
