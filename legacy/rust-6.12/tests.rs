// SPDX-License-Identifier: GPL-2.0

//! KUnit suites, run in the KUnit thread against memory in a user address space of its own
//! (`kunit_vm_mmap()`):
//!
//! - `robust_futex_walker`: the robust list parser and the exit walk;
//! - `robust_futex_cleanup`: the compare-and-clear primitive of `cleanup_robust_list(2)` and
//!   the index of tasks it finds its candidates in.
//!
//! The thread "dies" by calling the walk on a list it built, with its own TID as the owner.

use crate::index::TaskIndex;
use crate::kunit::{check, check_eq, kunit_case, suite, SuiteEntry, Test, END};
use crate::robust_list::{walk, Abi, CurrentMem, Entry, Flow, Head, Visit, ROBUST_LIST_LIMIT};
use crate::{sys, walker};
use kernel::{bindings, prelude::*, uaccess::UserSlice};

const WAITERS: u32 = bindings::FUTEX_WAITERS;
const DIED: u32 = bindings::FUTEX_OWNER_DIED;
const RW: u32 = bindings::PROT_READ | bindings::PROT_WRITE;
const ANON: u32 = bindings::MAP_PRIVATE | bindings::MAP_ANONYMOUS;

/// The TID the walk compares owners with: the KUnit thread's own.
fn self_tid() -> i32 {
    // SAFETY: `get_current()` returns the valid current task.
    unsafe { sys::task_pid_vnr(bindings::get_current()) }
}

fn put_u32(addr: usize, v: u32) {
    // The mapping was just created by the test: a failure here is a broken test setup and shows
    // up as wrong values in the checks that follow.
    let _ = UserSlice::new(addr, 4).writer().write(&v);
}

fn put_word(abi: Abi, addr: usize, v: usize) {
    match abi {
        Abi::Native => {
            let _ = UserSlice::new(addr, 8).writer().write(&v);
        }
        Abi::Compat => put_u32(addr, v as u32),
    }
}

fn get_u32(addr: usize) -> u32 {
    sys::get_user::<u32>(addr).unwrap_or(0xdead_beef)
}

/// Writes a robust list head at `head` whose entries are `links` (raw pointers, bit 0 = PI) in
/// order, then back to the head, with `futex_offset` and `pending` (raw).
fn build(abi: Abi, head: usize, links: &[usize], futex_offset: isize, pending: usize) {
    let w = match abi {
        Abi::Native => 8,
        Abi::Compat => 4,
    };
    put_word(abi, head, links.first().copied().unwrap_or(head));
    put_word(abi, head + w, futex_offset as usize);
    put_word(abi, head + 2 * w, pending);
    for (i, link) in links.iter().enumerate() {
        let next = links.get(i + 1).copied().unwrap_or(head);
        put_word(abi, link & !1, next);
    }
}

fn map(test: &Test, len: usize) -> Option<usize> {
    let m = test.vm_mmap(0, len, RW, ANON);
    check!(test, m.is_some(), "kunit_vm_mmap() of {} bytes failed", len);
    m
}

fn entry_decoding(test: &Test) {
    check_eq!(
        test,
        Entry::decode(0x1001, Abi::Native),
        Entry {
            addr: 0x1000,
            pi: true
        }
    );
    check_eq!(
        test,
        Entry::decode(0x7fff_0000_1000, Abi::Native).addr,
        0x7fff_0000_1000
    );
    // A compat pointer is a zero-extended u32.
    check_eq!(
        test,
        Entry::decode(0xffff_ff01, Abi::Compat),
        Entry {
            addr: 0xffff_ff00,
            pi: true
        }
    );
    let native = Head {
        addr: 0x10000,
        abi: Abi::Native,
    };
    let compat = Head {
        addr: 0x10000,
        abi: Abi::Compat,
    };
    check_eq!(test, native.pending_slot(), 0x10010);
    check_eq!(test, compat.pending_slot(), 0x10008);
    let e = Entry {
        addr: 0x2000,
        pi: false,
    };
    check_eq!(test, native.futex_word(e, (-8isize) as usize), 0x1ff8);
    check_eq!(test, native.futex_word(e, 0x20), 0x2020);
    // Compat arithmetic wraps in 32 bits, in both directions.
    let high = Entry {
        addr: 0xffff_fff0,
        pi: false,
    };
    check_eq!(test, compat.futex_word(high, 0x20), 0x10);
    let low = Entry {
        addr: 0x10,
        pi: false,
    };
    check_eq!(
        test,
        compat.futex_word(low, (-0x20i32) as u32 as usize),
        0xffff_fff0
    );
}

