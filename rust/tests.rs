// SPDX-License-Identifier: GPL-2.0

//! KUnit suites, run when the module is loaded, in the KUnit thread against memory in a user
//! address space of its own (`kunit_vm_mmap()`):
//!
//! - `robust_futex_walker`: the robust list parser and the exit walk;
//! - `robust_futex_cleanup`: the compare-and-clear primitive of `cleanup_robust_list(2)` and
//!   the index of tasks it finds its candidates in.
//!
//! The thread "dies" by calling the walk on a list it built, with its own TID as the owner.
//! The helpers return errors for a broken test setup (a mapping or a write that fails), which
//! fail the case through its `Result`; `assert!` and `assert_eq!` are KUnit's.

use crate::robust_list::Abi;
use kernel::{
    bindings,
    error::code::ENOMEM,
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

const WAITERS: u32 = bindings::FUTEX_WAITERS;
const DIED: u32 = bindings::FUTEX_OWNER_DIED;
const RW: u32 = bindings::PROT_READ | bindings::PROT_WRITE;
const ANON: u32 = bindings::MAP_PRIVATE | bindings::MAP_ANONYMOUS;

/// The TID the walk compares owners with: the KUnit thread's own.
fn self_tid() -> u32 {
    kernel::current!().pid_vnr() as u32
}

/// Maps `len` bytes of anonymous memory in the running test's own user address space (created
/// on first use), at `addr` if `flags` has `MAP_FIXED`. The mapping lives until the test ends.
///
/// Context: the test's thread, may sleep.
fn vm_mmap(addr: usize, len: usize, flags: u32) -> Result<usize> {
    // SAFETY: no preconditions; NULL outside a KUnit test.
    let test = unsafe { bindings::kunit_get_current_test() };
    if test.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: `test` is the running test; a NULL file makes an anonymous mapping.
    let mapped = unsafe {
        bindings::kunit_vm_mmap(
            test,
            core::ptr::null_mut(),
            addr,
            len,
            RW as usize,
            flags as usize,
            0,
        )
    };
    // `vm_mmap()` errors come back as `-errno` values.
    if mapped == 0 || mapped >= (-(bindings::MAX_ERRNO as isize)) as usize {
        return Err(ENOMEM);
    }
    Ok(mapped)
}

fn map(len: usize) -> Result<usize> {
    vm_mmap(0, len, ANON)
}

fn put_u32(addr: usize, v: u32) -> Result {
    UserSlice::new(UserPtr::from_addr(addr), 4)
        .writer()
        .write(&v)
}

fn put_word(abi: Abi, addr: usize, v: usize) -> Result {
    match abi {
        Abi::Native => UserSlice::new(UserPtr::from_addr(addr), 8)
            .writer()
            .write(&v),
        Abi::Compat => put_u32(addr, v as u32),
    }
}

fn get_u32(addr: usize) -> Result<u32> {
    UserSlice::new(UserPtr::from_addr(addr), 4).reader().read()
}

fn get_u64(addr: usize) -> Result<u64> {
    UserSlice::new(UserPtr::from_addr(addr), 8).reader().read()
}

/// Writes a robust list head at `head` whose entries are `links` (raw pointers, bit 0 = PI) in
/// order, then back to the head, with `futex_offset` and `pending` (raw).
fn build(abi: Abi, head: usize, links: &[usize], futex_offset: isize, pending: usize) -> Result {
    let w = match abi {
        Abi::Native => 8,
        Abi::Compat => 4,
    };
    put_word(abi, head, links.first().copied().unwrap_or(head))?;
    put_word(abi, head + w, futex_offset as usize)?;
    put_word(abi, head + 2 * w, pending)?;
    for (i, link) in links.iter().enumerate() {
        let next = links.get(i + 1).copied().unwrap_or(head);
        put_word(abi, link & !1, next)?;
    }
    Ok(())
}

#[kunit_tests(robust_futex_walker)]
mod walker_tests {
    use super::*;
    use crate::robust_list::{walk, CurrentMem, Entry, Flow, Head, Visit, ROBUST_LIST_LIMIT};
    use crate::walker;

    fn native(addr: usize) -> Head {
        Head {
            addr,
            abi: Abi::Native,
        }
    }

    /// The KUnit thread "dies" with the list at `addr`: the module's exit walk, with its TID.
    fn die(addr: usize, abi: Abi) {
        walker::exit_walk(Head { addr, abi }, self_tid() as i32);
    }

    #[test]
    fn entry_decoding() -> Result {
        assert_eq!(
            Entry::decode(0x1001, Abi::Native),
            Entry {
                addr: 0x1000,
                pi: true
            }
        );
        assert_eq!(
            Entry::decode(0x7fff_0000_1000, Abi::Native).addr,
            0x7fff_0000_1000
        );
        // A compat pointer is a zero-extended u32.
        assert_eq!(
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
        assert_eq!(native.pending_slot(), 0x10010);
        assert_eq!(compat.pending_slot(), 0x10008);
        let e = Entry {
            addr: 0x2000,
            pi: false,
        };
        assert_eq!(native.futex_word(e, (-8isize) as usize), 0x1ff8);
        assert_eq!(native.futex_word(e, 0x20), 0x2020);
        // Compat arithmetic wraps in 32 bits, in both directions.
        let high = Entry {
            addr: 0xffff_fff0,
            pi: false,
        };
        assert_eq!(compat.futex_word(high, 0x20), 0x10);
        let low = Entry {
            addr: 0x10,
            pi: false,
        };
        assert_eq!(
            compat.futex_word(low, (-0x20i32) as u32 as usize),
            0xffff_fff0
        );
        Ok(())
    }

    #[test]
    fn walk_marks_owned_words() -> Result {
        let base = map(4096)?;
        let tid = self_tid();
        // No task has this TID: PID_MAX_LIMIT is far below FUTEX_TID_MASK.
        let other = bindings::FUTEX_TID_MASK - 1;
        // Entries at base + 0x100 * i, futex words 8 bytes after each entry.
        let e = |i: usize| base + 0x100 * i;
        let word = |i: usize| e(i) + 8;
        put_u32(word(1), tid)?;
        put_u32(word(2), tid | WAITERS)?;
        put_u32(word(3), other | WAITERS)?;
        put_u32(word(4), tid)?; // pending only
        put_u32(word(5), DIED | WAITERS)?; // already dead, no owner
        build(Abi::Native, base, &[e(1), e(2) | 1, e(3), e(5)], 8, e(4))?;

        die(base, Abi::Native);

        assert_eq!(get_u32(word(1))?, DIED);
        assert_eq!(get_u32(word(2))?, DIED | WAITERS);
        assert_eq!(get_u32(word(3))?, other | WAITERS);
        assert_eq!(get_u32(word(4))?, DIED);
        assert_eq!(get_u32(word(5))?, DIED | WAITERS);
        Ok(())
    }

    /// The walk visits what `exit_robust_list()` visits, in its order.
    #[test]
    fn walk_visits_in_order() -> Result {
        let base = map(4096)?;
        let e = |i: usize| base + 0x100 * i;
        // A pending entry that is also on the list is visited once, last.
        build(Abi::Native, base, &[e(1), e(2) | 1, e(3)], -4, e(2) | 1)?;
        let mut seen = KVec::new();
        walk(&CurrentMem, &native(base), |v: Visit| {
            let _ = seen.push(v, GFP_KERNEL);
            Flow::Continue
        });
        let expected = [
            Visit {
                entry: e(1),
                uaddr: e(1) - 4,
                pi: false,
                pending: false,
            },
            Visit {
                entry: e(3),
                uaddr: e(3) - 4,
                pi: false,
                pending: false,
            },
            Visit {
                entry: e(2),
                uaddr: e(2) - 4,
                pi: true,
                pending: true,
            },
        ];
        assert_eq!(&seen[..], &expected[..]);

        // A visit that stops the walk also skips the pending entry.
        let mut count = 0;
        walk(&CurrentMem, &native(base), |_| {
            count += 1;
            Flow::Stop
        });
        assert_eq!(count, 1);

        // An empty list with no pending entry visits nothing.
        build(Abi::Native, base, &[], 0, 0)?;
        let mut count = 0;
        walk(&CurrentMem, &native(base), |_| {
            count += 1;
            Flow::Continue
        });
        assert_eq!(count, 0);
        Ok(())
    }

    /// `ROBUST_LIST_LIMIT` entries are handled, one more is not; the pending entry still is.
    #[test]
    fn walk_limit() -> Result {
        let n = ROBUST_LIST_LIMIT as usize + 1;
        let base = map(32 + 16 * (n + 1))?;
        let tid = self_tid();
        // The head takes 24 bytes; entries of 16 bytes (next, word) follow from base + 32.
        let e = |i: usize| base + 32 + 16 * i;
        let mut links = KVec::new();
        for i in 0..n {
            put_u32(e(i) + 8, tid)?;
            links.push(e(i), GFP_KERNEL)?;
        }
        let pending = e(n);
        put_u32(pending + 8, tid)?;
        build(Abi::Native, base, &links, 8, pending)?;

        die(base, Abi::Native);

        assert_eq!(get_u32(e(0) + 8)?, DIED);
        assert_eq!(get_u32(e(n - 2) + 8)?, DIED);
        assert_eq!(get_u32(e(n - 1) + 8)?, tid);
        assert_eq!(get_u32(pending + 8)?, DIED);
        Ok(())
    }

    /// An entry whose `next` cannot be read is handled, then the walk ends without the pending one.
    #[test]
    fn walk_stops_on_unreadable_next() -> Result {
        let base = map(4096)?;
        let tid = self_tid();
        let (e1, e2) = (base + 0x100, base + 0x200);
        put_u32(e1 + 8, tid)?;
        put_u32(e2 + 8, tid)?;
        build(Abi::Native, base, &[e1], 8, e2)?;
        put_word(Abi::Native, e1, 0x1000)?; // unmapped in the test's mm
        die(base, Abi::Native);
        assert_eq!(get_u32(e1 + 8)?, DIED);
        assert_eq!(get_u32(e2 + 8)?, tid);
        Ok(())
    }

    /// An unaligned futex word is left alone and ends the walk.
    #[test]
    fn walk_stops_on_unaligned_word() -> Result {
        let base = map(4096)?;
        let tid = self_tid();
        // e1 is 2-aligned only, so its word (e1 + 8) is not 4-aligned.
        let (e1, e2, e3) = (base + 0x102, base + 0x200, base + 0x300);
        put_u32(e1 + 8, tid)?;
        put_u32(e2 + 8, tid)?;
        put_u32(e3 + 8, tid)?;
        build(Abi::Native, base, &[e1, e2], 8, e3)?;
        die(base, Abi::Native);
        assert_eq!(get_u32(e1 + 8)?, tid);
        assert_eq!(get_u32(e2 + 8)?, tid);
        assert_eq!(get_u32(e3 + 8)?, tid);
        Ok(())
    }

    /// A compat list: 32-bit pointers and a negative 32-bit `futex_offset`.
    #[test]
    fn compat_walk() -> Result {
        // Compat pointers are 32 bits: map below 4 GiB.
        let fixed = 0x1000_0000;
        let base = vm_mmap(fixed, 4096, ANON | bindings::MAP_FIXED)?;
        assert_eq!(base, fixed);
        let tid = self_tid();
        let (e1, e2, e3) = (base + 0x100, base + 0x200, base + 0x300);
        // Words 16 bytes before their entries.
        put_u32(e1 - 16, tid | WAITERS)?;
        put_u32(e2 - 16, tid)?;
        put_u32(e3 - 16, tid)?;
        build(Abi::Compat, base, &[e1, e2 | 1], -16, e3)?;
        die(base, Abi::Compat);
        assert_eq!(get_u32(e1 - 16)?, DIED | WAITERS);
        assert_eq!(get_u32(e2 - 16)?, DIED);
        assert_eq!(get_u32(e3 - 16)?, DIED);
        Ok(())
    }

    /// Only one set of operations can be registered: ours is, so another fails with `EBUSY`.
    #[test]
    fn registration_is_exclusive() -> Result {
        // SAFETY: All-zero is a valid `futex_robust_ops` (no owner, no operations).
        let other: bindings::futex_robust_ops = unsafe { core::mem::zeroed() };
        // SAFETY: `other` outlives the call; if the registration unexpectedly succeeded, it is
        // undone below before `other` goes away.
        let ret = unsafe { bindings::futex_robust_ops_register(&other) };
        if ret == 0 {
            // SAFETY: `other` was just registered. Undone before the (fatal) assertion below.
            unsafe { bindings::futex_robust_ops_unregister(&other) };
        }
        assert_eq!(ret, -(bindings::EBUSY as i32));
        Ok(())
    }
}

#[kunit_tests(robust_futex_cleanup)]
mod cleanup_tests {
    use super::*;
    use crate::index::{Batch, Stash, TaskHead, TaskIndex, FROM_THE_END};
    use crate::remote;
    use crate::robust_list::{Abi, Head};
    use kernel::{
        error::code::EAGAIN,
        mm::Mm,
        sync::{
            aref::ARef,
            atomic::{Atomic, Relaxed},
        },
        task::Task,
    };

    /// The windows' sort: every order of small arrays with equal keys, and a longer
    /// pseudo-random one, come out sorted with the same elements.
    #[test]
    fn heapsort_sorts() -> Result {
        let mut v = KVec::<(u32, u32)>::new();
        for n in 0..7u32 {
            // Every rotation, reversed or not, with duplicate keys.
            for rot in 0..n.max(1) {
                for rev in [false, true] {
                    v.clear();
                    for i in 0..n {
                        let k = (i + rot) % n.max(1) / 2;
                        v.push((if rev { n - k } else { k }, i), GFP_KERNEL)?;
                    }
                    crate::cleanup::heapsort_by_key(&mut v, |e| e.0);
                    assert!(v.windows(2).all(|w| w[0].0 <= w[1].0));
                    let mut seen = 0u32;
                    for e in v.iter() {
                        seen |= 1 << e.1;
                    }
                    assert_eq!(seen, (1u32 << n) - 1);
                }
            }
        }
        v.clear();
        let mut x = 0x2545_f491u32;
        for i in 0..1000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push((x % 97, i), GFP_KERNEL)?;
        }
        crate::cleanup::heapsort_by_key(&mut v, |e| e.0);
        assert!(v.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(
            v.iter().map(|e| u64::from(e.1)).sum::<u64>(),
            999 * 1000 / 2
        );
        Ok(())
    }

    /// A call's budget for locks that other tasks hold is shared by every lock it takes: a lock
    /// let go just before each attempt would give up costs the call the budget once, not once
    /// per lock; once it is spent, each lock is tried once, without sleeping (what is free is
    /// still taken), and the give-up is counted once.
    #[test]
    fn lock_wait_budget_shared() -> Result {
        let wait = remote::LockWait::with_sleeps(5);
        let gave_up = remote::LOCK_GAVE_UP.load(Relaxed);
        let mut tries = 0;
        // Free at the fourth try: three sleeps.
        let r = wait.acquire(|| {
            tries += 1;
            (tries == 4).then_some(())
        });
        assert!(r.is_ok() && tries == 4 && wait.left() == 2);
        // Never free: the two sleeps left, then given up.
        tries = 0;
        let r = wait.acquire(|| {
            tries += 1;
            None::<()>
        });
        assert!(r.err() == Some(EAGAIN) && tries == 3 && wait.left() == 0);
        // Spent: one try each.
        tries = 0;
        let r = wait.acquire(|| {
            tries += 1;
            None::<()>
        });
        assert!(r.err() == Some(EAGAIN) && tries == 1);
        assert!(wait.acquire(|| Some(())).is_ok());
        assert_eq!(remote::LOCK_GAVE_UP.load(Relaxed) - gave_up, 1);
        Ok(())
    }

    /// `compare_and_clear_remote()` clears a slot only if it still holds the value read: a slot
    /// changed in between (here: before the call) is left alone. Both widths; misaligned slots are
    /// refused.
    #[test]
    fn compare_and_clear_respects_value() -> Result {
        let base = map(4096)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let slot = base + 0x10;
        let wait = remote::LockWait::new();
        put_word(Abi::Native, slot, 0x1234_5678_9abc_def0)?;
        let r = remote::compare_and_clear(mm, &wait, slot, 0x1111, 8, |_| true);
        assert!(matches!(r, Ok(false)));
        assert_eq!(get_u64(slot)?, 0x1234_5678_9abc_def0);
        let r = remote::compare_and_clear(mm, &wait, slot, 0x1234_5678_9abc_def0, 8, |_| true);
        assert!(matches!(r, Ok(true)));
        assert_eq!(get_u64(slot)?, 0);

        let slot32 = base + 0x24;
        put_u32(slot32, 0x8765_4321)?;
        let r = remote::compare_and_clear(mm, &wait, slot32, 0x8765_4320, 4, |_| true);
        assert!(matches!(r, Ok(false)));
        assert_eq!(get_u32(slot32)?, 0x8765_4321);
        let r = remote::compare_and_clear(mm, &wait, slot32, 0x8765_4321, 4, |_| true);
        assert!(matches!(r, Ok(true)));
        assert_eq!(get_u32(slot32)?, 0);
        // Its neighbours are untouched.
        assert_eq!(get_u32(slot32 - 4)?, 0);
        assert_eq!(get_u32(slot32 + 4)?, 0);

        assert!(remote::compare_and_clear(mm, &wait, base + 4, 0, 8, |_| true).is_err());
        Ok(())
    }

    /// The reference count of the current task.
    fn my_usage() -> i32 {
        // SAFETY: the current task is valid; `usage` is an atomic counter, read racily.
        unsafe {
            core::ptr::read_volatile(&raw const (*kernel::current!().as_ptr()).usage.refs.counter)
        }
    }

    /// The tasks `idx` has under `mm`, copied one per batch (so that each batch after the
    /// first resumes where the one before stopped).
    fn tasks_under(idx: &TaskIndex, mm: &Mm) -> Result<KVVec<ARef<Task>>> {
        let mut seen = KVVec::new();
        let mut batch = KVVec::with_capacity(1, GFP_KERNEL)?;
        let mut from = FROM_THE_END;
        loop {
            let b = idx.copy_tasks(mm.as_raw(), from, &mut batch);
            assert_ne!(b, Batch::Incomplete);
            for t in batch.drain_all() {
                seen.push(t, GFP_KERNEL)?;
            }
            match b {
                Batch::From(next) => from = next,
                _ => return Ok(seen),
            }
        }
    }

    /// A stand-in mm to file tasks under: zeroed, with one reference (`mm_count`) of its own,
    /// so that the index's `mmgrab()`/`mmdrop()` never free it; nothing else of it is used.
    struct FakeMm(KBox<core::mem::MaybeUninit<bindings::mm_struct>>);

    impl FakeMm {
        fn new() -> Result<Self> {
            let mut b = KBox::<bindings::mm_struct>::new_uninit(GFP_KERNEL)?;
            // SAFETY: `b` is valid for writes of one `mm_struct`, for which zero is a valid value.
            unsafe { b.as_mut_ptr().write_bytes(0, 1) };
            let fake = FakeMm(b);
            // SAFETY: zeroed above; `mm_count` is only accessed atomically.
            unsafe {
                (*fake.raw())
                    .__bindgen_anon_1
                    .__bindgen_anon_1
                    .mm_count
                    .counter = 1
            };
            Ok(fake)
        }

        fn raw(&self) -> *mut bindings::mm_struct {
            self.0.as_ptr().cast_mut().cast()
        }

        fn mm(&self) -> &Mm {
            // SAFETY: a zeroed `mm_struct` that lives as long as `self`, whose count never drops
            // to zero; the index only takes and drops references on it and compares addresses.
            unsafe { Mm::from_raw(self.raw()) }
        }

        /// References held on it by others.
        fn refs(&self) -> i32 {
            // SAFETY: `mm_count` is an atomic counter of the valid object.
            unsafe {
                Atomic::<i32>::from_ptr(
                    &raw mut (*self.raw())
                        .__bindgen_anon_1
                        .__bindgen_anon_1
                        .mm_count
                        .counter,
                )
            }
            .load(Relaxed)
                - 1
        }
    }

    /// A call's copy of the heads of an mm in batches sees every task that stays filed while it
    /// runs, though tasks are removed, filed and refreshed, and the room of their heads grows,
    /// between its batches: a removal moves the last task's heads into the freed place, and the
    /// copy goes from the last place down. The places follow their entries, and everything is
    /// dropped with the last one.
    #[test]
    fn index_batches_survive_removals() -> Result {
        let me: &Task = kernel::current!();
        let fake = FakeMm::new()?;
        let mm = fake.mm();
        let before = my_usage();
        let idx = TaskIndex::new()?;
        idx.mark_populated();
        // Two heads each, so that a batch with room for two copies one task.
        let heads = |k: usize, v: usize| {
            [
                Some(Head {
                    addr: k * 64 + v,
                    abi: Abi::Native,
                }),
                Some(Head {
                    addr: k * 64 + 32,
                    abi: Abi::Compat,
                }),
            ]
        };
        // Stand-in tasks 1 to 6 in places 0 to 5.
        for k in 1..=6 {
            idx.file_for_test(mm, me, k, heads(k, 0))?;
        }
        assert!(idx.dense_consistent(mm).0);
        let mut stash = Stash::<TaskHead, 2>::new(TaskHead {
            task: 0,
            head: heads(0, 0)[0].ok_or(EINVAL)?,
        });
        let mut seen = [0u32; 16];
        // Heads copied that are not the task's own of the moment.
        let mut stale = 0;
        let mut from = FROM_THE_END;
        for round in 0.. {
            let b = idx.task_heads(mm.as_raw(), from, &mut stash);
            for th in stash.as_slice() {
                let v = if th.task == 3 && round >= 3 { 8 } else { 0 };
                stale += u32::from(!heads(th.task, v).contains(&Some(th.head)));
                seen[th.task] += 1;
            }
            match round {
                // 6 (place 5) was copied; 1 (place 0), not copied, is removed: 6 moves there,
                // below the next batch's place (5), and will be copied again.
                0 => assert!(idx.remove_key_for_test(mm, 1)),
                // 5 (place 4) was copied and is removed (the last: nothing moves); then 2
                // (place 1): 4, the last and not copied yet, moves from place 3 to 1, lower
                // still. 7 is filed at the end, place 3: below the next batch's (4).
                1 => {
                    assert!(idx.remove_key_for_test(mm, 5));
                    assert!(idx.remove_key_for_test(mm, 2));
                    idx.file_for_test(mm, me, 7, heads(7, 0))?;
                }
                // 7 was copied. 3 registers other heads; 8 to 12 are filed, above the next
                // batch's place (3), and the room grows from 8 to 16 (every place kept).
                2 => {
                    idx.file_for_test(mm, me, 3, heads(3, 8))?;
                    for k in 8..=12 {
                        idx.file_for_test(mm, me, k, heads(k, 0))?;
                    }
                    assert_eq!(idx.dense_consistent(mm), (true, 16));
                }
                // 3 was copied. 12 to 8 are removed (each the last: nothing moves); with 4
                // left, the room is halved to 8, every place kept: 4 and 6 are still below the
                // next batch's place (2).
                3 => {
                    for k in (8..=12).rev() {
                        assert!(idx.remove_key_for_test(mm, k));
                    }
                    assert_eq!(idx.dense_consistent(mm), (true, 8));
                }
                _ => {}
            }
            assert!(idx.dense_consistent(mm).0);
            match b {
                Batch::From(next) => from = next,
                Batch::Done => break,
                Batch::Incomplete => return Err(EINVAL),
            }
        }
        // 3, 4 and 6 stayed filed throughout: each was copied (4 after it moved, 4 and 6 after
        // the room was halved), 3 (copied after its refresh) with its new heads.
        assert!(seen[3] > 0 && seen[4] > 0 && seen[6] > 0);
        assert_eq!(stale, 0);
        // Each copy is of both heads: 6 was copied twice, 5 and 7 once, 1, 2 and 8 to 12 not.
        assert_eq!(seen[..13], [0, 0, 0, 2, 2, 2, 4, 2, 0, 0, 0, 0, 0]);
        assert_eq!(idx.len(), 4);
        // The room is halved when a quarter full (8 to 4 when 2 are left), never below 4.
        for (k, room) in [(4, 8), (6, 4), (7, 4)] {
            assert!(idx.task(mm.as_raw(), k).is_some());
            assert!(idx.remove_key_for_test(mm, k));
            assert_eq!(idx.dense_consistent(mm), (true, room));
        }
        assert!(idx.remove_key_for_test(mm, 3));
        assert_eq!(idx.len(), 0);
        assert_eq!(my_usage(), before);
        assert_eq!(fake.refs(), 0);
        Ok(())
    }

    /// The cleanup index files a task once per mm, finds it under that mm only, holds one
    /// reference on it (and one on the mm) while it is filed, and none once it is removed (no
    /// leak, no dead task kept); it files only tasks with a robust list, and says it is
    /// incomplete until populated.
    #[test]
    fn index_files_and_forgets() -> Result {
        let me: &Task = kernel::current!();
        // SAFETY: `init_task` is always valid; `Task` is a transparent wrapper around it.
        let init: &Task = unsafe { &*(&raw const bindings::init_task).cast() };
        let fake = FakeMm::new()?;
        let mm = fake.mm();
        let before = my_usage();
        let idx = TaskIndex::new()?;
        // Incomplete until populated: a lookup says that some tasks may be missing.
        let mut none = KVVec::new();
        assert_eq!(
            idx.copy_tasks(mm.as_raw(), FROM_THE_END, &mut none),
            Batch::Incomplete
        );
        idx.mark_populated();
        // No room at all: taken as incomplete (the batch could not move on).
        assert_eq!(
            idx.copy_tasks(mm.as_raw(), FROM_THE_END, &mut none),
            Batch::Incomplete
        );
        assert_eq!(tasks_under(&idx, mm)?.len(), 0);
        // A kernel thread has no robust list: `update()` does not file it.
        idx.update(mm, me);
        assert_eq!(idx.len(), 0);
        assert_eq!(my_usage(), before);
        // `insert_for_test()` files tasks whatever their heads, once each.
        idx.insert_for_test(mm, me)?;
        idx.insert_for_test(mm, me)?;
        assert_eq!(idx.len(), 1);
        assert_eq!(my_usage(), before + 1);
        assert_eq!(fake.refs(), 1);
        let seen = tasks_under(&idx, mm)?;
        assert!(seen.len() == 1 && *seen[0] == *me);
        drop(seen);
        // Found under its mm only.
        let mut other = KVVec::with_capacity(1, GFP_KERNEL)?;
        assert_eq!(
            idx.copy_tasks(mm.as_raw().wrapping_byte_add(64), FROM_THE_END, &mut other),
            Batch::Done
        );
        // Two tasks under one mm: each is found, and removing one keeps the other.
        idx.insert_for_test(mm, init)?;
        assert_eq!(tasks_under(&idx, mm)?.len(), 2);
        assert!(idx.remove(mm, me));
        let rest = tasks_under(&idx, mm)?;
        assert!(rest.len() == 1 && *rest[0] == *init);
        drop(rest);
        assert!(idx.remove(mm, init));
        assert!(!idx.remove(mm, me));
        assert_eq!(idx.len(), 0);
        assert_eq!(my_usage(), before);
        assert_eq!(fake.refs(), 0);
        // `update()` removes a filed task that has no robust list.
        idx.insert_for_test(mm, me)?;
        idx.update(mm, me);
        assert_eq!(idx.len(), 0);
        assert_eq!(my_usage(), before);
        Ok(())
    }
}
