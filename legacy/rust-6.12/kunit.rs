// SPDX-License-Identifier: GPL-2.0

//! Hand-written KUnit glue.
//!
//! 6.12's `kernel::kunit` only has the hidden assertion macros of the doctests, which abort the
//! test thread. This module declares cases and suites as C expects them (a `kunit_suite` pointer
//! in the `.kunit_test_suites` section of the module, which KUnit runs at load time), and offers
//! non-fatal expectations (`KUNIT_EXPECT_*` semantics), so that a failing case goes on, runs its
//! destructors, and reports every failed check.
#![cfg_attr(not(CONFIG_KUNIT), allow(dead_code, unused_macros, unused_imports))]

use core::{ffi::c_void, fmt};
use kernel::{bindings, str::CStr, uaccess::UserPtr};

/// The running KUnit test a case was started with.
pub(crate) struct Test(*mut bindings::kunit);

impl Test {
    /// Wraps the `struct kunit` KUnit passed to a case.
    ///
    /// # Safety
    ///
    /// `raw` must be the `struct kunit` of the case that is running on this thread.
    pub(crate) unsafe fn from_raw(raw: *mut bindings::kunit) -> Self {
        Self(raw)
    }

    /// Records a failed expectation with a formatted message; the case goes on.
    pub(crate) fn fail(&self, file: &'static CStr, line: u32, msg: fmt::Arguments<'_>) {
        let loc = bindings::kunit_loc {
            line: line as i32,
            file: file.as_char_ptr(),
        };
        let assert = bindings::kunit_fail_assert {
            assert: bindings::kunit_assert {},
        };
        // SAFETY: `self.0` is the running test. `loc` and `assert` outlive the call, which
        // formats the message at once. The format is `%pA` with a `fmt::Arguments` argument,
        // which the kernel's `vsprintf()` hands back to Rust.
        unsafe {
            bindings::__kunit_do_failed_assertion(
                self.0,
                &loc,
                bindings::kunit_assert_type_KUNIT_EXPECTATION,
                &assert.assert,
                Some(bindings::kunit_fail_assert_format),
                c"%pA".as_ptr().cast(),
                &msg as *const fmt::Arguments<'_> as *const c_void,
            )
        };
    }

    /// Maps `len` bytes of anonymous memory in the test's own user address space (created on
    /// first use), at `addr` if `flags` has `MAP_FIXED`. The mapping lives until the test ends.
    ///
    /// Context: the test's thread, may sleep.
    pub(crate) fn vm_mmap(
        &self,
        addr: usize,
        len: usize,
        prot: u32,
        flags: u32,
    ) -> Option<UserPtr> {
        // SAFETY: `self.0` is the running test; a NULL file makes an anonymous mapping.
        let mapped = unsafe {
            bindings::kunit_vm_mmap(
                self.0,
                core::ptr::null_mut(),
                addr as _,
                len as _,
                prot as _,
                flags as _,
                0,
            )
        } as usize;
        // `vm_mmap()` errors come back as `-errno` values.
        (mapped != 0 && mapped < (-(bindings::MAX_ERRNO as isize)) as usize).then_some(mapped)
    }
}

/// Builds a `kunit_case` that runs `run`.
pub(crate) const fn case(
    name: &'static CStr,
    run: unsafe extern "C" fn(*mut bindings::kunit),
) -> bindings::kunit_case {
    // SAFETY: All-zero is a valid `kunit_case`: NULL pointers, no attributes, not run yet.
    let mut c: bindings::kunit_case = unsafe { core::mem::zeroed() };
    c.run_case = Some(run);
    c.name = name.as_char_ptr();
    c
}

/// The all-zero `kunit_case` that ends a case array.
// SAFETY: All-zero is a valid `kunit_case`.
pub(crate) const END: bindings::kunit_case = unsafe { core::mem::zeroed() };

/// Builds a `kunit_suite` named `name` (at most 255 bytes) running the zero-terminated `cases`.
pub(crate) const fn suite(name: &[u8], cases: *mut bindings::kunit_case) -> bindings::kunit_suite {
    // SAFETY: All-zero is a valid `kunit_suite`: no hooks, no attributes, not initialised.
    let mut s: bindings::kunit_suite = unsafe { core::mem::zeroed() };
    let mut i = 0;
    while i < name.len() && i < s.name.len() - 1 {
        s.name[i] = name[i] as _;
        i += 1;
    }
    s.test_cases = cases;
    s
}

/// A suite pointer for the `.kunit_test_suites` section.
#[repr(transparent)]
pub(crate) struct SuiteEntry(pub(crate) *mut bindings::kunit_suite);

// SAFETY: The pointer is only read by KUnit, which runs the suites one at a time; the module
// itself never touches the suite.
unsafe impl Sync for SuiteEntry {}

/// `kunit_case!(f)`: a case named `f` running `fn f(&Test)`.
macro_rules! kunit_case {
    ($f:ident) => {{
        /// Runs the case for KUnit.
        ///
        /// # Safety
        ///
        /// `test` must be the `struct kunit` of this case, as KUnit passes it.
        unsafe extern "C" fn run(test: *mut kernel::bindings::kunit) {
            // SAFETY: KUnit passes the `struct kunit` of the running case.
            $f(&unsafe { $crate::kunit::Test::from_raw(test) });
        }
        $crate::kunit::case(kernel::c_str!(stringify!($f)), run)
    }};
}
pub(crate) use kunit_case;

/// `check!(test, cond, fmt...)`: records a failure with the message unless `cond` holds.
macro_rules! check {
    ($test:expr, $cond:expr) => {
        $crate::kunit::check!($test, $cond, "{}", stringify!($cond))
    };
    ($test:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $test.fail(kernel::c_str!(file!()), line!(), format_args!($($arg)+));
        }
    };
}
pub(crate) use check;

/// `check_eq!(test, left, right)`: records a failure showing both values unless they are equal.
macro_rules! check_eq {
    ($test:expr, $left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        $crate::kunit::check!(
            $test,
            left == right,
            "{} == {}: {:#x?} != {:#x?}",
            stringify!($left),
            stringify!($right),
            left,
            right
        );
    }};
}
pub(crate) use check_eq;