fn walk_marks_owned_words(test: &Test) {
    let Some(base) = map(test, 4096) else { return };
    let tid = self_tid() as u32;
    // No task has this TID: PID_MAX_LIMIT is far below FUTEX_TID_MASK.
    let other = bindings::FUTEX_TID_MASK - 1;
    // Entries at base + 0x100 * i, futex words 8 bytes after each entry.
    let e = |i: usize| base + 0x100 * i;
    let word = |i: usize| e(i) + 8;
    put_u32(word(1), tid);
    put_u32(word(2), tid | WAITERS);
    put_u32(word(3), other | WAITERS);
    put_u32(word(4), tid); // pending only
    put_u32(word(5), DIED | WAITERS); // already dead, no owner
    build(Abi::Native, base, &[e(1), e(2) | 1, e(3), e(5)], 8, e(4));

    walker::exit_walk(
        Head {
            addr: base,
            abi: Abi::Native,
        },
        tid as i32,
    );

    check_eq!(test, get_u32(word(1)), DIED);
    check_eq!(test, get_u32(word(2)), DIED | WAITERS);
    check_eq!(test, get_u32(word(3)), other | WAITERS);
    check_eq!(test, get_u32(word(4)), DIED);
    check_eq!(test, get_u32(word(5)), DIED | WAITERS);
}

/// The walk visits what `exit_robust_list()` visits, in its order.
fn walk_visits_in_order(test: &Test) {
    let Some(base) = map(test, 4096) else { return };
    let e = |i: usize| base + 0x100 * i;
    // A pending entry that is also on the list is visited once, last.
    build(Abi::Native, base, &[e(1), e(2) | 1, e(3)], -4, e(2) | 1);
    let mut seen = KVec::new();
    walk(
        &CurrentMem,
        &Head {
            addr: base,
            abi: Abi::Native,
        },
        |v: Visit| {
            let _ = seen.push(v, GFP_KERNEL);
            Flow::Continue
        },
    );
    let expected = [
        Visit {
            uaddr: e(1) - 4,
            pi: false,
            pending: false,
        },
        Visit {
            uaddr: e(3) - 4,
            pi: false,
            pending: false,
        },
        Visit {
            uaddr: e(2) - 4,
            pi: true,
            pending: true,
        },
    ];
    check_eq!(test, &seen[..], &expected[..]);

    // A visit that stops the walk also skips the pending entry.
    let mut count = 0;
    walk(
        &CurrentMem,
        &Head {
            addr: base,
            abi: Abi::Native,
        },
        |_| {
            count += 1;
            Flow::Stop
        },
    );
    check_eq!(test, count, 1);

    // An empty list with no pending entry visits nothing.
    build(Abi::Native, base, &[], 0, 0);
    let mut count = 0;
    walk(
        &CurrentMem,
        &Head {
            addr: base,
            abi: Abi::Native,
        },
        |_| {
            count += 1;
            Flow::Continue
        },
    );
    check_eq!(test, count, 0);
}

/// `ROBUST_LIST_LIMIT` entries are handled, one more is not; the pending entry still is.
fn walk_limit(test: &Test) {
    let n = ROBUST_LIST_LIMIT as usize + 1;
    let Some(base) = map(test, 32 + 16 * (n + 1)) else {
        return;
    };
    let tid = self_tid() as u32;
    // The head takes 24 bytes; entries of 16 bytes (next, word) follow from base + 32.
    let e = |i: usize| base + 32 + 16 * i;
    let mut links = KVec::new();
    for i in 0..n {
        put_u32(e(i) + 8, tid);
        if links.push(e(i), GFP_KERNEL).is_err() {
            check!(test, false, "out of memory");
            return;
        }
    }
    let pending = e(n);
    put_u32(pending + 8, tid);
    build(Abi::Native, base, &links, 8, pending);

    walker::exit_walk(
        Head {
            addr: base,
            abi: Abi::Native,
        },
        tid as i32,
    );

    check_eq!(test, get_u32(e(0) + 8), DIED);
    check_eq!(test, get_u32(e(n - 2) + 8), DIED);
    check_eq!(test, get_u32(e(n - 1) + 8), tid);
    check_eq!(test, get_u32(pending + 8), DIED);
}

/// An entry whose `next` cannot be read is handled, then the walk ends without the pending one.
fn walk_stops_on_unreadable_next(test: &Test) {
    let Some(base) = map(test, 4096) else { return };
    let tid = self_tid() as u32;
    let (e1, e2) = (base + 0x100, base + 0x200);
    put_u32(e1 + 8, tid);
    put_u32(e2 + 8, tid);
    build(Abi::Native, base, &[e1], 8, e2);
    put_word(Abi::Native, e1, 0x1000); // unmapped in the test's mm
    walker::exit_walk(
        Head {
            addr: base,
            abi: Abi::Native,
        },
        tid as i32,
    );
    check_eq!(test, get_u32(e1 + 8), DIED);
    check_eq!(test, get_u32(e2 + 8), tid);
}

