//! The test cases. Each runs in a process of its own; `Err` carries the reason of a failure.

use crate::cleanup;
use crate::glibc;
use crate::hardening;
use crate::index;
use crate::list::{process_dies, process_execs, List, Waiters, HEAD_LEN};
use crate::stepped;
use crate::sys::{self, *};
use crate::{Case, Ctx, Walker};

type R = Result<(), String>;

pub static ALL: &[Case] = &[
    Case::any("walker_in_use", walker_in_use),
    Case::any("glibc_thread_owner_dies", glibc::thread_owner_dies),
    Case::any("glibc_process_owner_dies", glibc::process_owner_dies_plain),
    Case::any("glibc_waiter_woken", glibc::waiter_woken),
    Case::any("glibc_pi_owner_dies", glibc::pi_owner_dies),
    Case::any("glibc_pi_waiter_woken", glibc::pi_waiter_woken),
    Case::any("glibc_many_threads_die", glibc::many_threads_die),
    Case::any("list_owned_entries", list_owned_entries),
    Case::any("list_pending_only", list_pending_only),
    Case::any("list_pending_on_list_once", list_pending_on_list_once),
    Case::any("list_wakes_one_waiter", list_wakes_one_waiter),
    Case::any("list_pi_no_wake", list_pi_no_wake),
    Case::any("list_positive_offset", list_positive_offset),
    Case::any("list_negative_offset", list_negative_offset),
    Case::any("list_cycle", list_cycle),
    Case::any("list_limit_2048", list_limit_2048),
    Case::any("list_limit_2049", list_limit_2049),
    Case::any("list_unmapped_next", list_unmapped_next),
    Case::any("list_unaligned_word", list_unaligned_word),
    Case::any("list_readonly_word", list_readonly_word),
    Case::any("list_unmapped_head", list_unmapped_head),
    Case::any("list_entry_unlocked_no_wake", list_entry_unlocked_no_wake),
    Case::any("pending_unlocked_wakes", pending_unlocked_wakes),
    Case::any("pending_other_owner_wakes", pending_other_owner_wakes),
    Case::any(
        "pending_other_owner_waiters_no_wake",
        pending_other_owner_waiters_no_wake,
    ),
    Case::any("pending_pi_unlocked_no_wake", pending_pi_unlocked_no_wake),
    Case::any("exec_walks_list", exec_walks_list),
    Case::any("thread_exit_walks_list", thread_exit_walks_list),
    Case::any("compat32_list", compat32_list),
    Case::any("compat32_syscall", compat32_syscall),
    Case::any("compat32_glibc", compat32_glibc),
    Case::any("cleanup_bad_input_table", cleanup_bad_input),
    Case::no_module("cleanup_enosys", cleanup_enosys),
    Case::module("cleanup_same_process_thread", cleanup::same_process_thread),
    Case::module("cleanup_reregistered_head", cleanup::reregistered_head),
    Case::module("cleanup_clone_vm_sibling", cleanup::clone_vm_sibling),
    Case::module("cleanup_shared_anon_process", cleanup::shared_anon_process),
    Case::module("cleanup_memfd_other_address", cleanup::memfd_other_address),
    Case::module(
        "cleanup_tmpfs_file_other_address",
        cleanup::tmpfs_file_other_address,
    ),
    Case::module("cleanup_sysv_shm", cleanup::sysv_shm),
    Case::module(
        "cleanup_many_threads_many_processes",
        cleanup::many_threads_many_processes,
    ),
    Case::module(
        "cleanup_private_file_not_cleared",
        cleanup::private_file_not_cleared,
    ),
    Case::module(
        "cleanup_cow_copy_not_cleared",
        cleanup::cow_copy_not_cleared,
    ),
    Case::module("cleanup_range_and_pi_bit", cleanup::range_and_pi_bit),
    Case::module(
        "cleanup_exited_target_skipped",
        cleanup::exited_target_skipped,
    ),
    Case::module("cleanup_bad_mappings", cleanup::bad_mappings),
    Case::module("cleanup_spans_mappings", cleanup::spans_mappings),
    Case::module(
        "cleanup_many_threads_batched",
        cleanup::many_threads_batched,
    ),
    Case::module(
        "cleanup_overlapping_mappings",
        cleanup::overlapping_mappings,
    ),
    Case::module("cleanup_mm_only", cleanup::mm_only),
    Case::module("preload_calls", crate::preload::calls),
    Case::module("preload_unknown_glibc", crate::preload::unknown_glibc),
    Case::module("preload_race_destroy", crate::preload::race_destroy),
    Case::module("preload_race_munmap", crate::preload::race_munmap),
    Case::module("preload_lmdb", crate::preload::lmdb),
    Case::no_module("preload_without_module", crate::preload::without_module),
    Case::module("preload_hardening_window", crate::preload::hardening_window),
    Case::module("preload_hardening_signal", crate::preload::hardening_signal),
    Case::module("preload_hardening_fork", crate::preload::hardening_fork),
    Case::module("preload_hardening_atfork", crate::preload::hardening_atfork),
    Case::module(
        "preload_hardening_seccomp",
        crate::preload::hardening_seccomp,
    ),
    Case::module(
        "preload_hardening_dontunmap",
        crate::preload::hardening_dontunmap,
    ),
    Case::module("index_follows_threads", index::follows_threads),
    Case::module("index_follows_processes", index::follows_processes),
    Case::module("index_follows_exec", index::follows_exec),
    Case::module("index_churn", index::churn),
    Case::module(
        "cleanup_own_slot_single_thread",
        index::own_slot_single_thread,
    ),
    Case::module("cleanup_compat32", cleanup::compat32_cleanup),
    Case::module(
        "cleanup_other_user_and_pid_namespace",
        cleanup::other_user_and_pid_namespace,
    ),
    Case::any(
        "race_munmap_without_cleanup",
        cleanup::race_munmap_without_cleanup,
    ),
    Case::module(
        "race_munmap_with_cleanup",
        cleanup::race_munmap_with_cleanup,
    ),
    Case::any(
        "race_shared_without_cleanup",
        cleanup::race_shared_without_cleanup,
    ),
    Case::module(
        "race_shared_with_cleanup",
        cleanup::race_shared_with_cleanup,
    ),
    // The race stepped instruction by instruction, three ways (see stepped.rs).
    Case::any("stepped_munmap_classic", stepped::munmap_classic),
    Case::module(
        "stepped_munmap_classic_cleanup",
        stepped::munmap_classic_cleanup,
    ),
    Case::merged("stepped_munmap_merged", stepped::munmap_merged),
    Case::any("stepped_shared_classic", stepped::shared_classic),
    Case::module(
        "stepped_shared_classic_cleanup",
        stepped::shared_classic_cleanup,
    ),
    Case::merged("stepped_shared_merged", stepped::shared_merged),
    Case::merged("stepped_merged_contended", stepped::merged_contended),
    Case::any(
        "stepped_merged_copy_has_window",
        stepped::merged_copy_has_window,
    ),
    // Regression tests for bugs of the module (see hardening.rs); `hardening_calls_during_load`
    // runs with the module unloaded (`robust-harness calls-during-load`), and
    // `robust-harness many-mappers COUNT` runs `hardening_many_processes_one_memfd` with COUNT
    // processes.
    Case::module(
        "hardening_compat_head_leaves_index_last",
        hardening::compat_head_leaves_index_last,
    ),
    Case::module(
        "hardening_index_leak_robust_unlock_error",
        hardening::index_leak_robust_unlock_error,
    ),
    // Robust futexes in shared memory their holder unmapped (unmap.rs, unmap.rst).
    Case::any("unmap_writeup_waiter", crate::unmap::writeup_waiter),
    Case::any("unmap_middle_of_list", crate::unmap::middle_of_list),
    Case::module("unmap_records_bounded", crate::unmap::records_bounded),
    Case::any(
        "unmap_deleted_file_space_freed",
        crate::unmap::deleted_file_space_freed,
    ),
    Case::any("unmap_remapped_live_wins", crate::unmap::remapped_live_wins),
    Case::any("unmap_other_thread_holds", crate::unmap::other_thread_holds),
    Case::any("unmap_exec_marks", crate::unmap::exec_marks),
    Case::any("unmap_join_then_reuse", crate::unmap::join_then_reuse),
    Case::any("unmap_compat32", crate::unmap::compat32),
    Case::module("unmap_fork_not_inherited", crate::unmap::fork_not_inherited),
    Case::module(
        "unmap_unlock_other_mapping",
        crate::unmap::unlock_other_mapping,
    ),
    Case::any("unmap_pi", crate::unmap::pi),
    Case::any("unmap_kinds_waiter", crate::unmap::kinds_waiter),
    Case::module("unmap_sealed_not_written", crate::unmap::sealed_not_written),
    Case::module("unmap_records_capped", crate::unmap::records_capped),
    Case::any("unmap_lmdb", crate::unmap::lmdb),
    Case::module("unmap_prune_past_held", crate::unmap::prune_past_held),
    Case::module(
        "hardening_fuse_head_never_served",
        crate::fuse::head_never_served,
    ),
    Case::module(
        "hardening_locked_mm_given_up_once",
        crate::fuse::locked_mm_given_up_once,
    ),
    Case::module(
        "hardening_mayshare_readonly_mapping",
        hardening::mayshare_readonly_mapping,
    ),
    Case::module(
        "hardening_stuck_call_blocks_nobody",
        hardening::stuck_call_blocks_nobody,
    ),
    Case::module(
        "hardening_fork_during_clear_child_untouched",
        hardening::fork_during_clear_child_untouched,
    ),
    Case::module(
        "hardening_remapped_word_not_cleared",
        hardening::remapped_word_not_cleared,
    ),
    Case::module(
        "hardening_remapped_while_call_waits",
        hardening::remapped_while_call_waits,
    ),
    Case::module(
        "hardening_exited_heads_not_missed",
        hardening::exited_heads_not_missed,
    ),
    Case::module(
        "hardening_many_processes_one_memfd",
        hardening::many_processes_one_memfd,
    ),
    Case::module(
        "hardening_no_atomic_allocation",
        hardening::no_atomic_allocation,
    ),
    Case::module("hardening_unaligned_head", hardening::unaligned_head),
];

