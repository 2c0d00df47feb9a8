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