/// An unaligned futex word is left alone and ends the walk.
fn walk_stops_on_unaligned_word(test: &Test) {
    let Some(base) = map(test, 4096) else { return };
    let tid = self_tid() as u32;
    // e1 is 2-aligned only, so its word (e1 + 8) is not 4-aligned.
    let (e1, e2, e3) = (base + 0x102, base + 0x200, base + 0x300);
    put_u32(e1 + 8, tid);
    put_u32(e2 + 8, tid);
    put_u32(e3 + 8, tid);
    build(Abi::Native, base, &[e1, e2], 8, e3);
    walker::exit_walk(
        Head {
            addr: base,
            abi: Abi::Native,
        },
        tid as i32,
    );
    check_eq!(test, get_u32(e1 + 8), tid);
    check_eq!(test, get_u32(e2 + 8), tid);
    check_eq!(test, get_u32(e3 + 8), tid);
}

/// A compat list: 32-bit pointers and a negative 32-bit `futex_offset`.
fn compat_walk(test: &Test) {
    // Compat pointers are 32 bits: map below 4 GiB.
    let fixed = 0x1000_0000;
    let Some(base) = test.vm_mmap(fixed, 4096, RW, ANON | bindings::MAP_FIXED) else {
        check!(test, false, "kunit_vm_mmap() at {:#x} failed", fixed);
        return;
    };
    let tid = self_tid() as u32;
    let (e1, e2, e3) = (base + 0x100, base + 0x200, base + 0x300);
    // Words 16 bytes before their entries.
    put_u32(e1 - 16, tid | WAITERS);
    put_u32(e2 - 16, tid);
    put_u32(e3 - 16, tid);
    build(Abi::Compat, base, &[e1, e2 | 1], -16, e3);
    walker::exit_walk(
        Head {
            addr: base,
            abi: Abi::Compat,
        },
        tid as i32,
    );
    check_eq!(test, get_u32(e1 - 16), DIED | WAITERS);
    check_eq!(test, get_u32(e2 - 16), DIED);
    check_eq!(test, get_u32(e3 - 16), DIED);
}

/// Only one set of operations can be registered: ours is, so another fails with `EBUSY`.
fn registration_is_exclusive(test: &Test) {
    // SAFETY: All-zero is a valid `futex_robust_ops` (no owner, no operations).
    let other: bindings::futex_robust_ops = unsafe { core::mem::zeroed() };
    // SAFETY: `other` outlives the call; if the registration unexpectedly succeeded, it is
    // undone below before `other` goes away.
    let ret = unsafe { bindings::futex_robust_ops_register(&other) };
    check_eq!(test, ret, -(bindings::EBUSY as i32));
    if ret == 0 {
        // SAFETY: `other` was just registered.
        unsafe { bindings::futex_robust_ops_unregister(&other) };
    }
}

/// `compare_and_clear_remote()` clears a slot only if it still holds the value read: a slot
/// changed in between (here: before the call) is left alone. Both widths; misaligned slots are
/// refused.
fn compare_and_clear_respects_value(test: &Test) {
    let Some(base) = map(test, 4096) else { return };
    let Some(mm) = sys::MmGet::current() else {
        check!(test, false, "no mm");
        return;
    };
    let slot = base + 0x10;
    put_word(Abi::Native, slot, 0x1234_5678_9abc_def0);
    let r = sys::compare_and_clear_remote(&mm, slot, 0x1111, 8);
    check!(test, matches!(r, Ok(false)), "stale value: {:?}", r);
    check_eq!(
        test,
        sys::get_user::<u64>(slot).unwrap_or(0),
        0x1234_5678_9abc_def0
    );
    let r = sys::compare_and_clear_remote(&mm, slot, 0x1234_5678_9abc_def0, 8);
    check!(test, matches!(r, Ok(true)), "current value: {:?}", r);
    check_eq!(test, sys::get_user::<u64>(slot).unwrap_or(1), 0);

    let slot32 = base + 0x24;
    put_u32(slot32, 0x8765_4321);
    let r = sys::compare_and_clear_remote(&mm, slot32, 0x8765_4320, 4);
    check!(test, matches!(r, Ok(false)), "stale 32-bit value: {:?}", r);
    check_eq!(test, get_u32(slot32), 0x8765_4321);
    let r = sys::compare_and_clear_remote(&mm, slot32, 0x8765_4321, 4);
    check!(test, matches!(r, Ok(true)), "current 32-bit value: {:?}", r);
    check_eq!(test, get_u32(slot32), 0);
    // Its neighbours are untouched.
    check_eq!(test, get_u32(slot32 - 4), 0);
    check_eq!(test, get_u32(slot32 + 4), 0);

    check!(
        test,
        sys::compare_and_clear_remote(&mm, base + 4, 0, 8).is_err(),
        "misaligned"
    );
}

