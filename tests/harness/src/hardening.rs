//! Regression tests for five bugs of the module, each a case that fails on the module as it was:
//!
//! - `hardening_compat_head_leaves_index_last`: a task with a native and a compat head left the
//!   index after its native walk, before its compat walk, so that a call made in between missed
//!   the compat `list_op_pending` the walk then acted on;
//! - `hardening_index_leak_robust_unlock_error`: the merged `FUTEX_ROBUST_UNLOCK` drops the
//!   task's head without `set_robust_list()` when it cannot clear `list_op_pending`, and the
//!   index kept such tasks forever;
//! - `hardening_calls_during_load` (`robust-harness calls-during-load`, module unloaded): the
//!   call was live during `insmod` before the module had filed the tasks registered before it,
//!   and returned success having missed them;
//! - `hardening_mayshare_readonly_mapping`: a `MAP_SHARED` mapping of a file opened read-only
//!   (`VM_MAYSHARE` without `VM_SHARED`) was taken for private memory, where `get_futex_key()`
//!   sees the shared file;
//! - `hardening_stuck_call_blocks_nobody`: heads were read under the index's one mutex, so one
//!   call whose read sleeps blocked every `set_robust_list()`, thread start and exit of the
//!   system.
//!
//! And four more:
//!
//! - `hardening_fork_during_clear_child_untouched`: the slot was cleared through a page pinned
//!   with `FOLL_GET`, written after the `mmap_lock` was dropped, so a `fork()` in between made
//!   the page copy-on-write shared and the clear landed in the child's copy (a race: the case
//!   makes the window as likely as it can, and may pass on a broken module);
//! - `hardening_remapped_word_not_cleared`: a slot whose word is no longer the memory being
//!   cleaned (another memfd, or another page of the same one, mapped at its address) is left
//!   alone; once the memory is mapped there again, it is cleared;
//! - `hardening_many_processes_one_memfd` (`robust-harness many-mappers COUNT` for more): one
//!   call clears the slots of hundreds (thousands) of processes mapping one memfd;
//! - `hardening_unaligned_head`: a head that is not naturally aligned, which the exit walk
//!   handles: the expectation for its slot is [`UNALIGNED_SLOT_CLEARED`].

use crate::cases::counter;
use crate::holder::{fork_holder, pending_for, Control, OFFSET};
use crate::list::HEAD_LEN;
use crate::stepped::FUTEX_ROBUST_UNLOCK;
use crate::sys::{self, *};
use crate::Ctx;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type R = Result<(), String>;

/// What turns a hang into a failure: far more than anything here takes under TCG.
const LIMIT: Duration = Duration::from_secs(30);

const PAGE: usize = 4096;