const STATS: &str = "/sys/kernel/debug/robust_futex";

pub fn counter(name: &str) -> Result<u64, String> {
    let path = format!("{}/{}", STATS, name);
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{}: {}", path, e))?;
    s.trim()
        .parse()
        .map_err(|e| format!("{}: {:?}: {}", path, s, e))
}

/// The walker under test is the one that runs: the module's counts the exits it walks; without
/// the module there is no such count and no module.
fn walker_in_use(ctx: &Ctx) -> R {
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let loaded = modules.lines().any(|l| l.starts_with("robust_futex "));
    match ctx.walker {
        Walker::Rust => {
            ensure!(loaded, "robust_futex is not loaded");
            let before = counter("exit_walks")?;
            let l = List::new(4096);
            l.link(&[], 0, 0);
            ensure!(exited_ok(process_dies(l.head(), &[])), "child failed");
            let after = counter("exit_walks")?;
            ensure!(
                after > before,
                "exit_walks did not move: {} -> {}",
                before,
                after
            );
        }
        Walker::C => {
            ensure!(!loaded, "robust_futex is loaded");
            ensure!(std::fs::metadata(STATS).is_err(), "{} exists", STATS);
        }
    }
    Ok(())
}

/// Owned entries get OWNER_DIED with WAITERS kept; the others are untouched.
fn list_owned_entries(_: &Ctx) -> R {
    let l = List::new(4096);
    let e: Vec<usize> = (0..7).map(|i| l.entry(i)).collect();
    let w = |i: usize| e[i] + 8;
    let other = OTHER_TID;
    sys::write_u32(w(3), other);
    sys::write_u32(w(4), other | FUTEX_WAITERS);
    sys::write_u32(w(5), 0);
    sys::write_u32(w(6), FUTEX_OWNER_DIED);
    l.link(&[e[0], e[1], e[2] | 1, e[3], e[4], e[5], e[6]], 8, 0);
    let st = process_dies(l.head(), &[(w(0), 0), (w(1), FUTEX_WAITERS), (w(2), 0)]);
    ensure!(exited_ok(st), "child status {:#x}", st);
    ensure_eq!(sys::read_u32(w(0)), FUTEX_OWNER_DIED);
    ensure_eq!(sys::read_u32(w(1)), FUTEX_OWNER_DIED | FUTEX_WAITERS);
    ensure_eq!(sys::read_u32(w(2)), FUTEX_OWNER_DIED);
    ensure_eq!(sys::read_u32(w(3)), other);
    ensure_eq!(sys::read_u32(w(4)), other | FUTEX_WAITERS);
    ensure_eq!(sys::read_u32(w(5)), 0);
    ensure_eq!(sys::read_u32(w(6)), FUTEX_OWNER_DIED);
    Ok(())
}