/// The reference count of the current task.
fn my_usage() -> i32 {
    // SAFETY: the current task is valid; `usage` is an atomic counter, read racily.
    unsafe { core::ptr::read_volatile(&raw const (*sys::current()).usage.refs.counter) }
}

/// The tasks `idx` has under `key`.
fn tasks_under(test: &Test, idx: &TaskIndex, key: usize) -> KVec<sys::RawTask> {
    let mut seen = KVec::new();
    let r = idx.for_each(key, |t| seen.push(t, GFP_KERNEL).map_err(Into::into));
    check!(test, matches!(r, Ok(true)), "for_each {:#x}: {:?}", key, r);
    seen
}

/// The cleanup index files a task once per mm, finds it under that mm only, holds one reference
/// on it while it is filed, and none once it is removed (no leak, no dead task kept).
fn index_files_and_forgets(test: &Test) {
    let me = sys::current();
    let before = my_usage();
    let mut idx = TaskIndex::new();
    // Keys are compared, never dereferenced: any values will do. 100 keys fill every bucket.
    let keys = |i: usize| 0xffff_8880_0000_0000usize + i * 0x400;
    for i in 0..100 {
        // SAFETY: `me` is the valid current task.
        unsafe {
            idx.insert(keys(i), me);
            idx.insert(keys(i), me);
        }
    }
    check_eq!(test, idx.len(), 100);
    check_eq!(test, my_usage(), before + 100);
    for i in [0, 1, 63, 64, 99] {
        let seen = tasks_under(test, &idx, keys(i));
        check_eq!(test, seen.len(), 1);
        check!(
            test,
            seen.iter().all(|&t| t == me),
            "another task under key {}",
            i
        );
    }
    check_eq!(test, tasks_under(test, &idx, keys(100)).len(), 0);
    // Two tasks under one key: each is found, and removing one keeps the other.
    let init = &raw mut bindings::init_task;
    // SAFETY: `init_task` is always valid.
    unsafe { idx.insert(keys(7), init) };
    check_eq!(test, tasks_under(test, &idx, keys(7)).len(), 2);
    check!(
        test,
        idx.remove(keys(7), me),
        "remove me from a group of two"
    );
    let rest = tasks_under(test, &idx, keys(7));
    check!(
        test,
        rest.len() == 1 && rest[0] == init,
        "the other task is kept"
    );
    check!(test, idx.remove(keys(7), init), "remove init_task");
    check!(test, !idx.remove(keys(7), me), "removed twice");
    // SAFETY: `me` is the valid current task.
    unsafe { idx.insert(keys(7), me) };
    check_eq!(test, my_usage(), before + 100);
    for i in 0..100 {
        check!(test, idx.remove(keys(i), me), "remove {}", i);
        check!(test, !idx.remove(keys(i), me), "removed twice {}", i);
    }
    check_eq!(test, idx.len(), 0);
    check_eq!(test, my_usage(), before);
}

static mut WALKER_CASES: [bindings::kunit_case; 9] = [
    kunit_case!(entry_decoding),
    kunit_case!(walk_marks_owned_words),
    kunit_case!(walk_visits_in_order),
    kunit_case!(walk_limit),
    kunit_case!(walk_stops_on_unreadable_next),
    kunit_case!(walk_stops_on_unaligned_word),
    kunit_case!(compat_walk),
    kunit_case!(registration_is_exclusive),
    END,
];

static mut WALKER_SUITE: bindings::kunit_suite = suite(
    b"robust_futex_walker",
    &raw mut WALKER_CASES as *mut bindings::kunit_case,
);

static mut CLEANUP_CASES: [bindings::kunit_case; 3] = [
    kunit_case!(compare_and_clear_respects_value),
    kunit_case!(index_files_and_forgets),
    END,
];

static mut CLEANUP_SUITE: bindings::kunit_suite = suite(
    b"robust_futex_cleanup",
    &raw mut CLEANUP_CASES as *mut bindings::kunit_case,
);

#[used]
#[link_section = ".kunit_test_suites"]
static SUITES: [SuiteEntry; 2] = [
    SuiteEntry(&raw mut WALKER_SUITE),
    SuiteEntry(&raw mut CLEANUP_SUITE),
];