fn errno(r: &std::io::Result<i64>) -> Option<i32> {
    r.as_ref().err().and_then(|e| e.raw_os_error())
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cleanup(addr: usize, len: usize) -> Result<i64, String> {
    cleanup_robust_list(addr, len, 0).map_err(|e| format!("cleanup_robust_list: {}", e))
}

fn indexed() -> Result<i64, String> {
    counter("index_tasks").map(|n| n as i64)
}

fn kill(pid: libc::pid_t) -> R {
    // SAFETY: signals a child of this case.
    ensure!(
        unsafe { libc::kill(pid, libc::SIGKILL) } == 0,
        "kill({}): {}",
        pid,
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Kills and reaps a child on a failure path (errors ignored: the failure is reported already).
fn kill_and_reap(pid: libc::pid_t) {
    let _ = kill(pid);
    let _ = sys::wait_pid_timeout(pid, LIMIT);
}

// ---------------------------------------------------------------------------------------------
// hardening_compat_head_leaves_index_last

/// The memfd of `compat_head_leaves_index_last`: the holder maps it below 2 GiB (`MAP_32BIT`),
/// so that its compat head, list and words have 32-bit addresses; the test maps it anywhere.
const C_LEN: usize = 0x6000;
/// The compat head: `u32 next`, `i32 futex_offset`, `u32 list_op_pending`.
const C_COMPAT_HEAD: usize = 0x0;
/// `sizeof(struct compat_robust_list_head)`.
const C_COMPAT_HEAD_LEN: u32 = 12;
/// The native head: an empty list, `list_op_pending` on N.
const C_NATIVE_HEAD: usize = 0x40;
/// W, the word of the compat `list_op_pending`: the word the calls name.
const C_W: usize = 0x100;
/// N, the word of the native `list_op_pending`: the native walk handles it last.
const C_N: usize = 0x140;
/// The holder's TID once both heads are registered.
const C_READY: usize = 0x200;
/// The setup step that failed in the child, and its errno.
const C_FAILED: usize = 0x204;
const C_ERRNO: usize = 0x208;
/// Never set: the holder sleeps on it until it is killed.
const C_SLEEP: usize = 0x20c;
/// The compat list: `C_COUNT` entries of 8 bytes, a `next` pointer and a word (0, unowned).
const C_ENTRIES: usize = 0x1000;
const C_COUNT: usize = 2000;
/// The compat `futex_offset`: an entry's word follows its `next` pointer.
const C_OFFSET: u32 = 4;
const C_ROUNDS: usize = 30;

fn compat_step(step: u32) -> &'static str {
    match step {
        1 => "mmap(MAP_SHARED | MAP_32BIT) of the memfd below 4 GiB",
        2 => "set_robust_list() (native head)",
        3 => "set_robust_list() through int $0x80 (compat head)",
        4 => "sched_setaffinity() to another CPU than the test's",
        _ => "the holder thread panicked",
    }
}

/// The holder, a thread of a forked child: `p` is the child's mapping of the memfd, below 4 GiB.
/// Builds both heads, stores its TID in W and N (so that each walk finds its pending word owned
/// by it), registers the native head and, through the i386 entry, the compat one, publishes its
/// TID and sleeps until it is killed. Runs on `cpu`, if given. Returns only if a step fails:
/// the step and its errno.
fn compat_holder(p: usize, cpu: Option<usize>) -> (u32, i32) {
    if let Some(Err(e)) = cpu.map(sys::pin_to_cpu) {
        return (4, e.raw_os_error().unwrap_or(0));
    }
    let tid = sys::gettid();
    let at = |off: usize| p + off;
    let head = at(C_COMPAT_HEAD);
    for i in 0..C_COUNT {
        let e = at(C_ENTRIES + 8 * i);
        let next = if i + 1 < C_COUNT { e + 8 } else { head };
        sys::write_u32(e, next as u32);
        sys::write_u32(e + C_OFFSET as usize, 0);
    }
    sys::write_u32(head, at(C_ENTRIES) as u32);
    sys::write_u32(head + 4, C_OFFSET);
    sys::write_u32(head + 8, (at(C_W) - C_OFFSET as usize) as u32);
    let native = at(C_NATIVE_HEAD);
    sys::write_usize(native, native);
    sys::write_usize(native + 8, OFFSET as usize);
    sys::write_usize(native + 16, pending_for(at(C_N)));
    sys::write_u32(at(C_W), tid);
    sys::write_u32(at(C_N), tid);
    if let Err(e) = sys::set_robust_list(native, HEAD_LEN) {
        return (2, e.raw_os_error().unwrap_or(0));
    }
    let r = sys::compat_set_robust_list(head as u32, C_COMPAT_HEAD_LEN);
    if r != 0 {
        return (3, -r);
    }
    sys::write_u32(at(C_READY), tid);
    loop {
        let _ = sys::futex_wait(at(C_SLEEP), 0, Duration::from_secs(1));
    }
}

/// Waits for the holder of a round to be ready; returns its TID.
fn compat_wait_ready(mine: usize) -> Result<u32, String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let tid = sys::read_u32(mine + C_READY);
        if tid != 0 {
            return Ok(tid);
        }
        let step = sys::read_u32(mine + C_FAILED);
        if step != 0 {
            let e = std::io::Error::from_raw_os_error(sys::read_u32(mine + C_ERRNO) as i32);
            return Err(format!("holder setup failed: {}: {}", compat_step(step), e));
        }
        ensure!(Instant::now() < deadline, "the holder never got ready");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the calls of one round saw.
#[derive(Default)]
struct Seen {
    calls: usize,
    /// Slots the calls reported cleared.
    cleared: i64,
    /// A call returned and W, read right after it, still held the holder's TID.
    returned_before_walk: bool,
    /// The child's wait status, if it was reaped while calling.
    status: Option<i32>,
}

/// Calls on W (through `w`, the test's own mapping) from the end of the native walk on: first
/// waits for the native walk to mark N (it handles its pending entry last), then calls again and
/// again, reading W after each return, until W changed, or the child was reaped and one last
/// call was made.
fn compat_calls(pid: libc::pid_t, tid: u32, w: usize, n: usize) -> Result<Seen, String> {
    let deadline = Instant::now() + LIMIT;
    let mut spins = 0u32;
    while sys::read_u32(n) == tid {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) {
            ensure!(
                Instant::now() < deadline,
                "N still {:#x} {:?} after SIGKILL: the native exit walk never marked its pending word",
                tid,
                LIMIT
            );
        }
    }
    let mut seen = Seen::default();
    let mut reaped = false;
    loop {
        let r = cleanup(w, 4)?;
        seen.calls += 1;
        seen.cleared += r;
        if sys::read_u32(w) != tid {
            break;
        }
        seen.returned_before_walk = true;
        if reaped {
            break;
        }
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        ensure!(got >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if got == pid {
            seen.status = Some(status);
            reaped = true;
        }
    }
    Ok(seen)
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A call cleared the compat slot before the compat walk read it: W never changed.
    Cleared,
    /// The walk marked W before the first call returned (or no call was made).
    Walked,
    /// A call returned while W still held the TID, and the walk marked W afterwards.
    Violation,
}

/// One round: a child whose holder thread (on `cpu`, if given) has both heads is killed; if
/// `calls`, the test calls on W from the end of the native walk on. Returns what became of W.
fn compat_round(
    fd: i32,
    mine: usize,
    cpu: Option<usize>,
    calls: bool,
) -> Result<(Outcome, usize), String> {
    for off in [C_READY, C_FAILED, C_ERRNO, C_W, C_N] {
        sys::write_u32(mine + off, 0);
    }
    let pid = sys::fork_with(|| {
        let fail = |step: u32, e: i32| {
            sys::write_u32(mine + C_ERRNO, e as u32);
            sys::write_u32(mine + C_FAILED, step);
            1
        };
        let flags = libc::MAP_SHARED | libc::MAP_32BIT;
        let p = match sys::mmap(0, C_LEN, libc::PROT_READ | libc::PROT_WRITE, flags, fd) {
            Ok(p) if p + C_LEN <= 1 << 32 => p,
            Ok(_) => return fail(1, libc::ENOMEM),
            Err(e) => return fail(1, e.raw_os_error().unwrap_or(0)),
        };
        match std::thread::spawn(move || compat_holder(p, cpu)).join() {
            Ok((step, e)) => fail(step, e),
            Err(_) => fail(9, 0),
        }
    });
    let (w, n) = (mine + C_W, mine + C_N);
    let tid = match compat_wait_ready(mine) {
        Ok(tid) if (sys::read_u32(w), sys::read_u32(n)) == (tid, tid) => tid,
        Ok(tid) => {
            kill_and_reap(pid);
            return Err(format!(
                "W {:#x}, N {:#x}: not the holder's TID {:#x}",
                sys::read_u32(w),
                sys::read_u32(n),
                tid
            ));
        }
        Err(e) => {
            kill_and_reap(pid);
            return Err(e);
        }
    };
    kill(pid)?;
    let seen = if calls {
        compat_calls(pid, tid, w, n)
    } else {
        Ok(Seen::default())
    };
    let status = match seen.as_ref().ok().and_then(|s| s.status) {
        Some(st) => Some(st),
        None => sys::wait_pid_timeout(pid, LIMIT),
    };
    ensure!(
        status.is_some(),
        "the holder process was not reaped {:?} after SIGKILL",
        LIMIT
    );
    let seen = seen?;
    // Both walks are over: every thread of the child has exited.
    let (wv, nv) = (sys::read_u32(w), sys::read_u32(n));
    ensure!(
        nv == FUTEX_OWNER_DIED,
        "N after the holder's death: {:#x}, want FUTEX_OWNER_DIED (the native walk did not mark it)",
        nv
    );
    let outcome = if wv != tid && seen.returned_before_walk {
        Outcome::Violation
    } else if wv != tid {
        ensure!(
            wv == FUTEX_OWNER_DIED,
            "W after the holder's death: {:#x}, want {:#x} or FUTEX_OWNER_DIED",
            wv,
            tid
        );
        Outcome::Walked
    } else {
        ensure!(
            seen.cleared > 0,
            "W still {:#x} after the holder's death, and no call cleared its slot ({} calls, all \
             returned 0): the compat walk did not handle its pending entry",
            wv,
            seen.calls
        );
        Outcome::Cleared
    };
    Ok((outcome, seen.calls))
}

/// A 64-bit thread with a native head and a compat head (registered through the i386 entry,
/// `int $0x80`), both pending on an owned word in a memfd: N for the native one, W for the compat
/// one. Its exit walks the native list, then the compat one (`futex_cleanup()`); the compat list
/// is 2,000 entries long, so that its walk lasts. The test kills the holder's process, waits for
/// the native walk to mark N (its last step), and from then on calls cleanup_robust_list() on W
/// (through its own mapping) again and again, reading W after each return. A call that returns
/// while W still holds the TID must have cleared the compat slot, or the walk be over: if the
/// walk marks W after such a return, a pending operation outlived the call that had to forget
/// it. That was the bug: the task left the index after its native walk, so a call made during
/// the compat walk found no candidate, returned 0 at once, and the walk marked W afterwards.
///
/// Waiting for N rather than calling right after the kill is deliberate: a call that comes
/// before the exit clears the compat slot and leaves nothing to test. The test and the holder
/// run on two different CPUs: otherwise the killed holder tends to run its whole exit on the
/// test's CPU (woken there by the kill), and the test sees N and W change at once (on a 2-CPU
/// host, the gap between them was seen in 1 of 30 rounds unpinned, 28 of 30 pinned). A first
/// round without calls checks that the compat walk of a 64-bit task marks W at all. 30 rounds;
/// the outcomes are reported in a `#` line.
pub fn compat_head_leaves_index_last(_: &Ctx) -> R {
    let fd = crate::cleanup::memfd(C_LEN);
    let mine = crate::cleanup::map_fd(fd, C_LEN, libc::MAP_SHARED);
    let cpus = sys::allowed_cpus().map_err(|e| format!("sched_getaffinity: {}", e))?;
    let holder_cpu = match cpus[..] {
        [test_cpu, other, ..] => {
            sys::pin_to_cpu(test_cpu).map_err(|e| format!("sched_setaffinity: {}", e))?;
            Some(other)
        }
        _ => {
            println!(
                "# hardening_compat_head_leaves_index_last: one CPU: test and holder share it"
            );
            None
        }
    };
    let (control, _) =
        compat_round(fd, mine, holder_cpu, false).map_err(|e| format!("control round: {}", e))?;
    ensure!(
        control == Outcome::Walked,
        "control round (no call): {:?}",
        control
    );
    let (mut cleared, mut walked, mut violations, mut calls) = (0, 0, 0, 0);
    for round in 0..C_ROUNDS {
        let (outcome, n) = compat_round(fd, mine, holder_cpu, true)
            .map_err(|e| format!("round {}: {}", round, e))?;
        calls += n;
        match outcome {
            Outcome::Cleared => cleared += 1,
            Outcome::Walked => walked += 1,
            Outcome::Violation => violations += 1,
        }
    }
    println!(
        "# hardening_compat_head_leaves_index_last: {} rounds: {} with the compat slot cleared \
         by a call, {} with W marked before a call returned, {} with W marked after a call \
         returned; {} calls",
        C_ROUNDS, cleared, walked, violations, calls
    );
    ensure!(
        violations == 0,
        "in {} of {} rounds a call returned while W still held the holder's TID, and the compat \
         exit walk marked W (FUTEX_OWNER_DIED) afterwards",
        violations,
        C_ROUNDS
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hardening_index_leak_robust_unlock_error

/// Threads run with `FUTEX_WAKE | FUTEX_ROBUST_UNLOCK`: at least the minimum, then more up to
/// the maximum while within the budget.
const LEAK_WAKE_MIN: usize = 2_000;
const LEAK_WAKE_MAX: usize = 10_000;
const LEAK_WAKE_BUDGET: Duration = Duration::from_secs(20);
/// Threads run with `FUTEX_UNLOCK_PI | FUTEX_ROBUST_UNLOCK`.
const LEAK_PI: usize = 300;
/// Threads alive at a time.
const LEAK_BATCH: usize = 8;
/// How long index_tasks may take to come back after the last join.
const LEAK_SETTLE: Duration = Duration::from_secs(5);

/// One thread: registers a head of its own (an empty list, `list_op_pending` on a word it owns,
/// as before an unlock) in a page it then makes read-only, and unlocks the word with `op`
/// (`FUTEX_ROBUST_UNLOCK` with `uaddr2 = &head->list_op_pending`). The kernel stores 0 in the
/// word, fails to store 0 in the slot, and, the slot being the current head's, sets the task's
/// `robust_list` to NULL (`robust_list_clear_pending()`); the call fails with `EFAULT`
/// (`futex_wake()`, `futex_unlock_pi()`). Checks each of those, then exits.
fn robust_unlock_fails(op: i32, name: &str) -> R {
    let m = sys::mmap(
        0,
        2 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    )
    .map_err(|e| format!("mmap: {}", e))?;
    let r = (|| -> R {
        let (head, word) = (m, m + PAGE + 0x100);
        sys::write_usize(head, head);
        sys::write_usize(head + 8, OFFSET as usize);
        sys::write_usize(head + 16, pending_for(word));
        set_robust_list(head, HEAD_LEN).map_err(|e| format!("set_robust_list: {}", e))?;
        sys::write_u32(word, sys::gettid());
        // SAFETY: changes the protection of this thread's own page.
        let r = unsafe { libc::mprotect(head as *mut _, PAGE, libc::PROT_READ) };
        ensure!(r == 0, "mprotect: {}", std::io::Error::last_os_error());
        // SAFETY: a futex call on this thread's own word, with its own slot as `uaddr2`.
        let r = unsafe { libc::syscall(libc::SYS_futex, word, op, 1, 0usize, head + 16, 0) };
        let e = last_errno();
        ensure!(
            r == -1 && e == libc::EFAULT,
            "{} with a read-only list_op_pending returned {} (errno {}), want EFAULT",
            name,
            r,
            e
        );
        ensure!(
            sys::read_u32(word) == 0,
            "{}: the word is {:#x}, not unlocked",
            name,
            sys::read_u32(word)
        );
        let h = sys::get_robust_list().map_err(|e| format!("get_robust_list: {}", e))?;
        ensure!(
            h == 0,
            "{}: the kernel kept the head ({:#x}): not the path under test",
            name,
            h
        );
        Ok(())
    })();
    // SAFETY: unmaps this thread's own mapping.
    unsafe { libc::munmap(m as *mut _, 2 * PAGE) };
    r
}

/// Runs `robust_unlock_fails(op)` in `min` threads, and more up to `max` while within
/// `budget`, `LEAK_BATCH` at a time. Returns how many ran.
fn robust_unlock_threads(
    op: i32,
    name: &'static str,
    min: usize,
    max: usize,
    budget: Duration,
) -> Result<usize, String> {
    let start = Instant::now();
    let mut n = 0;
    while n < max && (n < min || start.elapsed() < budget) {
        let batch: Vec<_> = (0..LEAK_BATCH.min(max - n))
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || robust_unlock_fails(op, name))
            })
            .collect();
        for t in batch {
            let t = t.map_err(|e| format!("thread {}: spawn: {}", n, e))?;
            t.join()
                .map_err(|_| format!("thread {} panicked", n))?
                .map_err(|e| format!("thread {}: {}", n, e))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Waits up to `LEAK_SETTLE` for index_tasks to be `base` again; returns the last count read.
fn settle(base: i64) -> Result<i64, String> {
    let deadline = Instant::now() + LEAK_SETTLE;
    loop {
        let n = indexed()?;
        if n == base || Instant::now() > deadline {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Mainline's merged robust unlock, `futex(FUTEX_WAKE | FUTEX_ROBUST_UNLOCK, uaddr, 1, NULL,
/// &head->list_op_pending)`, sets the task's `robust_list` to NULL when it cannot write 0 to the
/// slot, without `set_robust_list()`: the module is not told, and the exit of such a task runs
/// no walk. The module kept those tasks in its index forever (index_tasks grew by one per
/// thread). Thousands of threads each make the call fail that way (their head's page read-only)
/// and exit; once all are joined, index_tasks must be back where it was. 2,000 threads at least,
/// then more, up to 10,000, while within 20 s (TCG is slow at creating threads; every thread
/// leaked alike, so the count only makes the leak larger). Then 300 threads do the same with
/// `FUTEX_UNLOCK_PI | FUTEX_ROBUST_UNLOCK` on a PI word they own: `futex_unlock_pi()` takes the
/// same path after unlocking.
pub fn index_leak_robust_unlock_error(_: &Ctx) -> R {
    let base = indexed()?;
    let start = Instant::now();
    let wake = robust_unlock_threads(
        libc::FUTEX_WAKE | FUTEX_ROBUST_UNLOCK,
        "FUTEX_WAKE | FUTEX_ROBUST_UNLOCK",
        LEAK_WAKE_MIN,
        LEAK_WAKE_MAX,
        LEAK_WAKE_BUDGET,
    )?;
    let after_wake = settle(base)?;
    let pi = robust_unlock_threads(
        libc::FUTEX_UNLOCK_PI | FUTEX_ROBUST_UNLOCK,
        "FUTEX_UNLOCK_PI | FUTEX_ROBUST_UNLOCK",
        LEAK_PI,
        LEAK_PI,
        Duration::ZERO,
    )?;
    let after_pi = settle(base)?;
    println!(
        "# hardening_index_leak_robust_unlock_error: {} threads with FUTEX_WAKE | \
         FUTEX_ROBUST_UNLOCK, {} with FUTEX_UNLOCK_PI | FUTEX_ROBUST_UNLOCK, in {} ms; \
         index_tasks {} before, {} after the first, {} after the second",
        wake,
        pi,
        start.elapsed().as_millis(),
        base,
        after_wake,
        after_pi
    );
    ensure!(
        after_wake == base && after_pi == base,
        "tasks left in the index after they exited: {} after {} threads with FUTEX_WAKE | \
         FUTEX_ROBUST_UNLOCK, {} more after {} with FUTEX_UNLOCK_PI | FUTEX_ROBUST_UNLOCK \
         (index_tasks {} -> {} -> {})",
        after_wake - base,
        wake,
        after_pi - after_wake,
        pi,
        base,
        after_wake,
        after_pi
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hardening_calls_during_load

const LOAD_NAME: &str = "hardening_calls_during_load";
const LOAD_WHO: [&str; 2] = [
    "holder thread (private memory)",
    "holder process (shared memory)",
];

/// The first call on a word that did not fail with `ENOSYS`.
#[derive(Clone, Copy)]
struct First {
    result: i64,
    /// The holder's slot, read right after the call returned.
    slot: usize,
    /// insmod had returned before the call was made.
    after_insmod: bool,
}

#[derive(Default)]
struct LoadCounts {
    calls: usize,
    enosys: usize,
    during: usize,
    after: usize,
    missed: Vec<String>,
}

/// The caller: calls on both words in a tight loop until each got a result other than
/// `ENOSYS` (the module not loaded yet), and returns those first results.
fn first_results(
    ctl: &Control,
    words: [usize; 2],
    returned: &AtomicBool,
    stop: &AtomicBool,
) -> Result<([First; 2], usize, usize), String> {
    let deadline = Instant::now() + 2 * LIMIT;
    let mut first: [Option<First>; 2] = [None, None];
    let (mut calls, mut enosys) = (0, 0);
    loop {
        for i in 0..2 {
            if first[i].is_some() {
                continue;
            }
            let after_insmod = returned.load(Ordering::SeqCst);
            let r = cleanup_robust_list(words[i], 4, 0);
            calls += 1;
            match r {
                Ok(result) => {
                    let slot = sys::read_usize(ctl.slot(i));
                    first[i] = Some(First {
                        result,
                        slot,
                        after_insmod,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => enosys += 1,
                Err(e) => return Err(format!("{}: cleanup_robust_list: {}", LOAD_WHO[i], e)),
            }
        }
        if let [Some(a), Some(b)] = first {
            return Ok(([a, b], calls, enosys));
        }
        ensure!(!stop.load(Ordering::SeqCst), "insmod failed");
        ensure!(
            Instant::now() < deadline,
            "the call still failed with ENOSYS {:?} into the round (insmod returned: {})",
            2 * LIMIT,
            returned.load(Ordering::SeqCst)
        );
    }
}

/// One round: fresh holders (registered while the module is not loaded), the caller calling,
/// insmod, then rmmod.
fn load_round(
    module: &str,
    round: usize,
    private: usize,
    mem: &Shared,
    counts: &mut LoadCounts,
) -> R {
    let ctl = Control::new();
    let words = [private + 0x100, mem.at(0x200)];
    ctl.prepare(0, words[0], false);
    let returned = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> R {
        let holder = s.spawn(|| ctl.hold(0, &[]));
        let pid = fork_holder(&ctl, 1, false, || words[1]);
        let r = (|| -> R {
            ctl.wait_ready(0)?;
            ctl.wait_ready(1)?;
            ensure!(
                errno(&cleanup_robust_list(words[0], 4, 0)) == Some(libc::ENOSYS),
                "the call does not fail with ENOSYS before insmod: is the module loaded?"
            );
            let caller = s.spawn(|| first_results(&ctl, words, &returned, &stop));
            let loaded = crate::stress::run("insmod", module);
            returned.store(true, Ordering::SeqCst);
            stop.store(loaded.is_err(), Ordering::SeqCst);
            let firsts = caller.join().map_err(|_| "the caller panicked".to_string());
            let unloaded = match loaded {
                Ok(()) => crate::stress::unload().map(|_| ()),
                Err(e) => Err(e),
            };
            // An insmod failure first: the caller then only reports that it stopped.
            unloaded?;
            let (firsts, calls, enosys) = firsts??;
            counts.calls += calls;
            counts.enosys += enosys;
            for (i, f) in firsts.iter().enumerate() {
                if f.after_insmod {
                    counts.after += 1;
                } else {
                    counts.during += 1;
                }
                if f.slot != 0 {
                    counts.missed.push(format!(
                        "round {}, {}: returned {} with the slot still {:#x}",
                        round, LOAD_WHO[i], f.result, f.slot
                    ));
                } else {
                    ensure!(
                        f.result == 1,
                        "round {}, {}: returned {}, want 1 (its slot is clear)",
                        round,
                        LOAD_WHO[i],
                        f.result
                    );
                }
            }
            Ok(())
        })();
        ctl.release();
        holder
            .join()
            .map_err(|_| "the holder thread panicked".to_string())?;
        ensure!(exited_ok(sys::wait_pid(pid)), "the holder process failed");
        r
    })
}

fn calls_during_load_rounds(module: &str, rounds: usize) -> Result<String, String> {
    let private = sys::private_anon(PAGE);
    let mem = Shared::new(PAGE);
    let mut counts = LoadCounts::default();
    for round in 0..rounds {
        load_round(module, round, private, &mem, &mut counts)
            .map_err(|e| format!("round {}: {}", round, e))?;
    }
    let note = format!(
        "{} rounds: the first success on a word came {} times while insmod ran, {} times after \
         it returned; {} calls, {} of them ENOSYS; {} successes missed a slot",
        rounds,
        counts.during,
        counts.after,
        counts.calls,
        counts.enosys,
        counts.missed.len()
    );
    ensure!(
        counts.missed.is_empty(),
        "{}: {}",
        note,
        counts.missed.join("; ")
    );
    Ok(note)
}

/// `robust-harness calls-during-load MODULE.ko ROUNDS`, with the module unloaded: a thread of
/// this process (private memory, so that the caller's mm has other users) and a forked process
/// (shared memory) register heads pending on a word each while the module is not loaded; a
/// caller thread calls cleanup_robust_list() on both words in a tight loop while the main thread
/// runs insmod. `ENOSYS` means "not loaded yet"; the first call on a word that succeeds must
/// have cleared that holder's slot (read right after it returns). The bug: the module
/// registered the call before it filed the tasks already registered, so calls made in between
/// returned 0 and the slots stayed. Then rmmod, and again with new holders, ROUNDS times. Prints
/// a one-test KTAP document with the counts.
pub fn calls_during_load(module: &str, rounds: usize) -> i32 {
    let r = calls_during_load_rounds(module, rounds);
    println!("KTAP version 1");
    println!("1..1");
    match r {
        Ok(note) => {
            println!("# {}: {}", LOAD_NAME, note);
            println!("ok 1 {}", LOAD_NAME);
            0
        }
        Err(e) => {
            println!("# {}: {}", LOAD_NAME, e);
            println!("not ok 1 {}", LOAD_NAME);
            1
        }
    }
}

// ---------------------------------------------------------------------------------------------
// hardening_mayshare_readonly_mapping

/// A file of `len` bytes on /tmp (tmpfs in the guest), already unlinked.
fn tmpfs_file(len: usize) -> Result<i32, String> {
    let path = std::ffi::CString::new(format!("/tmp/robust-hardening-{}", sys::getpid())).unwrap();
    // SAFETY: plain system calls on a path of our own.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        );
        ensure!(
            fd >= 0,
            "open {:?}: {}",
            path,
            std::io::Error::last_os_error()
        );
        libc::unlink(path.as_ptr());
        ensure!(
            libc::ftruncate(fd, len as i64) == 0,
            "ftruncate: {}",
            std::io::Error::last_os_error()
        );
        Ok(fd)
    }
}

/// `fd` opened again, read-only, through /proc/self/fd.
fn reopen_read_only(fd: i32) -> Result<i32, String> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd)).unwrap();
    // SAFETY: opens a path of our own.
    let ro = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    ensure!(
        ro >= 0,
        "open {:?} O_RDONLY: {}",
        path,
        std::io::Error::last_os_error()
    );
    Ok(ro)
}

/// One file: a holder process and a holder thread each map it `MAP_SHARED`, `PROT_READ` from a
/// read-only fd, with `list_op_pending` on a word of that mapping; the test calls on the same
/// word through a writable `MAP_SHARED` mapping: both slots must be cleared.
fn mayshare_one(what: &str, fd: i32) -> R {
    let ro = reopen_read_only(fd)?;
    // The read-only fd cannot be mapped shared and writable: its shared mappings are
    // VM_MAYSHARE without VM_SHARED (and without VM_MAYWRITE).
    let rw_from_ro = sys::mmap(
        0,
        PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        ro,
    );
    ensure!(
        rw_from_ro.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EACCES),
        "{}: a writable MAP_SHARED mapping of the read-only fd: {:?}, want EACCES",
        what,
        rw_from_ro
    );
    let ctl = Control::new();
    let pid = sys::fork_with(
        || match sys::mmap(0, PAGE, libc::PROT_READ, libc::MAP_SHARED, ro) {
            Ok(p) => {
                ctl.prepare(0, p + 0x100, false);
                ctl.hold(0, &[]);
                0
            }
            Err(_) => 2,
        },
    );
    let r = (|| -> R {
        let rw = sys::mmap(
            0,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
        )
        .map_err(|e| format!("{}: mmap: {}", what, e))?;
        let rom = sys::mmap(0, PAGE, libc::PROT_READ, libc::MAP_SHARED, ro)
            .map_err(|e| format!("{}: mmap read-only: {}", what, e))?;
        // The same page through both mappings.
        sys::write_u32(rw + 0x100, 0x5a5a_5a5a);
        ensure_eq!(sys::read_u32(rom + 0x100), 0x5a5a_5a5a);
        sys::write_u32(rw + 0x100, 0);
        ctl.prepare(1, rom + 0x100, false);
        std::thread::scope(|s| -> R {
            let holder = s.spawn(|| ctl.hold(1, &[]));
            let r = (|| -> R {
                ctl.wait_ready(0)
                    .map_err(|e| format!("{}: holder process: {}", what, e))?;
                ctl.wait_ready(1)?;
                let n = cleanup(rw + 0x100, 4)?;
                let slots = [sys::read_usize(ctl.slot(0)), sys::read_usize(ctl.slot(1))];
                ensure!(
                    slots == [0, 0],
                    "{}: returned {}; slot of the holder process mapping it read-only: {:#x}, \
                     of the holder thread mapping it read-only: {:#x} (not 0: not cleared)",
                    what,
                    n,
                    slots[0],
                    slots[1]
                );
                ensure!(n == 2, "{}: returned {}, want 2", what, n);
                Ok(())
            })();
            ctl.release();
            holder
                .join()
                .map_err(|_| "the holder thread panicked".to_string())?;
            r
        })
    })();
    ctl.release();
    let st = sys::wait_pid(pid);
    r?;
    ensure!(exited_ok(st), "{}: holder process status {:#x}", what, st);
    Ok(())
}

/// A `MAP_SHARED` mapping of a file opened read-only has `VM_MAYSHARE` but not `VM_SHARED`; its
/// pages are the file's all the same (it cannot be written, so never copied), and
/// `get_futex_key()` gives its words the file's identity, as for a writable shared mapping. The
/// module took such mappings for private memory: a holder mapping the lock memory read-only (a
/// reader process, a thread that only waits) kept its slot. Here a holder process and a holder
/// thread of the caller's own process map it that way, and the caller calls through a writable
/// mapping of the same file: both slots must be cleared. For a memfd (reopened read-only
/// through /proc/self/fd) and a file on tmpfs.
pub fn mayshare_readonly_mapping(_: &Ctx) -> R {
    mayshare_one("memfd", crate::cleanup::memfd(PAGE))?;
    mayshare_one("tmpfs file", tmpfs_file(PAGE)?)
}

// ---------------------------------------------------------------------------------------------
// hardening_stuck_call_blocks_nobody

/// `UFFD_API` (uapi/linux/userfaultfd.h).
const UFFD_API: u64 = 0xaa;
/// `_IOWR(0xaa, 0x3f, struct uffdio_api)`.
const UFFDIO_API: libc::Ioctl = 0xc018_aa3f;
/// `_IOWR(0xaa, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::Ioctl = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

// The shared page of `stuck_call_blocks_nobody`.

/// T1's TID, once its head (in the unserved page) is registered.
const S_T1: usize = 0;
/// T2's TID, stored right before its call.
const S_T2: usize = 4;
/// 1 once T2's call returned; its result (or -errno) at `S_RESULT`.
const S_DONE: usize = 8;
const S_RESULT: usize = 16;
/// The step of P's setup that failed, and its errno.
const S_FAILED: usize = 24;
const S_ERRNO: usize = 28;
/// Never set: P's threads sleep on it until killed.
const S_SLEEP: usize = 32;
/// The unrelated process starts when this is set; it reports its stage and failure.
const S_GO: usize = 64;
const S_STAGE: usize = 68;
const S_WFAILED: usize = 72;

fn stuck_step(step: u32) -> &'static str {
    match step {
        1 => "userfaultfd()",
        2 => "UFFDIO_API",
        3 => "UFFDIO_REGISTER (missing mode)",
        4 => "set_robust_list() on the unserved page",
        5 => "T1 never registered its head",
        _ => "?",
    }
}

/// What the unrelated process is doing, by stage.
const STAGES: [&str; 5] = [
    "waiting for the go",
    "creating and joining 20 threads (each registers its robust list as it starts, then exits)",
    "fork() + waitpid() of a child that creates and joins a thread",
    "a thread that registers a robust list head of its own, then exits",
    "its own exit",
];

fn stuck_failed(sh: usize, step: u32, e: i32) -> i32 {
    sys::write_u32(sh + S_ERRNO, e as u32);
    sys::write_u32(sh + S_FAILED, step);
    1
}

/// P: T1 registers a head in a private page registered with userfaultfd (missing faults) that
/// nobody serves; T2 (P's main thread) then calls cleanup_robust_list() on another private page
/// of P, so that the call reads T1's head: the read faults into the unserved page and sleeps
/// until P is killed.
fn stuck_caller(sh: usize) -> i32 {
    // SAFETY: creates a userfaultfd that handles kernel faults too (the guest runs as root).
    let uffd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) } as i32;
    if uffd < 0 {
        return stuck_failed(sh, 1, last_errno());
    }
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: the handshake, with a valid `struct uffdio_api`.
    if unsafe { libc::ioctl(uffd, UFFDIO_API, &mut api) } != 0 {
        return stuck_failed(sh, 2, last_errno());
    }
    let unserved = sys::private_anon(PAGE); // never touched: every access is a missing fault
    let mut reg = UffdioRegister {
        start: unserved as u64,
        len: PAGE as u64,
        mode: UFFDIO_REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: registers our own mapping, with a valid `struct uffdio_register`.
    if unsafe { libc::ioctl(uffd, UFFDIO_REGISTER, &mut reg) } != 0 {
        return stuck_failed(sh, 3, last_errno());
    }
    let other = sys::private_anon(PAGE);
    sys::write_u32(other, 1);
    let head = unserved + 0x100;
    std::thread::spawn(move || {
        // set_robust_list() only records the pointer: the page stays unfaulted.
        if let Err(e) = sys::set_robust_list(head, HEAD_LEN) {
            stuck_failed(sh, 4, e.raw_os_error().unwrap_or(0));
            return;
        }
        sys::write_u32(sh + S_T1, sys::gettid());
        loop {
            let _ = sys::futex_wait(sh + S_SLEEP, 0, Duration::from_secs(1));
        }
    });
    let deadline = Instant::now() + LIMIT;
    while sys::read_u32(sh + S_T1) == 0 {
        if sys::read_u32(sh + S_FAILED) != 0 {
            return 1;
        }
        if Instant::now() > deadline {
            return stuck_failed(sh, 5, 0);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sys::write_u32(sh + S_T2, sys::gettid());
    let r = match cleanup_robust_list(other, 4, 0) {
        Ok(n) => n,
        Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
    };
    sys::write_usize(sh + S_RESULT, r as usize);
    sys::write_u32(sh + S_DONE, 1);
    loop {
        let _ = sys::futex_wait(sh + S_SLEEP, 0, Duration::from_secs(1));
    }
}

/// The unrelated process: once told to go, creates and joins 20 threads, forks a child that
/// creates and joins a thread and waits for it, runs a thread that registers a head of its own
/// and exits; each step published in the shared page. Single-threaded whenever it forks.
fn unrelated_worker(sh: usize) -> i32 {
    let stage = |s: u32| sys::write_u32(sh + S_STAGE, s);
    let failed = |s: u32| {
        sys::write_u32(sh + S_WFAILED, s);
        1
    };
    let deadline = Instant::now() + 4 * LIMIT;
    while sys::read_u32(sh + S_GO) == 0 {
        if Instant::now() > deadline {
            return failed(0);
        }
        let _ = sys::futex_wait(sh + S_GO, 0, Duration::from_secs(1));
    }
    stage(1);
    for _ in 0..20 {
        if std::thread::spawn(sys::gettid).join().is_err() {
            return failed(1);
        }
    }
    stage(2);
    let child = sys::fork_with(|| std::thread::spawn(sys::gettid).join().is_err() as i32);
    if !exited_ok(sys::wait_pid(child)) {
        return failed(2);
    }
    stage(3);
    let head = sys::private_anon(PAGE);
    sys::write_usize(head, head);
    match std::thread::spawn(move || sys::set_robust_list(head, HEAD_LEN).is_ok()).join() {
        Ok(true) => {}
        _ => return failed(3),
    }
    stage(4);
    0
}

/// Waits until T2 is about to make its call; returns its TID.
fn wait_stuck(sh: usize) -> Result<u32, String> {
    let deadline = Instant::now() + LIMIT;
    let t2 = loop {
        let step = sys::read_u32(sh + S_FAILED);
        if step != 0 {
            let e = std::io::Error::from_raw_os_error(sys::read_u32(sh + S_ERRNO) as i32);
            return Err(format!("P's setup failed: {}: {}", stuck_step(step), e));
        }
        let t2 = sys::read_u32(sh + S_T2);
        if t2 != 0 {
            break t2;
        }
        ensure!(Instant::now() < deadline, "P never made its call");
        std::thread::sleep(Duration::from_millis(1));
    };
    Ok(t2)
}

/// Waits until T2 sleeps in its call: in system call 500, state S or D, and in
/// `handle_userfault` (or so for a second, whatever wchan says).
fn wait_asleep(sh: usize, p: libc::pid_t, t2: u32) -> R {
    let start = Instant::now();
    loop {
        ensure!(
            sys::read_u32(sh + S_DONE) == 0,
            "T2's call returned {} instead of sleeping on the unserved page: nothing was tested",
            sys::read_usize(sh + S_RESULT) as i64
        );
        let syscall =
            std::fs::read_to_string(format!("/proc/{}/task/{}/syscall", p, t2)).unwrap_or_default();
        let state = sys::task_state(p, t2);
        if let Some((s, wchan)) = &state {
            if syscall.starts_with("500 ")
                && (*s == 'S' || *s == 'D')
                && (wchan == "handle_userfault" || start.elapsed() > Duration::from_secs(1))
            {
                return Ok(());
            }
        }
        ensure!(
            start.elapsed() < LIMIT,
            "T2 never slept in its call: {:?}, system call {:?}",
            state,
            syscall.split_whitespace().next()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The supervisor: P is stuck; the unrelated process goes; its steps must be done within the
/// limit while T2 still sleeps; then P must die of SIGKILL.
fn stuck_supervise(sh: usize, worker: libc::pid_t, p: libc::pid_t) -> R {
    let t2 = match wait_stuck(sh).and_then(|t2| wait_asleep(sh, p, t2).map(|_| t2)) {
        Ok(t2) => t2,
        Err(e) => {
            kill_and_reap(p);
            kill_and_reap(worker);
            return Err(e);
        }
    };
    let asleep = sys::task_state(p, t2);
    sys::write_u32(sh + S_GO, 1);
    let _ = sys::futex_wake(sh + S_GO, 1);
    let start = Instant::now();
    let done = sys::wait_pid_timeout(worker, LIMIT);
    let took = start.elapsed();
    let returned = sys::read_u32(sh + S_DONE) != 0;
    let stage = STAGES
        .get(sys::read_u32(sh + S_STAGE) as usize)
        .unwrap_or(&"?");
    let Some(status) = done else {
        // Blocked: un-stick it by killing P (that ends the fault's wait), then report.
        let state = sys::task_state(p, t2);
        let killed = Instant::now();
        let _ = kill(p);
        let p_reaped = sys::wait_pid_timeout(p, LIMIT).is_some();
        let went_on = sys::wait_pid_timeout(worker, LIMIT);
        let then = match went_on {
            Some(_) => format!(
                "it went on once P was killed, and was done {} ms later (blocked {} ms in all)",
                killed.elapsed().as_millis(),
                start.elapsed().as_millis()
            ),
            None => {
                kill_and_reap(worker);
                format!("it was still blocked {:?} after P was killed", LIMIT)
            }
        };
        return Err(format!(
            "an unrelated process was blocked at: {}, while T2 slept in its call ({:?}): not \
             done {} ms after it started; {}{}",
            stage,
            state,
            took.as_millis(),
            then,
            if p_reaped { "" } else { "; P was not reaped" }
        ));
    };
    let killed = Instant::now();
    kill(p)?;
    let reaped = sys::wait_pid_timeout(p, LIMIT);
    ensure!(
        reaped.is_some(),
        "the stuck caller is not killable: P not reaped {:?} after SIGKILL (T2: {:?})",
        LIMIT,
        sys::task_state(p, t2)
    );
    ensure!(
        exited_ok(status),
        "the unrelated process failed at: {} (status {:#x})",
        STAGES
            .get(sys::read_u32(sh + S_WFAILED) as usize)
            .unwrap_or(&"?"),
        status
    );
    ensure!(
        !returned,
        "T2's call returned ({}) before the unrelated process was done: nothing was tested",
        sys::read_usize(sh + S_RESULT) as i64
    );
    println!(
        "# hardening_stuck_call_blocks_nobody: an unrelated process did its steps in {} ms while \
         T2 slept in its call ({:?}); P reaped {} ms after SIGKILL",
        took.as_millis(),
        asleep,
        killed.elapsed().as_millis()
    );
    Ok(())
}

/// A call whose read of a candidate's head sleeps must hold up nobody else. P's thread T1
/// registers a head in a page registered with userfaultfd that nobody serves (the stand-in for
/// any fault that sleeps without bound: a FUSE file the process serves itself); P's thread T2
/// calls cleanup_robust_list() on another private page of P, so the call reads T1's head and
/// sleeps in the fault. The module read heads under its index's one mutex, so every
/// set_robust_list(), thread start and exit, and fork of every other process then waited for
/// T2. Here an unrelated process, within 30 s, creates and joins 20 threads, forks and waits for
/// a child that creates a thread, and runs a thread that registers a head and exits, all while
/// T2 still sleeps; if it is blocked, P is killed to release it, and the case fails naming the
/// step and the time it was blocked. Finally P must die of SIGKILL (the sleeping call is
/// killable). The fault is never served. The 30 s limit is under the kernel's hung-task timeout
/// (60 s), so that a blocked run fails this case without a hung-task report in the guest log.
pub fn stuck_call_blocks_nobody(_: &Ctx) -> R {
    let sh = Shared::new(PAGE);
    let base = sh.base;
    // Forked first, while this process is single-threaded; it waits for the go.
    let worker = sys::fork_with(|| unrelated_worker(base));
    let p = sys::fork_with(|| stuck_caller(base));
    stuck_supervise(base, worker, p)
}

// ---------------------------------------------------------------------------------------------
// Shared by the cases below

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// Waits up to `limit` for `done()`, sleeping on the `u32` at `addr`, which the other side
/// changes (or at least wakes) when `done()` may have become true; `failed()` ends the wait
/// early with its message (the other side reported a failure).
pub(crate) fn wait_until(
    addr: usize,
    limit: Duration,
    what: &str,
    done: impl Fn() -> bool,
    failed: impl Fn() -> Option<String>,
) -> R {
    let deadline = Instant::now() + limit;
    loop {
        let v = sys::read_u32(addr);
        if done() {
            return Ok(());
        }
        if let Some(e) = failed() {
            return Err(e);
        }
        ensure!(
            Instant::now() < deadline,
            "{}: not within {:?}",
            what,
            limit
        );
        sys::nap(addr, v, Duration::from_millis(100)).map_err(|e| format!("futex_wait: {}", e))?;
    }
}

/// The step and errno a child reported at `step` and `errno` (0: none), named by `name`.
pub(crate) fn reported(
    sh: usize,
    step: usize,
    errno: usize,
    name: fn(u32) -> &'static str,
) -> Option<String> {
    match sys::read_u32(sh + step) {
        0 => None,
        s => Some(format!(
            "{}: {}",
            name(s),
            std::io::Error::from_raw_os_error(sys::read_u32(sh + errno) as i32)
        )),
    }
}

/// Writes a robust list head at `head`: an empty list, `futex_offset` [`OFFSET`], and
/// `list_op_pending` on the futex word `word` (0: none). `head` may be unaligned.
pub(crate) fn write_head(head: usize, word: usize) {
    sys::write_usize(head, head);
    sys::write_usize(head + 8, OFFSET as usize);
    sys::write_usize(head + 16, if word == 0 { 0 } else { pending_for(word) });
}

fn io_errno(e: &std::io::Error) -> u32 {
    e.raw_os_error().unwrap_or(0) as u32
}

// ---------------------------------------------------------------------------------------------
// hardening_fork_during_clear_child_untouched

/// Rounds: H arms its slot, the test clears it with one call.
const FD_ROUNDS: u32 = 200;
/// H's children alive at a time, at most (each has an entry of the ring).
const FD_RING: usize = 32;
/// How long a child waits between its two reads of its slot.
const FD_CHILD_NAP: Duration = Duration::from_millis(2);
/// The words of the memfd the rounds use in turn (a new armed value each round).
const FD_WORD0: usize = 0x100;
const FD_WORDS: u32 = 64;

// The command page of `fork_during_clear_child_untouched` (the test, H, H's children).
/// The round the test asks H to arm; `FD_STOP`: stop forking, reap, report and exit.
const FD_CMD: usize = 0;
/// The last round H armed.
const FD_ARMED: usize = 4;
/// The step of H that failed, and its errno.
const FD_FAILED: usize = 8;
const FD_ERRNO: usize = 12;
/// 1 once H stopped and wrote its counts.
const FD_DONE: usize = 16;
/// H's counts, `FdCounts` as `u64`s.
const FD_COUNTS: usize = 0x40;
/// The first child that saw its slot change: the slot around the fork (before, after), the
/// child's two reads.
const FD_FIRST: usize = 0x80;
/// `+ 8 * round`: H's slot when the next command came, that is after the round's call.
const FD_REPORT: usize = 0x100;
const FD_STOP: u32 = u32::MAX;
const _: () = assert!(FD_REPORT + 8 * (FD_ROUNDS as usize + 1) <= PAGE);

// A child's entry in the ring (another shared region): its first read, its second, its state
// (1 after the first read, 2 after the second).
const FD_ENTRY: usize = 32;

fn fd_word(round: u32) -> usize {
    FD_WORD0 + 4 * (round % FD_WORDS) as usize
}

fn fd_step(step: u32) -> &'static str {
    match step {
        1 => "sched_setaffinity() to another CPU than the test's",
        2 => "mmap() of the memfd",
        4 => "mmap() of the private page",
        5 => "set_robust_list()",
        6 => "fork()",
        7 => "waitpid()",
        8 => "the test's next command never came",
        _ => "?",
    }
}

/// What H saw of its children.
#[derive(Default, Debug)]
struct FdCounts {
    forks: u64,
    /// Children that read their slot twice and exited normally.
    checked: u64,
    /// Children forked while the slot was armed: armed before and after the fork.
    armed: u64,
    /// Forks during which a call cleared the slot: armed before, 0 after.
    raced: u64,
    /// Children whose two reads differ.
    changed: u64,
    /// Children whose reads are not what they inherited.
    disagreed: u64,
    /// Children that died, or exited before their second read.
    failed: u64,
}

impl FdCounts {
    fn store(&self, at: usize) {
        let v = [
            self.forks,
            self.checked,
            self.armed,
            self.raced,
            self.changed,
            self.disagreed,
            self.failed,
        ];
        for (i, x) in v.iter().enumerate() {
            sys::write_usize(at + 8 * i, *x as usize);
        }
    }

    fn load(at: usize) -> FdCounts {
        let v = |i: usize| sys::read_usize(at + 8 * i) as u64;
        FdCounts {
            forks: v(0),
            checked: v(1),
            armed: v(2),
            raced: v(3),
            changed: v(4),
            disagreed: v(5),
            failed: v(6),
        }
    }
}

/// A child of H in flight: its pid, ring entry, and H's slot right before and after the fork.
struct FdChild {
    pid: libc::pid_t,
    entry: usize,
    before: usize,
    after: usize,
}

/// A child: reads its copy of the slot at once and again after `FD_CHILD_NAP`, records both in
/// its ring entry, and exits. System calls only: it is a bare fork of H.
fn fd_child(slot: usize, entry: usize) -> ! {
    sys::write_usize(entry, sys::read_usize(slot));
    sys::write_u32(entry + 16, 1);
    std::thread::sleep(FD_CHILD_NAP);
    sys::write_usize(entry + 8, sys::read_usize(slot));
    sys::write_u32(entry + 16, 2);
    // SAFETY: ends the child at once.
    unsafe { libc::_exit(0) }
}

/// Judges a reaped child from what it recorded. Between H's reads of its slot right before and
/// right after `fork()` only a call can change the slot (H arms it between forks), from armed
/// to 0: if both reads agree, that is what the child inherited, and its copy must hold it for
/// good; if they differ, the child inherited one or the other. Either way its two reads agree:
/// nobody writes to the child's private copy.
fn fd_judge(sh: usize, c: &FdChild, status: i32, n: &mut FdCounts) {
    let state = sys::read_u32(c.entry + 16);
    if !exited_ok(status) || state != 2 {
        n.failed += 1;
        return;
    }
    n.checked += 1;
    let (r0, r1) = (sys::read_usize(c.entry), sys::read_usize(c.entry + 8));
    if c.before == c.after && c.before != 0 {
        n.armed += 1;
    }
    if c.before != c.after {
        n.raced += 1;
    }
    let inherited = if c.before == c.after {
        r0 == c.before
    } else {
        r0 == c.before || r0 == c.after
    };
    if r0 != r1 {
        n.changed += 1;
    } else if !inherited {
        n.disagreed += 1;
    }
    if (r0 != r1 || !inherited) && n.changed + n.disagreed == 1 {
        for (i, v) in [c.before, c.after, r0, r1].iter().enumerate() {
            sys::write_usize(sh + FD_FIRST + 8 * i, *v);
        }
    }
}

/// Reaps one child of H (waiting for one if `block`); returns whether it reaped one.
fn fd_reap(
    sh: usize,
    out: &mut Vec<FdChild>,
    free: &mut Vec<usize>,
    n: &mut FdCounts,
    block: bool,
) -> std::io::Result<bool> {
    if out.is_empty() {
        return Ok(false); // none left: waitpid() would fail with ECHILD
    }
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: `status` is a valid out pointer; H's only children are the ones in `out`.
    let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let Some(i) = out.iter().position(|c| c.pid == pid) else {
        return Ok(false);
    };
    let c = out.swap_remove(i);
    fd_judge(sh, &c, status, n);
    free.push(c.entry);
    Ok(true)
}

/// H: a holder process whose robust list head lies in a private page of its own, with
/// `list_op_pending` armed on a word of the memfd `fd` when the test asks for a round; between
/// commands it forks, again and again, children that check their copy of the slot. Runs on
/// `cpu`, if given. Returns its exit code; its counts are in the command page.
fn fd_holder(sh: usize, ring: usize, fd: i32, cpu: Option<usize>) -> i32 {
    let fail = |step: u32, e: u32| {
        sys::write_u32(sh + FD_ERRNO, e);
        sys::write_u32(sh + FD_FAILED, step);
        let _ = sys::futex_wake(sh + FD_ARMED, 1);
        let _ = sys::futex_wake(sh + FD_DONE, 1);
        1
    };
    if let Some(Err(e)) = cpu.map(sys::pin_to_cpu) {
        return fail(1, io_errno(&e));
    }
    let mem = match sys::mmap(0, PAGE, RW, libc::MAP_SHARED, fd) {
        Ok(m) => m,
        Err(e) => return fail(2, io_errno(&e)),
    };
    // The children inherit it (the test kernel has no madvise(), so no MADV_DONTFORK): each is
    // one more area for a call to look at while it lives, with no robust list of its own.
    let page = match sys::mmap(0, PAGE, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1) {
        Ok(p) => p,
        Err(e) => return fail(4, io_errno(&e)),
    };
    let (head, slot, touch) = (page, page + 16, page + 0x800);
    write_head(head, 0);
    if let Err(e) = sys::set_robust_list(head, HEAD_LEN) {
        return fail(5, io_errno(&e));
    }
    let mut n = FdCounts::default();
    let mut out: Vec<FdChild> = Vec::with_capacity(FD_RING);
    let mut free: Vec<usize> = (0..FD_RING).rev().map(|k| ring + FD_ENTRY * k).collect();
    let mut armed = 0u32;
    let mut since = Instant::now();
    loop {
        let cmd = sys::read_u32(sh + FD_CMD);
        if cmd != armed {
            if armed != 0 {
                sys::write_usize(sh + FD_REPORT + 8 * armed as usize, sys::read_usize(slot));
            }
            if cmd == FD_STOP {
                break;
            }
            sys::write_usize(slot, pending_for(mem + fd_word(cmd)));
            armed = cmd;
            since = Instant::now();
            sys::write_u32(sh + FD_ARMED, cmd);
            let _ = sys::futex_wake(sh + FD_ARMED, 1);
        } else if since.elapsed() > LIMIT {
            return fail(8, libc::ETIMEDOUT as u32);
        }
        while free.is_empty() {
            if let Err(e) = fd_reap(sh, &mut out, &mut free, &mut n, true) {
                return fail(7, io_errno(&e));
            }
        }
        let entry = free.pop().unwrap_or_default();
        sys::write_u32(entry + 16, 0);
        let before = sys::read_usize(slot);
        let pid = match sys::fork_raw() {
            Ok(0) => fd_child(slot, entry),
            Ok(pid) => pid,
            Err(e) => return fail(6, io_errno(&e)),
        };
        let after = sys::read_usize(slot);
        // H writes to the page at once: its copy-on-write break comes right after the fork, so
        // that a clear written into the page as it was before lands in the child's copy only.
        sys::write_u32(touch, n.forks as u32);
        n.forks += 1;
        out.push(FdChild {
            pid,
            entry,
            before,
            after,
        });
        loop {
            match fd_reap(sh, &mut out, &mut free, &mut n, false) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return fail(7, io_errno(&e)),
            }
        }
    }
    while !out.is_empty() {
        if let Err(e) = fd_reap(sh, &mut out, &mut free, &mut n, true) {
            return fail(7, io_errno(&e));
        }
    }
    n.store(sh + FD_COUNTS);
    sys::write_u32(sh + FD_DONE, 1);
    let _ = sys::futex_wake(sh + FD_DONE, 1);
    0
}

/// The test's side: FD_ROUNDS rounds of "arm" (H), "call" (the test); returns what each call
/// returned.
fn fd_rounds(sh: usize, mine: usize) -> Result<Vec<i64>, String> {
    let failed = || reported(sh, FD_FAILED, FD_ERRNO, fd_step).map(|e| format!("H: {}", e));
    let mut results = Vec::with_capacity(FD_ROUNDS as usize);
    for round in 1..=FD_ROUNDS {
        sys::write_u32(sh + FD_CMD, round);
        wait_until(
            sh + FD_ARMED,
            LIMIT,
            "H arming its slot",
            || sys::read_u32(sh + FD_ARMED) == round,
            failed,
        )
        .map_err(|e| format!("round {}: {}", round, e))?;
        results.push(
            cleanup(mine + fd_word(round), 4).map_err(|e| format!("round {}: {}", round, e))?,
        );
    }
    Ok(results)
}

/// The holder is a process H whose `list_op_pending` slot lies in its own private anonymous
/// memory (its robust list head, in a private page) and points at a word of a memfd that the
/// test maps too. H forks in a tight loop, on another CPU than the test's: each child reads its
/// copy of the slot at once and again 2 ms later, records both and exits; H reads its slot
/// right before and right after each fork, and writes to the page right after (so that its
/// copy-on-write break follows the fork at once). Meanwhile the test runs 200 rounds: H arms
/// its slot (on another word each round) when told, and the test calls cleanup_robust_list()
/// on the word. Every call must return 1 and H's slot be 0 afterwards (H reports it when the
/// next command comes), and no child may see its slot change, or read anything but what it
/// inherited when that is known (the slot was the same right before and right after the fork).
///
/// The bug: the module pinned the page with `FOLL_GET` and wrote the clear after dropping the
/// `mmap_lock`; a fork in between made the page copy-on-write shared, so the clear landed in
/// the child's copy (and, once H had broken the sharing, in the child's copy only: H's slot
/// stayed armed after a call that returned 1). The window is narrow: the case makes it as
/// likely as it can, and may pass on a broken module. Counts in a `#` line: rounds, calls,
/// forks, children forked with the slot armed, and forks a clear raced with.
pub fn fork_during_clear_child_untouched(_: &Ctx) -> R {
    const NAME: &str = "hardening_fork_during_clear_child_untouched";
    let cpus = sys::allowed_cpus().map_err(|e| format!("sched_getaffinity: {}", e))?;
    let holder_cpu = match cpus[..] {
        [test_cpu, other, ..] => {
            sys::pin_to_cpu(test_cpu).map_err(|e| format!("sched_setaffinity: {}", e))?;
            Some(other)
        }
        _ => {
            println!("# {}: one CPU: the test and H share it", NAME);
            None
        }
    };
    let fd = crate::cleanup::memfd(PAGE);
    let mine = crate::cleanup::map_fd(fd, PAGE, libc::MAP_SHARED);
    let sh = Shared::new(PAGE);
    let ring = Shared::new(FD_RING * FD_ENTRY);
    let (shb, ringb) = (sh.base, ring.base);
    // Forked while this process is single-threaded; H itself stays single-threaded.
    let pid = sys::fork_with(|| fd_holder(shb, ringb, fd, holder_cpu));
    let results = fd_rounds(shb, mine);
    sys::write_u32(shb + FD_CMD, FD_STOP);
    let stopped = results.and_then(|r| {
        wait_until(
            shb + FD_DONE,
            LIMIT,
            "H stopping",
            || sys::read_u32(shb + FD_DONE) == 1,
            || reported(shb, FD_FAILED, FD_ERRNO, fd_step).map(|e| format!("H: {}", e)),
        )
        .map(|_| r)
    });
    let Some(status) = sys::wait_pid_timeout(pid, LIMIT) else {
        kill_and_reap(pid);
        return Err(format!(
            "H did not exit within {:?}{}",
            LIMIT,
            stopped
                .err()
                .map(|e| format!(" ({})", e))
                .unwrap_or_default()
        ));
    };
    let results = stopped?;
    ensure!(exited_ok(status), "H: exit status {:#x}", status);
    let n = FdCounts::load(shb + FD_COUNTS);
    println!(
        "# {}: {} rounds, {} calls, {} forks: {} children forked with the slot armed, {} forks \
         during which a call cleared it; {} children saw their slot change",
        NAME,
        FD_ROUNDS,
        results.len(),
        n.forks,
        n.armed,
        n.raced,
        n.changed + n.disagreed
    );
    let wrong: Vec<String> = (1..=FD_ROUNDS)
        .zip(&results)
        .filter_map(|(round, &r)| {
            let slot = sys::read_usize(shb + FD_REPORT + 8 * round as usize);
            (r != 1 || slot != 0)
                .then(|| format!("round {}: returned {}, H's slot then {:#x}", round, r, slot))
        })
        .collect();
    ensure!(
        wrong.is_empty(),
        "{} of {} calls did not clear H's slot, or did not return 1 (want 1, and the slot 0): {}",
        wrong.len(),
        FD_ROUNDS,
        wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
    let first = |i: usize| sys::read_usize(shb + FD_FIRST + 8 * i);
    ensure!(
        n.changed + n.disagreed == 0,
        "{} children saw their private copy of H's slot change, {} read something else than \
         they inherited: a clear landed in a child's copy of H's page; first: H's slot {:#x} \
         before the fork, {:#x} after; the child read {:#x}, then {:#x}",
        n.changed,
        n.disagreed,
        first(0),
        first(1),
        first(2),
        first(3)
    );
    ensure!(
        n.failed == 0 && n.checked == n.forks,
        "H's children: {} forked, {} checked, {} died or exited early",
        n.forks,
        n.checked,
        n.failed
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hardening_remapped_word_not_cleared

// The command page of `remapped_word_not_cleared`.
/// The step the test asks H for; `RM_STOP`: exit.
const RM_CMD: usize = 0;
/// The last step H completed.
const RM_DONE: usize = 4;
/// The step of H that failed, and its errno.
const RM_FAILED: usize = 8;
const RM_ERRNO: usize = 12;
/// 1 once H registered its head.
const RM_READY: usize = 16;
/// X, where H maps the first page of A at first (`usize`).
const RM_X: usize = 24;
const RM_STOP: u32 = 99;
/// The futex word, at the same offset in every page.
const RM_WORD: usize = 0x100;
/// A, the memory cleaned, has two pages; B, the other memfd, one.
const RM_A_LEN: usize = 2 * PAGE;

fn rm_step(step: u32) -> &'static str {
    match step {
        1 => "munmap(X), then mmap(X, MAP_FIXED_NOREPLACE) of memfd B",
        2 => "mmap() of memfd A again, at another address",
        3 => "mmap(X, MAP_FIXED) of the second page of memfd A",
        4 => "mmap(X, MAP_FIXED) of the first page of memfd A",
        10 => "mmap() of the first page of memfd A",
        11 => "set_robust_list()",
        12 => "the test's next command never came",
        13 => "futex_wait()",
        _ => "an unknown command",
    }
}

/// `mmap(X, MAP_SHARED | flags)` of one page of `fd` from `offset`; it must land at X.
fn map_at(x: usize, fd: i32, offset: usize, flags: i32) -> std::io::Result<()> {
    let p = sys::mmap_offset(x, PAGE, RW, libc::MAP_SHARED | flags, fd, offset)?;
    if p != x {
        return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(())
}

/// H: maps the first page of A at X, registers a head (in the control page, so that the test
/// reads the slot) pending on the word at X + `RM_WORD`, then changes what X maps, step by
/// step, as the test asks. Never writes the slot.
fn rm_holder(ctl: &Control, sh: usize, a: i32, b: i32) -> i32 {
    let fail = |step: u32, e: &std::io::Error| {
        sys::write_u32(sh + RM_ERRNO, io_errno(e));
        sys::write_u32(sh + RM_FAILED, step);
        let _ = sys::futex_wake(sh + RM_READY, 1);
        let _ = sys::futex_wake(sh + RM_DONE, 1);
        1
    };
    let x = match sys::mmap(0, PAGE, RW, libc::MAP_SHARED, a) {
        Ok(x) => x,
        Err(e) => return fail(10, &e),
    };
    sys::write_usize(sh + RM_X, x);
    ctl.prepare(0, x + RM_WORD, false);
    if let Err(e) = sys::set_robust_list(ctl.head(0), HEAD_LEN) {
        return fail(11, &e);
    }
    ctl.set_ready(0, sys::gettid());
    sys::write_u32(sh + RM_READY, 1);
    let _ = sys::futex_wake(sh + RM_READY, 1);
    let (mut done, mut since) = (0, Instant::now());
    loop {
        let cmd = sys::read_u32(sh + RM_CMD);
        if cmd == done {
            if since.elapsed() > LIMIT {
                return fail(12, &std::io::Error::from_raw_os_error(libc::ETIMEDOUT));
            }
            if let Err(e) = sys::nap(sh + RM_CMD, done, Duration::from_secs(1)) {
                return fail(13, &e);
            }
            continue;
        }
        let r = match cmd {
            RM_STOP => return 0,
            1 => sys::munmap(x, PAGE).and_then(|_| map_at(x, b, 0, libc::MAP_FIXED_NOREPLACE)),
            2 => sys::mmap(0, RM_A_LEN, RW, libc::MAP_SHARED, a).map(|_| ()),
            3 => map_at(x, a, PAGE, libc::MAP_FIXED),
            4 => map_at(x, a, 0, libc::MAP_FIXED),
            _ => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        };
        if let Err(e) = r {
            return fail(cmd, &e);
        }
        (done, since) = (cmd, Instant::now());
        sys::write_u32(sh + RM_DONE, cmd);
        let _ = sys::futex_wake(sh + RM_DONE, 1);
    }
}

/// Asks H for `step` and waits until it is done.
fn rm_command(sh: usize, step: u32) -> R {
    sys::write_u32(sh + RM_CMD, step);
    sys::futex_wake(sh + RM_CMD, 1).map_err(|e| format!("futex_wake: {}", e))?;
    wait_until(
        sh + RM_DONE,
        LIMIT,
        rm_step(step),
        || sys::read_u32(sh + RM_DONE) == step,
        || reported(sh, RM_FAILED, RM_ERRNO, rm_step).map(|e| format!("H: {}", e)),
    )
}

/// A slot is cleared only if its word is, at the time of the clear, the memory being cleaned.
/// H (a forked process) maps the first page of memfd A at X, and registers a head pending on
/// the word at X + 0x100; the test maps A (and B) elsewhere and calls on the word's offset in
/// A. H never writes its slot; the test reads it (the head lies in shared memory) and re-arms
/// it after a call that cleared it. Step by step:
///
/// 1. H unmaps X and maps memfd B there (`MAP_FIXED_NOREPLACE`): its slot now points into B.
///    A call on A's word, and one on all of A, must return 0 and leave the slot alone; a call
///    on B's word (the control) must clear it;
/// 2. H maps A again, at another address: its mm maps A (so H is a candidate), but not at X.
///    Again 0 for A's word and all of A;
/// 3. H maps the second page of A at X (`MAP_FIXED` over B): the word is A's, at another
///    offset. A call on the word of A's first page returns 0; one on the word of its second
///    page (the control) clears the slot;
/// 4. H maps the first page of A at X again (`MAP_FIXED`): a call on A's word must clear the
///    slot and return 1.
pub fn remapped_word_not_cleared(_: &Ctx) -> R {
    let (a, b) = (crate::cleanup::memfd(RM_A_LEN), crate::cleanup::memfd(PAGE));
    let mine_a = crate::cleanup::map_fd(a, RM_A_LEN, libc::MAP_SHARED);
    let mine_b = crate::cleanup::map_fd(b, PAGE, libc::MAP_SHARED);
    let ctl = Control::new();
    let sh = Shared::new(PAGE);
    let shb = sh.base;
    let pid = sys::fork_with(|| rm_holder(&ctl, shb, a, b));
    let r = (|| -> R {
        wait_until(
            shb + RM_READY,
            LIMIT,
            "H registering its head",
            || sys::read_u32(shb + RM_READY) == 1,
            || reported(shb, RM_FAILED, RM_ERRNO, rm_step).map(|e| format!("H: {}", e)),
        )?;
        let x = sys::read_usize(shb + RM_X);
        let armed = pending_for(x + RM_WORD);
        ensure_eq!(sys::read_usize(ctl.slot(0)), armed);
        // A call that must return `want` (0 or 1): the slot must then be armed, or 0.
        let call = |what: &str, addr: usize, len: usize, want: i64| -> R {
            let n = cleanup(addr, len).map_err(|e| format!("{}: {}", what, e))?;
            let slot = sys::read_usize(ctl.slot(0));
            let want_slot = if want == 1 { 0 } else { armed };
            ensure!(
                n == want && slot == want_slot,
                "{}: returned {}, H's slot then {:#x}; want {}, the slot {:#x}",
                what,
                n,
                slot,
                want,
                want_slot
            );
            sys::write_usize(ctl.slot(0), armed);
            Ok(())
        };
        rm_command(shb, 1)?;
        call("X maps B: a call on A's word", mine_a + RM_WORD, 4, 0)?;
        call("X maps B: a call on all of A", mine_a, RM_A_LEN, 0)?;
        call("X maps B: a call on B's word", mine_b + RM_WORD, 4, 1)?;
        rm_command(shb, 2)?;
        call(
            "X maps B, A is mapped elsewhere: A's word",
            mine_a + RM_WORD,
            4,
            0,
        )?;
        call(
            "X maps B, A is mapped elsewhere: all of A",
            mine_a,
            RM_A_LEN,
            0,
        )?;
        rm_command(shb, 3)?;
        call(
            "X maps A's second page: the word of its first",
            mine_a + RM_WORD,
            4,
            0,
        )?;
        call(
            "X maps A's second page: the word of that page",
            mine_a + PAGE + RM_WORD,
            4,
            1,
        )?;
        rm_command(shb, 4)?;
        call(
            "X maps A's first page again: A's word",
            mine_a + RM_WORD,
            4,
            1,
        )
    })();
    sys::write_u32(shb + RM_CMD, RM_STOP);
    let _ = sys::futex_wake(shb + RM_CMD, 1);
    let Some(status) = sys::wait_pid_timeout(pid, LIMIT) else {
        kill_and_reap(pid);
        r?;
        return Err(format!("H did not exit within {:?}", LIMIT));
    };
    r?;
    ensure!(exited_ok(status), "H: exit status {:#x}", status);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hardening_many_processes_one_memfd

/// The processes `hardening_many_processes_one_memfd` forks in `make check`;
/// `robust-harness many-mappers COUNT` forks COUNT.
pub const MANY_DEFAULT: usize = 256;
const MANY_NAME: &str = "hardening_many_processes_one_memfd";
/// The memfd has one page; process `i`'s slot points at word `i % MANY_WORDS` from
/// `MANY_WORD0`: each word is shared by many processes.
const MANY_WORDS: usize = 16;
const MANY_WORD0: usize = 0x100;
/// Each process's head, in its own copy of a private page.
const MANY_HEAD: usize = 0x100;
/// The time a process may take to start and register, on top of `LIMIT`.
const MANY_PER_PROCESS: Duration = Duration::from_millis(50);

// The shared region of `many_processes_one_memfd`.
/// Processes that registered their head.
const MN_READY: usize = 0;
/// Processes whose set_robust_list() failed, and the errno of one.
const MN_FAILED: usize = 4;
const MN_ERRNO: usize = 8;
/// 1: read your slot, report and exit; 2: exit.
const MN_CHECK: usize = 12;
/// Processes that reported.
const MN_REPORTED: usize = 16;
/// `+ 4 * i`: process `i`'s report: 1, its slot is 0; 2, it is not.
const MN_RESULTS: usize = 64;

/// Process `i`: registers a head in its copy of `page`, pending on `word` (in its mapping of
/// the memfd, inherited), waits to be told to check, then reports whether its slot is 0. A bare
/// fork: system calls only.
fn mn_process(sh: usize, i: usize, page: usize, word: usize, deadline: Instant) -> i32 {
    let head = page + MANY_HEAD;
    write_head(head, word);
    if let Err(e) = sys::set_robust_list(head, HEAD_LEN) {
        sys::write_u32(sh + MN_ERRNO, io_errno(&e));
        sys::fetch_add_u32(sh + MN_FAILED, 1);
        let _ = sys::futex_wake(sh + MN_READY, 1);
        return 1;
    }
    sys::fetch_add_u32(sh + MN_READY, 1);
    let _ = sys::futex_wake(sh + MN_READY, 1);
    let check = loop {
        match sys::read_u32(sh + MN_CHECK) {
            0 if Instant::now() > deadline => return 2,
            0 => {
                if sys::nap(sh + MN_CHECK, 0, Duration::from_secs(1)).is_err() {
                    return 3;
                }
            }
            c => break c,
        }
    };
    if check == 1 {
        let cleared = sys::read_usize(head + 16) == 0;
        sys::write_u32(sh + MN_RESULTS + 4 * i, if cleared { 1 } else { 2 });
        sys::fetch_add_u32(sh + MN_REPORTED, 1);
        let _ = sys::futex_wake(sh + MN_REPORTED, 1);
    }
    0
}

/// The test with `count` processes; returns the `#` note.
fn many_mappers_run(count: usize, starved: bool) -> Result<String, String> {
    ensure!(
        (1..=1 << 20).contains(&count),
        "{} processes: want 1 to 2^20",
        count
    );
    let fd = crate::cleanup::memfd(PAGE);
    let mine = crate::cleanup::map_fd(fd, PAGE, libc::MAP_SHARED);
    let sh = Shared::new((MN_RESULTS + 4 * count).next_multiple_of(PAGE));
    let shb = sh.base;
    // Each process writes its head into its own copy of this page.
    let page = sys::mmap(0, PAGE, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
        .map_err(|e| format!("mmap: {}", e))?;
    let limit = LIMIT + MANY_PER_PROCESS * count as u32;
    let deadline = Instant::now() + limit;
    let mut pids = Vec::with_capacity(count);
    let r = (|| -> Result<String, String> {
        // Bare forks of this process, single-threaded here: each child has just what it
        // touches (a few stack pages and its head's page), and no robust list but its own.
        for i in 0..count {
            let word = mine + MANY_WORD0 + 4 * (i % MANY_WORDS);
            match sys::fork_raw() {
                Ok(0) => {
                    let code = mn_process(shb, i, page, word, deadline);
                    // SAFETY: ends the child at once.
                    unsafe { libc::_exit(code) }
                }
                Ok(pid) => pids.push(pid),
                Err(e) => return Err(format!("fork() of process {}: {}", i, e)),
            }
        }
        let settled =
            || (sys::read_u32(shb + MN_READY) + sys::read_u32(shb + MN_FAILED)) as usize == count;
        wait_until(
            shb + MN_READY,
            deadline.saturating_duration_since(Instant::now()),
            "the processes registering their heads",
            settled,
            || None,
        )
        .map_err(|e| {
            format!(
                "{} ({} of {} registered)",
                e,
                sys::read_u32(shb + MN_READY),
                count
            )
        })?;
        let failed = sys::read_u32(shb + MN_FAILED);
        ensure!(
            failed == 0,
            "{} of {} processes: set_robust_list(): {}",
            failed,
            count,
            std::io::Error::from_raw_os_error(sys::read_u32(shb + MN_ERRNO) as i32)
        );
        let start = Instant::now();
        let n = if starved {
            let _armed = FailNoSleep::arm()?;
            cleanup(mine, PAGE)
        } else {
            cleanup(mine, PAGE)
        }?;
        let took = start.elapsed();
        sys::write_u32(shb + MN_CHECK, 1);
        sys::futex_wake(shb + MN_CHECK, i32::MAX).map_err(|e| format!("futex_wake: {}", e))?;
        wait_until(
            shb + MN_REPORTED,
            deadline.saturating_duration_since(Instant::now()) + LIMIT,
            "the processes reporting their slots",
            || sys::read_u32(shb + MN_REPORTED) as usize == count,
            || None,
        )
        .map_err(|e| {
            format!(
                "{} ({} of {} reported)",
                e,
                sys::read_u32(shb + MN_REPORTED),
                count
            )
        })?;
        let kept: Vec<usize> = (0..count)
            .filter(|&i| sys::read_u32(shb + MN_RESULTS + 4 * i) != 1)
            .collect();
        ensure!(
            n == count as i64 && kept.is_empty(),
            "one call on the memfd mapped by {} processes returned {} (want {}); {} processes \
             still have their slot set afterwards (e.g. process {:?}, word {:?})",
            count,
            n,
            count,
            kept.len(),
            kept.first(),
            kept.first().map(|i| i % MANY_WORDS)
        );
        Ok(format!(
            "{} processes, their slots on {} words of one memfd page: one call cleared every \
             slot, in {} ms",
            count,
            MANY_WORDS.min(count),
            took.as_millis()
        ))
    })();
    if r.is_err() {
        sys::write_u32(shb + MN_CHECK, 2);
        let _ = sys::futex_wake(shb + MN_CHECK, i32::MAX);
    }
    // Reap every process, whatever happened; kill those that do not end.
    let (mut bad, mut hung) = (0, 0);
    for &pid in &pids {
        match sys::wait_pid_timeout(
            pid,
            deadline.saturating_duration_since(Instant::now()) + LIMIT,
        ) {
            Some(st) if exited_ok(st) => {}
            Some(_) => bad += 1,
            None => {
                hung += 1;
                kill_and_reap(pid);
            }
        }
    }
    let note = r?;
    ensure!(
        bad == 0 && hung == 0,
        "{} of {} processes failed, {} did not exit",
        bad,
        count,
        hung
    );
    Ok(note)
}

/// Many processes map one memfd (`MAP_SHARED`, one page), each with a robust list head of its
/// own in a private page, pending on a word of the memfd (16 words, each shared by many of
/// them); one call on the memfd's page must return the number of processes, and each process
/// must then find its own slot 0. 256 processes here; `robust-harness many-mappers COUNT` for
/// more (`make stress`: 4,096). The processes are bare forks of the single-threaded test, so
/// each costs little memory.
pub fn many_processes_one_memfd(_: &Ctx) -> R {
    let note = many_mappers_run(MANY_DEFAULT, false)?;
    println!("# {}: {}", MANY_NAME, note);
    Ok(())
}

/// `robust-harness many-mappers [COUNT]`, with the module loaded: the case with COUNT processes
/// (default 256); prints a one-test KTAP document.
pub fn many_mappers(count: usize) -> i32 {
    let r = many_mappers_run(count, false);
    println!("KTAP version 1");
    println!("1..1");
    match r {
        Ok(note) => {
            println!("# {}: {}", MANY_NAME, note);
            println!("ok 1 {}", MANY_NAME);
            0
        }
        Err(e) => {
            println!("# {}: {} processes: {}", MANY_NAME, count, e);
            println!("not ok 1 {}", MANY_NAME);
            1
        }
    }
}

// ---------------------------------------------------------------------------------------------
// hardening_no_atomic_allocation

/// The failslab fault injector's settings (`Documentation/fault-injection/`).
const FAILSLAB: &str = "/sys/kernel/debug/failslab";

/// While alive, every slab allocation of the current thread that cannot sleep fails (failslab
/// with `task-filter`, so only this thread's, and `ignore-gfp-wait`): what a large atomic
/// allocation meets on a loaded machine, made certain. Armed only after a control: with
/// `ignore-gfp-wait` off, an `open()` (a `GFP_KERNEL` allocation) must fail, so the injector
/// is known to act on this thread.
struct FailNoSleep {
    make_it_fail: std::fs::File,
    /// The injector's settings before, restored on drop.
    saved: Vec<(&'static str, String)>,
}

/// The failslab settings [`FailNoSleep`] changes, and the values it gives them (probability
/// last, once armed).
const FAILSLAB_SET: [(&str, &str); 8] = [
    ("probability", "0"),
    ("interval", "1"),
    ("times", "-1"),
    ("space", "0"),
    ("verbose", "0"),
    ("task-filter", "Y"),
    ("cache-filter", "N"),
    ("ignore-gfp-wait", "N"),
];

impl FailNoSleep {
    fn arm() -> Result<FailNoSleep, String> {
        ensure!(
            std::path::Path::new(FAILSLAB).exists(),
            "{} missing: the test kernel needs CONFIG_FAILSLAB and CONFIG_FAULT_INJECTION_DEBUG_FS",
            FAILSLAB
        );
        let mut saved = Vec::new();
        for (name, _) in FAILSLAB_SET {
            let path = format!("{}/{}", FAILSLAB, name);
            let v = std::fs::read_to_string(&path).map_err(|e| format!("{}: {}", path, e))?;
            saved.push((name, v.trim().to_string()));
        }
        // Opened before arming: an open allocates; a write to these files does not.
        let open = |path: &str| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| format!("{}: {}", path, e))
        };
        let make_it_fail = open("/proc/thread-self/make-it-fail")?;
        // From here on, dropping the guard restores what was there.
        let armed = FailNoSleep {
            make_it_fail,
            saved,
        };
        for (name, v) in FAILSLAB_SET {
            std::fs::write(format!("{}/{}", FAILSLAB, name), v)
                .map_err(|e| format!("{}/{} = {}: {}", FAILSLAB, name, v, e))?;
        }
        let probability = open(&format!("{}/probability", FAILSLAB))?;
        let ignore_wait = open(&format!("{}/ignore-gfp-wait", FAILSLAB))?;
        let write = |mut f: &std::fs::File, v: &str| {
            use std::io::Write;
            f.write_all(v.as_bytes())
                .map_err(|e| format!("failslab: writing {}: {}", v, e))
        };
        armed.switch(true)?;
        write(&probability, "100")?;
        let control = std::fs::File::open("/dev/null");
        write(&ignore_wait, "Y")?;
        ensure!(
            control
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::ENOMEM)),
            "failslab armed for this thread, open() gave {:?}, not ENOMEM: the injector does \
             not act",
            control.map(|_| ())
        );
        Ok(armed)
    }

    fn switch(&self, on: bool) -> Result<(), String> {
        use std::io::Write;
        (&self.make_it_fail)
            .write_all(if on { b"1" } else { b"0" })
            .map_err(|e| format!("make-it-fail: {}", e))
    }
}

impl Drop for FailNoSleep {
    fn drop(&mut self) {
        let _ = self.switch(false);
        for (name, v) in &self.saved {
            let _ = std::fs::write(format!("{}/{}", FAILSLAB, name), v);
        }
    }
}

/// [`many_processes_one_memfd`] with 64 processes, the call made while every allocation of
/// the calling thread that cannot sleep fails: the call must clear every slot all the same.
/// (Growing the vector of windows with `GFP_ATOMIC` under `i_mmap_rwsem`, the way the first
/// version did, made it fail with `ENOMEM`.)
pub fn no_atomic_allocation(_: &Ctx) -> R {
    let note = many_mappers_run(64, true)?;
    println!("# hardening_no_atomic_allocation: {}", note);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hardening_unaligned_head

/// What `hardening_unaligned_head` expects of a `list_op_pending` slot that is not naturally
/// aligned: `true`, that the call clears it like any other (returns 1, the slot 0); `false`,
/// that it leaves it alone, returns 0 and counts it in debugfs `cleanup_unaligned`, the
/// documented behaviour (cleanup.rst, "What it cannot fix": no compare-and-exchange on it is
/// atomic against its owner's own stores on every architecture, and on x86 one across a cache
/// line is a split lock). Before the counter, the module left it alone silently.
const UNALIGNED_SLOT_CLEARED: bool = false;

/// Where the heads lie in their page: 4 mod 8, so that `list_op_pending` (at +16) is 4 mod 8
/// too; the head (24 bytes) lies within one 64-byte cache line (0x100-0x13f), far from the
/// page's ends.
const U_HEAD: usize = 0x104;
/// The futex word, in another page.
const U_WORD: usize = 0x100;
// The unaligned case's shared page: holder `i` publishes its TID at `U_READY + 4 * i`, or the
// step that failed at `U_FAILED + 4 * i` and the errno at `U_ERRNO + 4 * i`; `U_GO` releases
// them all.
const U_READY: usize = 0x800;
const U_FAILED: usize = 0x810;
const U_ERRNO: usize = 0x820;
const U_GO: usize = 0x830;
const U_WHO: [&str; 2] = [
    "holder thread (head and word in private memory of this process)",
    "holder process (head in shared memory, word in shared memory)",
];

fn u_step(step: u32) -> &'static str {
    match step {
        1 => "set_robust_list() of the unaligned head",
        2 => "get_robust_list() does not return the head registered",
        3 => "futex_wait() for the go",
        _ => "?",
    }
}

/// Holder `i`: registers `head`, checks that the kernel recorded it as given, publishes its TID
/// and sleeps until the go. Returns 0, or the step that failed (also published).
fn u_hold(sh: usize, i: usize, head: usize) -> u32 {
    let fail = |step: u32, e: u32| {
        sys::write_u32(sh + U_ERRNO + 4 * i, e);
        sys::write_u32(sh + U_FAILED + 4 * i, step);
        let _ = sys::futex_wake(sh + U_READY + 4 * i, 1);
        step
    };
    if let Err(e) = sys::set_robust_list(head, HEAD_LEN) {
        return fail(1, io_errno(&e));
    }
    match sys::get_robust_list() {
        Ok(h) if h == head => {}
        Ok(_) => return fail(2, 0),
        Err(e) => return fail(2, io_errno(&e)),
    }
    sys::write_u32(sh + U_READY + 4 * i, sys::gettid());
    let _ = sys::futex_wake(sh + U_READY + 4 * i, 1);
    let deadline = Instant::now() + 2 * LIMIT;
    while sys::read_u32(sh + U_GO) == 0 && Instant::now() < deadline {
        if let Err(e) = sys::nap(sh + U_GO, 0, Duration::from_secs(1)) {
            return fail(3, io_errno(&e));
        }
    }
    0
}

/// A robust list head registered at an address that is not naturally aligned (8-byte fields at
/// an address 4 mod 8, within one page and one cache line), with `list_op_pending` on a word W.
/// The exit walk handles such a head (reads are unaligned, as `get_user()` allows); so must
/// the call. Two holders: a thread of this process (head and W in private pages of this
/// process, as the brief asks), and a forked process (head in shared memory, W in shared
/// memory, so that its head is read and cleared through another mm). For each, one call on W:
/// with [`UNALIGNED_SLOT_CLEARED`], it must return 1 and the slot be 0; without, return 0 and
/// leave the slot alone.
pub fn unaligned_head(_: &Ctx) -> R {
    let sh = Shared::new(PAGE);
    let shb = sh.base;
    let (t_heads, t_words) = (sys::private_anon(PAGE), sys::private_anon(PAGE));
    let (p_heads, p_words) = (Shared::new(PAGE), Shared::new(PAGE));
    let heads = [t_heads + U_HEAD, p_heads.at(U_HEAD)];
    let words = [t_words + U_WORD, p_words.at(U_WORD)];
    for i in 0..2 {
        write_head(heads[i], words[i]);
        ensure!(
            (heads[i] + 16) % 8 == 4,
            "slot at {:#x}: naturally aligned",
            heads[i] + 16
        );
    }
    // Forked first, while this process is single-threaded.
    let pid = sys::fork_with(|| u_hold(shb, 1, heads[1]) as i32);
    let r = std::thread::scope(|s| -> R {
        let holder = s.spawn(|| u_hold(shb, 0, heads[0]));
        let r = (|| -> R {
            for (i, who) in U_WHO.iter().enumerate() {
                wait_until(
                    shb + U_READY + 4 * i,
                    LIMIT,
                    who,
                    || sys::read_u32(shb + U_READY + 4 * i) != 0,
                    || {
                        reported(shb, U_FAILED + 4 * i, U_ERRNO + 4 * i, u_step)
                            .map(|e| format!("{}: {}", who, e))
                    },
                )?;
            }
            for (i, who) in U_WHO.iter().enumerate() {
                let slot = heads[i] + 16;
                let armed = sys::read_usize_unaligned(slot);
                ensure_eq!(armed, pending_for(words[i]));
                let skipped = counter("cleanup_unaligned")?;
                let n = cleanup(words[i], 4).map_err(|e| format!("{}: {}", who, e))?;
                if !UNALIGNED_SLOT_CLEARED {
                    ensure!(
                        counter("cleanup_unaligned")? == skipped + 1,
                        "{}: the slot left alone was not counted in cleanup_unaligned",
                        who
                    );
                }
                let after = sys::read_usize_unaligned(slot);
                let (want, want_slot) = if UNALIGNED_SLOT_CLEARED {
                    (1, 0)
                } else {
                    (0, armed)
                };
                ensure!(
                    n == want && after == want_slot,
                    "{}: slot at {:#x} (4 mod 8): the call returned {}, the slot is then {:#x}; \
                     want {} and {:#x} ({})",
                    who,
                    slot,
                    n,
                    after,
                    want,
                    want_slot,
                    if UNALIGNED_SLOT_CLEARED {
                        "UNALIGNED_SLOT_CLEARED: an unaligned slot is cleared like any other"
                    } else {
                        "UNALIGNED_SLOT_CLEARED is false: an unaligned slot is left alone"
                    }
                );
            }
            Ok(())
        })();
        sys::write_u32(shb + U_GO, 1);
        let _ = sys::futex_wake(shb + U_GO, i32::MAX);
        let step = holder
            .join()
            .map_err(|_| "the holder thread panicked".to_string())?;
        r?;
        ensure!(step == 0, "{}: {}", U_WHO[0], u_step(step));
        Ok(())
    });
    let Some(status) = sys::wait_pid_timeout(pid, LIMIT) else {
        kill_and_reap(pid);
        r?;
        return Err(format!("{}: did not exit within {:?}", U_WHO[1], LIMIT));
    };
    r?;
    ensure!(exited_ok(status), "{}: exit status {:#x}", U_WHO[1], status);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hardening_remapped_while_call_waits

/// `_IOWR(0xaa, 0x03, struct uffdio_copy)`.
const UFFDIO_COPY: libc::Ioctl = 0xc028_aa03;

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// A userfaultfd (kernel faults handled too: the guest runs as root) and a private page
/// registered with it for missing faults, never touched: every access to it waits until
/// [`uffd_serve`] fills it.
fn uffd_page() -> Result<(i32, usize), String> {
    // SAFETY: creates a userfaultfd.
    let uffd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) } as i32;
    ensure!(
        uffd >= 0,
        "userfaultfd(): {}",
        std::io::Error::last_os_error()
    );
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: the handshake, with a valid `struct uffdio_api`.
    let r = unsafe { libc::ioctl(uffd, UFFDIO_API, &mut api) };
    ensure!(r == 0, "UFFDIO_API: {}", std::io::Error::last_os_error());
    let page = sys::private_anon(PAGE);
    let mut reg = UffdioRegister {
        start: page as u64,
        len: PAGE as u64,
        mode: UFFDIO_REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: registers our own mapping, with a valid `struct uffdio_register`.
    let r = unsafe { libc::ioctl(uffd, UFFDIO_REGISTER, &mut reg) };
    ensure!(
        r == 0,
        "UFFDIO_REGISTER: {}",
        std::io::Error::last_os_error()
    );
    Ok((uffd, page))
}

/// Fills the page of [`uffd_page`] with a copy of `src`, waking whoever waits on it.
fn uffd_serve(uffd: i32, page: usize, src: usize) -> Result<(), String> {
    let mut copy = UffdioCopy {
        dst: page as u64,
        src: src as u64,
        len: PAGE as u64,
        mode: 0,
        copy: 0,
    };
    // SAFETY: copies our own page into our registered range.
    let r = unsafe { libc::ioctl(uffd, UFFDIO_COPY, &mut copy) };
    ensure!(r == 0, "UFFDIO_COPY: {}", std::io::Error::last_os_error());
    Ok(())
}

/// Waits until the thread whose TID is stored at `tid_at` (0 until then) sleeps in a
/// userfaultfd fault; fails if `returned` reads non-zero first (its call did not wait), or
/// after [`LIMIT`].
fn wait_in_userfault(tid_at: usize, returned: usize, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let tid = sys::read_u32(tid_at);
        let st = (tid != 0)
            .then(|| sys::task_state(std::process::id() as i32, tid))
            .flatten();
        if matches!(&st, Some((_, w)) if w.contains("handle_userfault")) {
            return Ok(());
        }
        ensure!(
            sys::read_u32(returned) == 0,
            "the call returned without waiting on {}: nothing was tested",
            what
        );
        ensure!(
            Instant::now() < deadline,
            "the call never waited on {}: {:?}",
            what,
            st
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The race, made deterministic: the head of a thread T of this process lies in a page
/// registered with userfaultfd and not populated, so that the call's read of it waits until the
/// test serves it. Its slot will point at the word at X + 0x100, X where this process maps
/// memfd A (it maps A at Y too). A caller thread calls on A's word through Y: the call finds
/// the windows of A (X and Y in this mm), then waits in its read of T's head. Meanwhile the
/// test unmaps X and maps memfd B there, and only then serves the fault: T's slot points at
/// X + 0x100, now B's memory, which a lock of B may be in an operation on. The call must
/// return 0 and leave the slot alone. (Before the check, the module compared the window it had
/// found before the remap, and cleared the slot.)
pub fn remapped_while_call_waits(_: &Ctx) -> R {
    let (a, b) = (crate::cleanup::memfd(PAGE), crate::cleanup::memfd(PAGE));
    let x = crate::cleanup::map_fd(a, PAGE, libc::MAP_SHARED);
    let y = crate::cleanup::map_fd(a, PAGE, libc::MAP_SHARED);
    let (uffd, page) = uffd_page()?;
    let head = page + 0x100;
    let sh = Shared::new(PAGE);
    let shb = sh.base;
    // sh: T's TID once registered (0), the go for T (4), the caller's TID (8), 1 once its call
    // returned (12).
    std::thread::scope(|s| -> R {
        let holder = s.spawn(move || -> R {
            sys::set_robust_list(head, HEAD_LEN)
                .map_err(|e| format!("T: set_robust_list: {}", e))?;
            sys::write_u32(shb, sys::gettid());
            let deadline = Instant::now() + 2 * LIMIT;
            while sys::read_u32(shb + 4) == 0 && Instant::now() < deadline {
                sys::nap(shb + 4, 0, Duration::from_secs(1)).map_err(|e| format!("T: {}", e))?;
            }
            // Its slot is left as it is: its exit walk wakes a waiter of B's word, if any.
            Ok(())
        });
        let r = (|| -> R {
            wait_until(
                shb,
                LIMIT,
                "T registering its head",
                || sys::read_u32(shb) != 0,
                || None,
            )?;
            let caller = s.spawn(move || {
                sys::write_u32(shb + 8, sys::gettid());
                let r = cleanup(y + 0x100, 4);
                sys::write_u32(shb + 12, 1);
                r
            });
            // The caller waits in its read of T's head (the unserved page).
            let waiting = wait_in_userfault(shb + 8, shb + 12, "T's head");
            // X now maps B; then T's head appears, pending on X + 0x100. Served in every case, so
            // that the caller returns.
            let remapped = waiting.and_then(|()| {
                sys::munmap(x, PAGE)
                    .and_then(|_| map_at(x, b, 0, libc::MAP_FIXED_NOREPLACE))
                    .map_err(|e| format!("remapping X to B: {}", e))
            });
            let src = sys::private_anon(PAGE);
            write_head(src + 0x100, x + 0x100);
            sys::write_usize(src + 0x100, head); // list.next: the head itself
            let copied = uffd_serve(uffd, page, src);
            let result = caller
                .join()
                .map_err(|_| "the caller panicked".to_string())?;
            remapped?;
            copied?;
            let n = result?;
            let slot = sys::read_usize(head + 16);
            let armed = pending_for(x + 0x100);
            ensure!(
                n == 0 && slot == armed,
                "the call on A's word returned {} and T's slot is {:#x} (armed: {:#x}): a slot \
                 whose word X + 0x100 was remapped to B while the call waited was {}",
                n,
                slot,
                armed,
                if slot == 0 { "cleared" } else { "changed" }
            );
            Ok(())
        })();
        sys::write_u32(shb + 4, 1);
        let _ = sys::futex_wake(shb + 4, 1);
        let held = holder.join().map_err(|_| "T panicked".to_string())?;
        r.and(held)
    })
}

// ---------------------------------------------------------------------------------------------
// hardening_exited_heads_not_missed

/// Threads that exit while a call on their process's memory runs are not counted as missed.
/// The call copies its process's heads, then reads them with no lock held. The heads of 15
/// threads C lie in a page registered with userfaultfd and never served, so the call waits in
/// its read of the first it reads. Meanwhile the Cs exit (their exit walks cannot read their
/// heads either: an exiting task's fault on such a page fails at once), the page is unmapped,
/// and the userfaultfd closed, which wakes the call: its reads of the Cs' heads fault. But the
/// Cs have exited: nothing is left for an exit walk to act on, and nothing was missed. The call
/// must return 0 and leave debugfs `cleanup_missed` unchanged. (Before the check, it grew by
/// 15: a thread that exited and whose stack, holding glibc's head, was unmapped, was counted.)
pub fn exited_heads_not_missed(_: &Ctx) -> R {
    const CS: usize = 15;
    let (uffd, page) = uffd_page()?;
    let target = sys::private_anon(PAGE); // the call's range: nobody's word
    let sh = Shared::new(PAGE);
    let shb = sh.base;
    // sh: the Cs registered (0), the go for the Cs (4), the caller's TID (8), 1 once its call
    // returned (12).
    let r = std::thread::scope(|s| -> R {
        let cs: Vec<_> = (0..CS)
            .map(|i| {
                s.spawn(move || -> R {
                    sys::set_robust_list(page + 64 * i, HEAD_LEN)
                        .map_err(|e| format!("C{}: set_robust_list: {}", i, e))?;
                    sys::fetch_add_u32(shb, 1);
                    let deadline = Instant::now() + 2 * LIMIT;
                    while sys::read_u32(shb + 4) == 0 && Instant::now() < deadline {
                        sys::nap(shb + 4, 0, Duration::from_secs(1))
                            .map_err(|e| format!("C{}: {}", i, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        let r = (|| -> R {
            wait_until(
                shb,
                LIMIT,
                "the Cs registering their heads",
                || sys::read_u32(shb) == CS as u32,
                || None,
            )?;
            let missed = counter("cleanup_missed")?;
            let caller = s.spawn(move || {
                sys::write_u32(shb + 8, sys::gettid());
                let r = cleanup(target, 4);
                sys::write_u32(shb + 12, 1);
                r
            });
            let waiting = wait_in_userfault(shb + 8, shb + 12, "a C's head");
            // The Cs exit, their heads' page goes, and the userfaultfd with it, which wakes
            // the call in every case.
            sys::write_u32(shb + 4, 1);
            let _ = sys::futex_wake(shb + 4, i32::MAX);
            let mut exited = Ok(());
            for (i, c) in cs.into_iter().enumerate() {
                let r = c.join().map_err(|_| format!("C{} panicked", i))?;
                exited = exited.and(r);
            }
            let unmapped = sys::munmap(page, PAGE).map_err(|e| format!("munmap: {}", e));
            // SAFETY: our own descriptor, no longer used.
            let closed = unsafe { libc::close(uffd) };
            let result = caller
                .join()
                .map_err(|_| "the caller panicked".to_string())?;
            waiting?;
            exited?;
            unmapped?;
            ensure!(closed == 0, "close: {}", std::io::Error::last_os_error());
            let n = result?;
            let now = counter("cleanup_missed")?;
            ensure!(
                n == 0 && now == missed,
                "the call returned {} and cleanup_missed went {} -> {}: heads of threads that \
                 exited while the call waited were counted as missed",
                n,
                missed,
                now
            );
            Ok(())
        })();
        sys::write_u32(shb + 4, 1);
        let _ = sys::futex_wake(shb + 4, i32::MAX);
        r
    });
    r
}