fn list_pending_only(_: &Ctx) -> R {
    let l = List::new(4096);
    let p = l.entry(0);
    l.link(&[], 8, p);
    ensure!(
        exited_ok(process_dies(l.head(), &[(p + 8, 0)])),
        "child failed"
    );
    ensure_eq!(sys::read_u32(p + 8), FUTEX_OWNER_DIED);
    Ok(())
}

/// A pending entry that is also on the list is handled once: a second pass would see an
/// unowned word and wake a second waiter.
fn list_pending_on_list_once(_: &Ctx) -> R {
    let l = List::new(4096);
    let (a, b) = (l.entry(0), l.entry(1));
    l.link(&[a, b], 8, b);
    let (woken, after) = death_wakes(&l, b + 8, FUTEX_WAITERS, 2)?;
    ensure_eq!(after, FUTEX_OWNER_DIED | FUTEX_WAITERS);
    ensure_eq!(woken, 1);
    Ok(())
}

/// Waits until the word at `addr` is set by another process, and returns its value.
fn wait_nonzero(addr: usize) -> Result<u32, String> {
    for _ in 0..20000 {
        let v = sys::read_u32(addr);
        if v != 0 {
            return Ok(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(format!("word at {:#x} never set", addr))
}

/// A child that owns `word` with `bits` (the TID is set by the child), and dies when told to,
/// while `n` waiters sleep on the word. Returns the number of waiters the death woke and the
/// final value of the word.
fn death_wakes(l: &List, word: usize, bits: u32, n: usize) -> Result<(usize, u32), String> {
    let go = l.mem.at(l.mem.len - 4);
    sys::write_u32(go, 0);
    let head = l.head();
    let pid = sys::fork_with(|| {
        let tid = sys::gettid();
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 2;
        }
        sys::write_u32(word, tid | bits);
        while sys::read_u32(go) == 0 {
            let _ = sys::futex_wait(go, 0, std::time::Duration::from_secs(1));
        }
        0
    });
    let v = wait_nonzero(word)?;
    let waiters = Waiters::start(word, v, n)?;
    sys::write_u32(go, 1);
    let _ = sys::futex_wake(go, 1);
    ensure!(exited_ok(sys::wait_pid(pid)), "child failed");
    let after = sys::read_u32(word);
    Ok((waiters.woken_before()?, after))
}

/// One waiter, and only one, is woken for a dead owner with FUTEX_WAITERS.
fn list_wakes_one_waiter(_: &Ctx) -> R {
    let l = List::new(4096);
    let e = l.entry(0);
    l.link(&[e], 8, 0);
    let (woken, after) = death_wakes(&l, e + 8, FUTEX_WAITERS, 3)?;
    ensure_eq!(after, FUTEX_OWNER_DIED | FUTEX_WAITERS);
    ensure_eq!(woken, 1);
    Ok(())
}

/// A PI entry gets OWNER_DIED but no plain futex wakeup (PI waiters are handled by the PI code).
fn list_pi_no_wake(_: &Ctx) -> R {
    let l = List::new(4096);
    let e = l.entry(0);
    l.link(&[e | 1], 8, 0);
    let (woken, after) = death_wakes(&l, e + 8, FUTEX_WAITERS, 2)?;
    ensure_eq!(after, FUTEX_OWNER_DIED | FUTEX_WAITERS);
    ensure_eq!(woken, 0);
    Ok(())
}

fn list_offset(offset: isize) -> R {
    let l = List::new(3 * 4096);
    let (a, b) = (l.entry(10), l.entry(11));
    let (wa, wb) = (a.wrapping_add_signed(offset), b.wrapping_add_signed(offset));
    l.link(&[a, b], offset, 0);
    ensure!(
        exited_ok(process_dies(l.head(), &[(wa, 0), (wb, FUTEX_WAITERS)])),
        "child failed"
    );
    ensure_eq!(sys::read_u32(wa), FUTEX_OWNER_DIED);
    ensure_eq!(sys::read_u32(wb), FUTEX_OWNER_DIED | FUTEX_WAITERS);
    Ok(())
}

fn list_positive_offset(_: &Ctx) -> R {
    list_offset(0x1000 + 0x18)
}

fn list_negative_offset(_: &Ctx) -> R {
    list_offset(-0x20)
}

/// A circular list that never returns to the head ends after ROBUST_LIST_LIMIT entries, and
/// the pending entry is still handled.
fn list_cycle(_: &Ctx) -> R {
    let l = List::new(4096);
    let (a, b, p) = (l.entry(0), l.entry(1), l.entry(2));
    l.link(&[a, b], 8, p);
    sys::write_usize(b, a); // b -> a, not back to the head
    let st = process_dies(l.head(), &[(a + 8, 0), (b + 8, 0), (p + 8, 0)]);
    ensure!(exited_ok(st), "child status {:#x}", st);
    ensure_eq!(sys::read_u32(a + 8), FUTEX_OWNER_DIED);
    ensure_eq!(sys::read_u32(b + 8), FUTEX_OWNER_DIED);
    ensure_eq!(sys::read_u32(p + 8), FUTEX_OWNER_DIED);
    Ok(())
}

/// A list of `n` owned entries and an owned pending entry: returns how many list entries, from
/// the first, got OWNER_DIED, and whether the pending one did.
fn list_limit(n: usize) -> Result<(usize, bool), String> {
    let l = List::new(0x100 + 0x40 * (n + 2));
    let entries: Vec<usize> = (0..n).map(|i| l.entry(i)).collect();
    let pending = l.entry(n);
    l.link(&entries, 8, pending);
    let mut owned: Vec<(usize, u32)> = entries.iter().map(|e| (e + 8, 0)).collect();
    owned.push((pending + 8, 0));
    ensure!(exited_ok(process_dies(l.head(), &owned)), "child failed");
    let died = |w: usize| sys::read_u32(w) == FUTEX_OWNER_DIED;
    let handled = entries.iter().take_while(|e| died(*e + 8)).count();
    ensure!(
        entries[handled..].iter().all(|e| !died(e + 8)),
        "entries after the first unhandled one were handled"
    );
    Ok((handled, died(pending + 8)))
}

fn list_limit_2048(_: &Ctx) -> R {
    ensure_eq!(list_limit(ROBUST_LIST_LIMIT)?, (ROBUST_LIST_LIMIT, true));
    Ok(())
}

fn list_limit_2049(_: &Ctx) -> R {
    ensure_eq!(
        list_limit(ROBUST_LIST_LIMIT + 1)?,
        (ROBUST_LIST_LIMIT, true)
    );
    Ok(())
}

/// An entry whose next pointer is unmapped is handled; then the walk stops: neither the
/// pending entry nor anything else is.
fn list_unmapped_next(_: &Ctx) -> R {
    let l = List::new(4096);
    let (a, p) = (l.entry(0), l.entry(1));
    let hole = Shared::new(4096);
    let unmapped = hole.base;
    drop(hole);
    l.link(&[a], 8, p);
    sys::write_usize(a, unmapped);
    ensure!(
        exited_ok(process_dies(l.head(), &[(a + 8, 0), (p + 8, 0)])),
        "child failed"
    );
    ensure_eq!(sys::read_u32(a + 8), FUTEX_OWNER_DIED);
    ensure!(
        sys::read_u32(p + 8) & FUTEX_OWNER_DIED == 0,
        "pending entry was handled"
    );
    Ok(())
}

/// An unaligned futex word is not touched, and ends the walk.
fn list_unaligned_word(_: &Ctx) -> R {
    let l = List::new(4096);
    let (a, b, p) = (l.entry(0) + 2, l.entry(1), l.entry(2));
    l.link(&[a, b], 8, p);
    // a + 8 is only 2-aligned; the child stores its TID there all the same.
    let st = process_dies(l.head(), &[(a + 8, 0), (b + 8, 0), (p + 8, 0)]);
    ensure!(exited_ok(st), "child failed");
    // SAFETY: inside the mapping; an unaligned read of the unaligned word.
    let raw = unsafe { std::ptr::read_unaligned((a + 8) as *const u32) };
    ensure!(
        raw != 0 && raw & FUTEX_OWNER_DIED == 0,
        "unaligned word: {:#x}",
        raw
    );
    ensure!(
        sys::read_u32(b + 8) & FUTEX_OWNER_DIED == 0,
        "entry after the unaligned one handled"
    );
    ensure!(
        sys::read_u32(p + 8) & FUTEX_OWNER_DIED == 0,
        "pending handled after unaligned word"
    );
    Ok(())
}

/// An owned word the dying task cannot write is left as it is, and ends the walk.
fn list_readonly_word(_: &Ctx) -> R {
    let l = List::new(2 * 4096);
    let ro = l.mem.at(4096);
    let (a, b) = (l.entry(0), l.entry(1));
    l.link(&[a, b], (ro - a) as isize, 0);
    // a's word is `ro`, b's word is ro + 0x40; the child makes that page read-only for itself.
    let head = l.head();
    let pid = sys::fork_with(|| {
        let tid = sys::gettid();
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 2;
        }
        sys::write_u32(ro, tid);
        sys::write_u32(ro + 0x40, tid);
        // SAFETY: changes the protection of the child's own view of one page.
        if unsafe { libc::mprotect(ro as *mut _, 4096, libc::PROT_READ) } != 0 {
            return 3;
        }
        0
    });
    ensure!(exited_ok(sys::wait_pid(pid)), "child failed");
    ensure!(
        sys::read_u32(ro) & FUTEX_OWNER_DIED == 0,
        "read-only word written"
    );
    ensure!(
        sys::read_u32(ro + 0x40) & FUTEX_OWNER_DIED == 0,
        "walk went on after a fault"
    );
    Ok(())
}

/// A head in unmapped memory: the walk does nothing, and the task exits normally.
fn list_unmapped_head(_: &Ctx) -> R {
    let hole = Shared::new(4096);
    let unmapped = hole.base;
    drop(hole);
    let st = process_dies(unmapped, &[]);
    ensure!(exited_ok(st), "child status {:#x}", st);
    Ok(())
}

/// An unlocked word on the list (not pending) gets no wakeup.
fn list_entry_unlocked_no_wake(_: &Ctx) -> R {
    let l = List::new(4096);
    let (a, b) = (l.entry(0), l.entry(1));
    l.link(&[a, b], 8, 0);
    // b is owned by the child only to synchronise; a stays 0 while a waiter sleeps on it.
    let waiters = Waiters::start(a + 8, 0, 1)?;
    ensure!(
        exited_ok(process_dies(l.head(), &[(b + 8, 0)])),
        "child failed"
    );
    ensure_eq!(sys::read_u32(a + 8), 0);
    ensure_eq!(waiters.woken_before()?, 0);
    Ok(())
}

/// The pending-op special cases of handle_futex_death(): (word, PI) -> expected wakeups.
fn pending_case(word: u32, pi: bool, expect_woken: usize) -> R {
    let l = List::new(4096);
    let p = l.entry(0);
    l.link(&[], 8, p | pi as usize);
    sys::write_u32(p + 8, word);
    let waiters = Waiters::start(p + 8, word, 1)?;
    ensure!(exited_ok(process_dies(l.head(), &[])), "child failed");
    ensure_eq!(sys::read_u32(p + 8), word);
    ensure_eq!(waiters.woken_before()?, expect_woken);
    Ok(())
}

fn pending_unlocked_wakes(_: &Ctx) -> R {
    pending_case(0, false, 1)
}

/// 7.3 (as Debian's 6.12 did) also wakes for a pending word owned by another thread without
/// WAITERS.
fn pending_other_owner_wakes(_: &Ctx) -> R {
    pending_case(OTHER_TID, false, 1)
}

fn pending_other_owner_waiters_no_wake(_: &Ctx) -> R {
    pending_case(OTHER_TID | FUTEX_WAITERS, false, 0)
}

fn pending_pi_unlocked_no_wake(_: &Ctx) -> R {
    pending_case(0, true, 0)
}

/// exec() walks the robust list of the old image.
fn exec_walks_list(_: &Ctx) -> R {
    let l = List::new(4096);
    let (a, p) = (l.entry(0), l.entry(1));
    l.link(&[a], 8, p);
    let pid = process_execs(l.head(), &[(a + 8, FUTEX_WAITERS), (p + 8, 0)]);
    let mut ok = false;
    for _ in 0..5000 {
        if sys::read_u32(a + 8) == FUTEX_OWNER_DIED | FUTEX_WAITERS
            && sys::read_u32(p + 8) == FUTEX_OWNER_DIED
        {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The list must have been walked while the process still lives (in /bin/sleep).
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    // SAFETY: ends the sleeping child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    sys::wait_pid(pid);
    ensure!(alive, "the exec'ed process is gone");
    ensure!(
        ok,
        "words after exec: {:#x} {:#x}",
        sys::read_u32(a + 8),
        sys::read_u32(p + 8)
    );
    Ok(())
}

/// A thread's exit walks its list while its process lives on.
fn thread_exit_walks_list(_: &Ctx) -> R {
    let l = List::new(4096);
    let a = l.entry(0);
    l.link(&[a], 8, 0);
    let head = l.head();
    let t = std::thread::spawn(move || {
        sys::set_robust_list(head, HEAD_LEN).map_err(|e| e.to_string())?;
        sys::write_u32(a + 8, sys::gettid() | FUTEX_WAITERS);
        Ok::<(), String>(())
    });
    t.join().map_err(|_| "thread panicked".to_string())??;
    // The kernel walked the list before the thread's clear_child_tid wake that join waits on.
    ensure_eq!(sys::read_u32(a + 8), FUTEX_OWNER_DIED | FUTEX_WAITERS);
    Ok(())
}

pub fn run_compat32(ctx: &Ctx, args: &[&str]) -> R {
    let out = std::process::Command::new(&ctx.compat32)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {}", ctx.compat32, e))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("# compat32: {}", line);
    }
    ensure!(
        out.status.success(),
        "{} {:?}: {}",
        ctx.compat32,
        args,
        out.status
    );
    Ok(())
}

/// A 32-bit process's compat robust list is walked (by the module's compat walker with the
/// module loaded).
fn compat32_list(ctx: &Ctx) -> R {
    compat32_walked(ctx, "list", 1)
}

/// Runs `compat32 MODE`; with the module, its compat walker must have walked at least `deaths`
/// exits meanwhile.
fn compat32_walked(ctx: &Ctx, mode: &str, deaths: u64) -> R {
    let before = match ctx.walker {
        Walker::Rust => Some(counter("compat_exit_walks")?),
        Walker::C => None,
    };
    run_compat32(ctx, &[mode])?;
    if let Some(before) = before {
        let after = counter("compat_exit_walks")?;
        ensure!(
            after >= before + deaths,
            "compat_exit_walks: {} -> {}, want {} more",
            before,
            after,
            deaths
        );
    }
    Ok(())
}

/// 32-bit glibc robust mutexes (threads and processes, shared memory, PI, waiters): every
/// owner's death is seen, under either walker; with the module, its compat walker did it.
fn compat32_glibc(ctx: &Ctx) -> R {
    // Two threads and four processes die with a compat robust list.
    compat32_walked(ctx, "glibc", 6)
}

/// The i386 entry of cleanup_robust_list validates like the native one, and dispatches.
fn compat32_syscall(ctx: &Ctx) -> R {
    let walker = match ctx.walker {
        Walker::C => "c",
        Walker::Rust => "rust",
    };
    run_compat32(ctx, &["syscall", walker])
}

/// Bad arguments are rejected before anything else, with or without an implementation.
/// Bad input, one class per row, with the module loaded and without: the errno each call must
/// fail with (without the module, what the entry validates fails the same way, and a range that
/// passes it gets ENOSYS). Holders in another process and in a thread of this one keep
/// `list_op_pending` slots pointing into the memory the calls name: none may change.
fn cleanup_bad_input(ctx: &Ctx) -> R {
    use libc::{EACCES, EFAULT, EINVAL, ENOSYS};
    let page = 4096;
    // Mapped first: a page mapped after the holes are made could land in one.
    let ctl = crate::holder::Control::new();
    // [0] RW shared, [1] PROT_NONE, [2] read-only, [3] unmapped, [4] exec-only, [5] RW private,
    // [6] RW shared (another mapping, adjacent to [5], which it cannot merge with), [7] unmapped.
    let base = sys::private_anon(8 * page);
    // SAFETY: remaps and protects parts of our own mapping.
    unsafe {
        let p = libc::mmap(
            base as *mut _,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
        ensure!(p as usize == base, "mmap");
        ensure!(
            libc::mprotect((base + page) as *mut _, page, libc::PROT_NONE) == 0,
            "mprotect"
        );
        ensure!(
            libc::mprotect((base + 2 * page) as *mut _, page, libc::PROT_READ) == 0,
            "mprotect"
        );
        ensure!(
            libc::munmap((base + 3 * page) as *mut _, page) == 0,
            "munmap"
        );
        ensure!(
            libc::mprotect((base + 4 * page) as *mut _, page, libc::PROT_EXEC) == 0,
            "mprotect"
        );
        let q = libc::mmap(
            (base + 6 * page) as *mut _,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
        ensure!(q as usize == base + 6 * page, "mmap");
        ensure!(
            libc::munmap((base + 7 * page) as *mut _, page) == 0,
            "munmap"
        );
    }
    let at = |pg: usize, off: usize| base + pg * page + off;
    // (class, addr, len, flags, errno with the module, errno without it)
    let rows: &[(&str, usize, usize, u32, i32, i32)] = &[
        ("flags 2 (unknown)", at(0, 0x100), 4, 2, EINVAL, EINVAL),
        ("flags MM_ONLY | 2", at(0, 0x100), 4, 3, EINVAL, EINVAL),
        ("flags bit 31", at(0, 0x100), 4, 0x8000_0000, EINVAL, EINVAL),
        ("addr misaligned by 2", at(0, 0x102), 4, 0, EINVAL, EINVAL),
        ("addr misaligned by 1", at(0, 0x101), 4, 0, EINVAL, EINVAL),
        ("len 0", at(0, 0x100), 0, 0, EINVAL, EINVAL),
        ("len 2", at(0, 0x100), 2, 0, EINVAL, EINVAL),
        ("len 6", at(0, 0x100), 6, 0, EINVAL, EINVAL),
        (
            "kernel address",
            0xffff_8880_0000_0000,
            4,
            0,
            EFAULT,
            EFAULT,
        ),
        (
            "non-canonical address",
            0x8000_0000_0000,
            4,
            0,
            EFAULT,
            EFAULT,
        ),
        (
            "len wraps",
            at(0, 0x100),
            usize::MAX & !3,
            0,
            EFAULT,
            EFAULT,
        ),
        (
            "ends above user space",
            0x7fff_ffff_f000,
            0x2000,
            0,
            EFAULT,
            EFAULT,
        ),
        ("NULL page", 0, 4, 0, EFAULT, ENOSYS),
        ("PROT_NONE", at(1, 0x100), 4, 0, EFAULT, ENOSYS),
        ("read-only", at(2, 0x100), 4, 0, EACCES, ENOSYS),
        ("unmapped hole", at(3, 0x100), 4, 0, EFAULT, ENOSYS),
        ("exec-only", at(4, 0x100), 4, 0, EACCES, ENOSYS),
        // Ranges over several mappings: valid unless part is a hole or PROT_NONE (EFAULT,
        // wherever it lies, before EACCES), or read-only; then nothing at all is done.
        (
            "mapping then PROT_NONE",
            at(0, page - 4),
            8,
            0,
            EFAULT,
            ENOSYS,
        ),
        ("read-only then hole", at(2, page - 4), 8, 0, EFAULT, ENOSYS),
        (
            "PROT_NONE then read-only",
            at(1, page - 4),
            8,
            0,
            EFAULT,
            ENOSYS,
        ),
        (
            "exec-only then writable",
            at(4, page - 4),
            8,
            0,
            EACCES,
            ENOSYS,
        ),
        (
            "two writable mappings then hole",
            at(5, 0),
            3 * page,
            0,
            EFAULT,
            ENOSYS,
        ),
    ];
    // Holders whose slots point at words the rows name.
    let words = [at(0, 0x100), at(5, page - 4)];
    let pid = crate::holder::fork_holder(&ctl, 0, false, || words[0]);
    ctl.prepare(1, words[1], false);
    let r = std::thread::scope(|s| -> R {
        let holder = s.spawn(|| ctl.hold(1, &[]));
        let r = (|| -> R {
            ctl.wait_ready(0)?;
            ctl.wait_ready(1)?;
            let before = [sys::read_usize(ctl.slot(0)), sys::read_usize(ctl.slot(1))];
            let module = ctx.walker == Walker::Rust;
            let mut wrong = Vec::new();
            for &(class, addr, len, flags, with, without) in rows {
                let want = if module { with } else { without };
                let got = cleanup_robust_list(addr, len, flags);
                if got.as_ref().err().and_then(|e| e.raw_os_error()) != Some(want) {
                    wrong.push(format!("{}: {:?}, want errno {}", class, got, want));
                }
            }
            ensure!(wrong.is_empty(), "{}", wrong.join("; "));
            ensure!(rows.len() >= 15, "{} classes", rows.len());
            let after = [sys::read_usize(ctl.slot(0)), sys::read_usize(ctl.slot(1))];
            ensure_eq!(after, before);
            ensure!(before.iter().all(|&v| v != 0), "holders' slots not set");
            Ok(())
        })();
        ctl.release();
        holder
            .join()
            .map_err(|_| "holder thread panicked".to_string())?;
        r
    });
    ensure!(exited_ok(sys::wait_pid(pid)), "holder process failed");
    r
}

/// Without the module, valid arguments give ENOSYS.
fn cleanup_enosys(_: &Ctx) -> R {
    let m = Shared::new(4096);
    let r = cleanup_robust_list(m.base, 4, 0);
    ensure_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::ENOSYS));
    Ok(())
}
