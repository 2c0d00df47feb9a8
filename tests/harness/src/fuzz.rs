//! `robust-harness fuzz MODULE.ko COMPAT32 SEEDS [SELF]`: differential fuzzing of the exit walk.
//!
//! A seeded generator builds a random robust list in a memfd: 0 to past 2048 entries, cycles,
//! pointers to unmapped, read-only and `PROT_NONE` pages, kernel and non-canonical addresses,
//! unaligned entries and heads, the PI bit on `next` and on `list_op_pending`, every class of
//! `futex_offset` (negative, unaligned, huge, wrapping in 32 bits), futex words owned by the
//! dying task with and without `FUTEX_WAITERS`, by others, 0; and sometimes waiters asleep on
//! owned words. A server process per ABI (this program's `fuzz-server` mode for native lists,
//! `compat32 fuzz-server` for compat lists) maps the memfd at a fixed address (so that every
//! run sees identical pointers); for each case a new thread of it stores its TID in the owned
//! words, sets the page protections, registers the head and dies. The outcome (every word of
//! the memfd, the TID normalised, and which waiters the walk woke) is hashed.
//!
//! Every seed runs under the built-in walker, then under the module's, native and compat; a
//! seed whose outcomes differ is a mismatch: its seed and both outcomes are printed, and the run
//! fails. Then, under the module's walker again, every seed with about half of its writable
//! pages unmapped by the dying thread once its list is registered (`unmap.rst`): the model of
//! that walk is the built-in walk of the case with nothing unmapped, whose outcome it must
//! equal (tests `fuzz_*_unmapped`). With SELF, the built-in walker runs a second time and must agree with itself (the
//! outcomes are deterministic). Prints a KTAP document, one test per ABI.

use crate::bench::set_walker;
use crate::sys::{self, FUTEX_OWNER_DIED, FUTEX_WAITERS, OTHER_TID};
use std::time::Duration;

const PAGE: usize = 4096;
/// Pages of list memory; the control page follows them in the memfd.
const PAGES: usize = 8;
const LEN: usize = PAGES * PAGE;
/// Where the child maps the list memory: the same in every run. The low 30 bits of every
/// pointer into it are at least 0x1000_0000, so that no pointer the walk reads as a futex word
/// looks owned by the dying task (TIDs stay below PID_MAX_LIMIT, 0x40_0000): with small low
/// bits, whether one did would depend on the TID the child happened to get.
const FIX64: usize = 0x6000_7000_0000;
const FIX32: usize = 0x5000_0000;
const TID_MASK: u32 = 0x3fff_ffff;
const MAX_OWNED: usize = 500;

/// Control page words (u32): the child's TID once ready, the go word, the head's offset, the
/// page modes, and the owned words as (offset, flags) pairs.
const C_READY: usize = 0;
const C_GO: usize = 4;
const C_HEAD: usize = 8;
const C_MODES: usize = 16;
const C_NOWNED: usize = 64;
const C_OWNED: usize = 68;
/// The server's protocol words, at the end of the control page (the harness does not copy them
/// with a case): the case requested, the case done, and the dying thread's status.
const C_SEQ: usize = 4080;
const C_DONE: usize = 4084;
const C_STATUS: usize = 4088;
const QUIT: u32 = u32::MAX;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Abi {
    Native,
    Compat,
}

impl Abi {
    fn fix(self) -> usize {
        match self {
            Abi::Native => FIX64,
            Abi::Compat => FIX32,
        }
    }

    fn ptr(self) -> usize {
        match self {
            Abi::Native => 8,
            Abi::Compat => 4,
        }
    }
}

/// xorshift64*: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `p` percent.
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// One generated case: the memfd's bytes (list memory and control page) and the waiters.
struct Case {
    mem: Vec<u8>,
    /// Offsets of owned words with waiters to put to sleep on them.
    waiters: Vec<usize>,
}

fn put32(mem: &mut [u8], off: usize, v: u32) {
    mem[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_ptr(mem: &mut [u8], abi: Abi, off: usize, v: u64) {
    match abi {
        Abi::Native => mem[off..off + 8].copy_from_slice(&v.to_ne_bytes()),
        Abi::Compat => put32(mem, off, v as u32),
    }
}

/// Page modes: 0 read-write, 1 read-only, 2 `PROT_NONE`, 3 unmapped.
const RW: u32 = 0;

fn generate(seed: u64, abi: Abi) -> Case {
    let mut r = Rng::new(seed ^ if abi == Abi::Compat { 0x32 } else { 0x64 });
    let mut mem = vec![0u8; LEN + PAGE];
    let fix = abi.fix() as u64;
    let psz = abi.ptr();
    let n = match r.below(20) {
        0..=11 => r.below(17) as usize,
        12..=16 => 16 + r.below(300) as usize,
        _ => 2040 + r.below(60) as usize,
    };
    // Any fault or unaligned futex word ends the walk, and a long list almost always has one:
    // half of the long lists have none (every page readable, every entry and futex word
    // aligned and inside the list memory), so that their walk reaches the limit.
    let clean = n > 300 && r.pct(50);
    let modes: Vec<u32> = (0..PAGES)
        .map(|i| {
            if i == 0 || r.pct(80) {
                RW
            } else if clean {
                1
            } else {
                1 + r.below(3) as u32
            }
        })
        .collect();
    // Addresses that fault, or that no walk may follow, for this ABI.
    let bad = |r: &mut Rng| -> u64 {
        let page = |m: u32| modes.iter().position(|&x| x == m);
        match (r.below(8), abi) {
            (0, _) => 0,
            (1, Abi::Native) => 0xffff_8880_0000_0000,
            (1, Abi::Compat) => 0xffff_e000,
            (2, Abi::Native) => 0x8000_0000_0000,
            (2, Abi::Compat) => 0xffff_fffc,
            (3, _) => fix + (page(3).unwrap_or(PAGES) * PAGE) as u64 + 8,
            (4, _) => fix + (page(2).unwrap_or(PAGES) * PAGE) as u64 + 16,
            (5, _) => fix + (page(1).unwrap_or(PAGES) * PAGE) as u64 + 24,
            (6, _) => (fix + r.below(LEN as u64)) | 1,
            _ => fix + LEN as u64 + 0x10_0000,
        }
    };
    // Distinct slots for the head and the entries, in the list memory (clean: away from its
    // ends, so that every futex word is inside).
    let slots = LEN / psz;
    let margin = if clean { 16 } else { 0 };
    let mut used = std::collections::HashSet::new();
    let mut slot = |r: &mut Rng| loop {
        let s = margin + r.below((slots - 4 - 2 * margin) as u64) as usize;
        if used.insert(s) {
            return s * psz;
        }
    };
    let mut head = slot(&mut r);
    if !clean && r.pct(3) {
        head += 1 + r.below(psz as u64 - 1) as usize; // unaligned head
    }
    let entries: Vec<u64> = (0..n)
        .map(|_| {
            let mut e = fix + slot(&mut r) as u64;
            if !clean && r.pct(2) {
                e += 2; // an unaligned entry
            }
            e
        })
        .collect();
    let class = if clean {
        [0, 4, 8][r.below(3) as usize]
    } else {
        r.below(10)
    };
    let futex_offset: i64 = match class {
        0..=3 => -(r.below(5) as i64 * 4 + 0x18),
        4 | 5 => r.below(16) as i64 * 4 - 32,
        6 => r.below(64) as i64 * 2 + 1,
        7 => match abi {
            Abi::Native => {
                if r.pct(50) {
                    1 << 40
                } else {
                    -(1 << 40)
                }
            }
            Abi::Compat => {
                if r.pct(50) {
                    0x7fff_fff0
                } else {
                    -0x7fff_fff0
                }
            }
        },
        8 => 0,
        _ => r.below(LEN as u64) as i64 - (LEN / 2) as i64,
    };
    let pi = |r: &mut Rng| u64::from(r.pct(20));
    // The words the list's pointers occupy: never owned (the child's TID, which differs from
    // run to run, must not land in a pointer).
    let mut occupied = std::collections::HashSet::new();
    for start in entries
        .iter()
        .map(|&e| (e - fix) as usize)
        .chain((0..3).map(|i| head + i * psz))
    {
        for w in (start & !3..start + psz).step_by(4) {
            occupied.insert(w);
        }
    }
    // Futex words first (pointers written after them win where they overlap).
    let mut owned: Vec<(usize, u32)> = Vec::new();
    let word_of = |e: u64| -> Option<usize> {
        let w = match abi {
            Abi::Native => (e & !1).wrapping_add(futex_offset as u64),
            Abi::Compat => ((e as u32 & !1).wrapping_add(futex_offset as u32)) as u64,
        };
        let off = w.checked_sub(fix)? as usize;
        (off + 4 <= LEN && off.is_multiple_of(4)).then_some(off)
    };
    let pending = match r.below(10) {
        0..=3 => 0,
        4 | 5 if n > 0 => entries[r.below(n as u64) as usize] | pi(&mut r),
        4..=7 => (fix + slot(&mut r) as u64) | pi(&mut r),
        _ => bad(&mut r) | pi(&mut r),
    };
    let mut waiters = Vec::new();
    let want_waiters = r.pct(10);
    // In long lists, few words are owned, so that the owned ones reach the end of the list: the
    // entries around the walk's limit and the pending one keep the full chance, and slots for
    // them.
    let limit = sys::ROBUST_LIST_LIMIT;
    let near_limit = |i: usize| i + 8 >= limit && i < limit + 8 || i == n;
    for (i, e) in entries
        .iter()
        .copied()
        .chain(std::iter::once(pending & !1))
        .enumerate()
    {
        let Some(off) = word_of(e) else { continue };
        let rw = modes[off / PAGE] == RW;
        let room = if near_limit(i) {
            MAX_OWNED
        } else if n > 300 && !r.pct(15) {
            0
        } else {
            MAX_OWNED - 20
        };
        match r.below(6) {
            0..=2
                if rw
                    && owned.len() < room
                    && !occupied.contains(&off)
                    && !owned.iter().any(|o| o.0 == off) =>
            {
                let flags = match r.below(4) {
                    0 => 0,
                    1 => FUTEX_OWNER_DIED,
                    _ => FUTEX_WAITERS,
                };
                if flags == FUTEX_WAITERS && want_waiters && waiters.len() < 2 {
                    waiters.push(off);
                }
                owned.push((off, flags));
            }
            3 => put32(&mut mem, off, OTHER_TID),
            4 => put32(&mut mem, off, OTHER_TID | FUTEX_WAITERS),
            _ => put32(&mut mem, off, 0),
        }
    }
    // The list: head -> entries -> head (or a cycle, or a bad pointer).
    for (i, &e) in entries.iter().enumerate() {
        let next = if i + 1 < n {
            entries[i + 1] | pi(&mut r)
        } else {
            match r.below(10) {
                0..=7 => fix + head as u64,
                8 => entries[r.below(n as u64) as usize],
                _ => bad(&mut r),
            }
        };
        put_ptr(&mut mem, abi, (e - fix) as usize, next);
    }
    let first = if n > 0 {
        entries[0] | pi(&mut r)
    } else {
        fix + head as u64
    };
    put_ptr(&mut mem, abi, head, first);
    put_ptr(&mut mem, abi, head + psz, futex_offset as u64);
    put_ptr(&mut mem, abi, head + 2 * psz, pending);
    // The control page.
    let c = LEN;
    put32(&mut mem, c + C_HEAD, head as u32);
    for (i, &m) in modes.iter().enumerate() {
        put32(&mut mem, c + C_MODES + 4 * i, m);
    }
    put32(&mut mem, c + C_NOWNED, owned.len() as u32);
    for (i, &(off, flags)) in owned.iter().enumerate() {
        put32(&mut mem, c + C_OWNED + 8 * i, off as u32);
        put32(&mut mem, c + C_OWNED + 8 * i + 4, flags);
    }
    Case { mem, waiters }
}

/// The native side of a death: a thread of the server stores its TID in the owned words, sets
/// the page modes, registers the head, waits for the go, and exits. Only system calls.
fn native_death(c: usize) -> i32 {
    let tid = sys::gettid();
    for i in 0..sys::read_u32(c + C_NOWNED) as usize {
        let off = sys::read_u32(c + C_OWNED + 8 * i) as usize;
        let flags = sys::read_u32(c + C_OWNED + 8 * i + 4);
        sys::write_u32(FIX64 + off, tid | flags);
    }
    for p in 0..PAGES {
        let at = (FIX64 + p * PAGE) as *mut libc::c_void;
        // SAFETY: changes the server's own mapping of the list memory, which only this thread
        // uses while it runs.
        let r = unsafe {
            match sys::read_u32(c + C_MODES + 4 * p) {
                1 => libc::mprotect(at, PAGE, libc::PROT_READ),
                2 => libc::mprotect(at, PAGE, libc::PROT_NONE),
                3 => libc::munmap(at, PAGE),
                _ => 0,
            }
        };
        if r != 0 {
            return 3;
        }
    }
    let head = FIX64 + sys::read_u32(c + C_HEAD) as usize;
    if sys::set_robust_list(head, crate::list::HEAD_LEN).is_err() {
        return 4;
    }
    sys::write_u32(c + C_READY, tid);
    if sys::futex_wake(c + C_READY, 1).is_err() {
        return 5;
    }
    while sys::read_u32(c + C_GO) == 0 {
        match sys::futex_wait(c + C_GO, 0, Duration::from_secs(1)) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT)
                ) => {}
            Err(_) => return 5,
        }
    }
    // Mode 4: unmapped with the list registered, just before the death.
    for p in 0..PAGES {
        if sys::read_u32(c + C_MODES + 4 * p) == 4 && sys::munmap(FIX64 + p * PAGE, PAGE).is_err() {
            return 6;
        }
    }
    0
}

/// `robust-harness fuzz-server FD`: the native server (the 32-bit one is `compat32
/// fuzz-server`). For each case requested in the control page it maps the list memory at the
/// fixed address (undoing the last case's page modes) and runs one death in a new thread; it
/// reports when the thread has been joined (the exit walk precedes the clearing of the TID that
/// the join waits for). Returns its exit code.
pub fn server(fd: i32) -> i32 {
    // SAFETY: maps the control page of the memfd.
    let ctl = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            LEN as libc::off_t,
        )
    };
    if ctl == libc::MAP_FAILED {
        return 2;
    }
    let c = ctl as usize;
    let mut seq = 0;
    loop {
        while sys::read_u32(c + C_SEQ) == seq {
            let _ = sys::futex_wait(c + C_SEQ, seq, Duration::from_secs(1));
        }
        seq = sys::read_u32(c + C_SEQ);
        if seq == QUIT {
            return 0;
        }
        // SAFETY: maps the memfd over addresses nothing else uses (FIX64, chosen for this).
        let list = unsafe {
            libc::mmap(
                FIX64 as *mut _,
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        let status = if list as usize != FIX64 {
            2
        } else {
            std::thread::spawn(move || native_death(c))
                .join()
                .unwrap_or(7)
        };
        sys::write_u32(c + C_STATUS, status as u32);
        sys::write_u32(c + C_DONE, seq);
        if sys::futex_wake(c + C_DONE, 1).is_err() {
            return 8;
        }
    }
}

/// A running server of one ABI and the memfd it shares with the harness.
struct Server {
    pid: libc::pid_t,
    fd: i32,
    map: usize,
    seq: u32,
}

impl Server {
    fn start(abi: Abi, compat32: &str) -> Server {
        let fd = crate::cleanup::memfd(LEN + PAGE);
        let map = crate::cleanup::map_fd(fd, LEN + PAGE, libc::MAP_SHARED);
        // Both servers have the same command line: PROGRAM fuzz-server FD.
        let prog = match abi {
            Abi::Native => "/proc/self/exe",
            Abi::Compat => compat32,
        };
        let fdarg = std::ffi::CString::new(fd.to_string()).unwrap();
        let prog = std::ffi::CString::new(prog).unwrap();
        let argv = [
            prog.as_ptr(),
            c"fuzz-server".as_ptr(),
            fdarg.as_ptr(),
            std::ptr::null(),
        ];
        let pid = sys::fork_with(|| {
            // SAFETY: exec with NUL-terminated strings and a NULL-terminated argv.
            unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
            127
        });
        Server {
            pid,
            fd,
            map,
            seq: 0,
        }
    }

    /// True while the server process runs.
    fn alive(&self) -> bool {
        // SAFETY: polls our own child without reaping anything else.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), libc::WNOHANG) == 0 }
    }

    /// Waits (up to about 200 s) until the control word at `off` is not 0 and returns it.
    fn wait_word(&self, off: usize, what: &str) -> Result<u32, String> {
        let w = self.map + LEN + off;
        for _ in 0..20000 {
            let v = sys::read_u32(w);
            if v != 0 {
                return Ok(v);
            }
            ensure!(self.alive(), "the server died waiting for {}", what);
            let _ = sys::futex_wait(w, 0, Duration::from_millis(10));
        }
        Err(format!("timed out waiting for {}", what))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let c = self.map + LEN;
        sys::write_u32(c + C_SEQ, QUIT);
        let _ = sys::futex_wake(c + C_SEQ, 1);
        sys::write_u32(c + C_GO, 1);
        let _ = sys::futex_wake(c + C_GO, 1);
        let mut status = 0;
        for _ in 0..500 {
            // SAFETY: reaps our own child if it has exited.
            if unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kills and reaps the server if it is still there (ESRCH/ECHILD otherwise).
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, &mut status, 0);
            libc::munmap(self.map as *mut _, LEN + PAGE);
            libc::close(self.fd);
        }
    }
}

/// Runs one case under the walker in place; returns its outcome (normalised words, then one
/// word per waiter: 1 if the walk woke it).
///
/// The walk treats a word as owned when its TID bits are the dying thread's TID, which differs
/// from run to run. Words the case did not make owned can hold TID-sized values too (the high
/// half of a native pointer, a `futex_offset`, the halves of an unaligned pointer): if one
/// equals the TID the dying thread got, the outcome would depend on it, so the case runs again
/// with a new thread (another TID).
fn run(case: &Case, server: &mut Server) -> Result<Vec<u32>, String> {
    for _ in 0..10 {
        if let Some(out) = attempt(case, server)? {
            return Ok(out);
        }
    }
    Err("ten dying threads in a row had a TID the case holds".to_string())
}

/// True if a word of the case's list memory has `tid` in its TID bits.
fn holds_tid(case: &Case, tid: u32) -> bool {
    case.mem[..LEN]
        .chunks_exact(4)
        .any(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) & TID_MASK == tid)
}

/// One run of `case`; None if the dying thread's TID was in the case (see [`run`]).
fn attempt(case: &Case, server: &mut Server) -> Result<Option<Vec<u32>>, String> {
    let map = server.map;
    let c = map + LEN;
    // The case, up to the server's protocol words: READY and GO start at 0.
    // SAFETY: `map` maps LEN + PAGE bytes and the case is as long.
    unsafe { std::ptr::copy_nonoverlapping(case.mem.as_ptr(), map as *mut u8, LEN + C_SEQ) };
    server.seq = if server.seq + 1 == QUIT {
        1
    } else {
        server.seq + 1
    };
    sys::write_u32(c + C_DONE, 0);
    sys::write_u32(c + C_SEQ, server.seq);
    sys::futex_wake(c + C_SEQ, 1).map_err(|e| e.to_string())?;
    let tid = server.wait_word(C_READY, "the dying thread")?;
    if holds_tid(case, tid) {
        sys::write_u32(c + C_GO, 1);
        sys::futex_wake(c + C_GO, 1).map_err(|e| e.to_string())?;
        server.wait_word(C_DONE, "the thread's exit")?;
        return Ok(None);
    }
    // Waiters asleep on owned words (shared futexes: the memfd's pages).
    let waiters: Vec<_> = case
        .waiters
        .iter()
        .map(|&off| {
            let w = map + off;
            let v = sys::read_u32(w);
            let (tx, rx) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                let _ = tx.send(sys::gettid());
                let _ = sys::futex_wait(w, v, Duration::from_secs(60));
            });
            (w, t, rx.recv().unwrap_or(0))
        })
        .collect();
    for (_, _, wtid) in &waiters {
        ensure!(
            sys::wait_blocked_in_futex(sys::getpid(), *wtid),
            "a waiter never slept"
        );
    }
    sys::write_u32(c + C_GO, 1);
    sys::futex_wake(c + C_GO, 1).map_err(|e| e.to_string())?;
    let done = server.wait_word(C_DONE, "the thread's exit")?;
    ensure!(
        done == server.seq,
        "server answered case {}, not {}",
        done,
        server.seq
    );
    let status = sys::read_u32(c + C_STATUS);
    ensure!(status == 0, "dying thread status {}", status);
    let mut out: Vec<u32> = (0..LEN / 4)
        .map(|i| {
            let w = sys::read_u32(map + 4 * i);
            if w & TID_MASK == tid {
                (w & !TID_MASK) | TID_MASK
            } else {
                w
            }
        })
        .collect();
    for (w, t, _) in waiters {
        // The walk dequeued the waiter it woke: nobody is left for this wake.
        let left = sys::futex_wake(w, i32::MAX).map_err(|e| e.to_string())?;
        out.push(u32::from(left == 0));
        t.join().map_err(|_| "waiter panicked".to_string())?;
    }
    Ok(Some(out))
}

fn hash(out: &[u32]) -> u64 {
    out.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &w| {
        (h ^ u64::from(w)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `case` with about half of its mapped, writable pages (mode 0) unmapped by the dying thread
/// once its list is registered (mode 4), chosen by `seed`: where the module's walk goes on
/// through the memfd, its outcome must be the built-in walk's on the case as generated.
fn unmapped(mut case: Case, seed: u64) -> Case {
    let mut rng = Rng::new(seed ^ 0x0075_6e6d_6170);
    for p in 0..PAGES {
        let at = LEN + C_MODES + 4 * p;
        let mode = u32::from_ne_bytes(case.mem[at..at + 4].try_into().unwrap());
        if mode == 0 && rng.pct(50) {
            put32(&mut case.mem, at, 4);
        }
    }
    case
}

/// One pass: the outcome hash of every seed under the walker in place (with pages unmapped
/// before the deaths if `unmap`, [`unmapped`]).
fn pass(abi: Abi, compat32: &str, seeds: u64, unmap: bool) -> Result<Vec<u64>, String> {
    let mut server = Server::start(abi, compat32);
    (0..seeds)
        .map(|s| {
            let case = generate(s, abi);
            let case = if unmap { unmapped(case, s) } else { case };
            let out = run(&case, &mut server).map_err(|e| format!("seed {}: {}", s, e))?;
            Ok(hash(&out))
        })
        .collect()
}

/// Prints the words where two outcomes of `seed` differ.
fn dump(abi: Abi, compat32: &str, module: &str, seed: u64) {
    let case = generate(seed, abi);
    set_walker(module, false);
    let a = run(&case, &mut Server::start(abi, compat32));
    set_walker(module, true);
    let b = run(&case, &mut Server::start(abi, compat32));
    match (a, b) {
        (Ok(a), Ok(b)) => {
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                if x != y {
                    let what = if i < LEN / 4 {
                        format!("word {:#x}", abi.fix() + 4 * i)
                    } else {
                        format!("waiter {} woken", i - LEN / 4)
                    };
                    println!(
                        "#   seed {}: {}: built-in {:#x}, module {:#x}",
                        seed, what, x, y
                    );
                }
            }
        }
        (a, b) => println!(
            "#   seed {}: built-in {:?}, module {:?}",
            seed,
            a.err(),
            b.err()
        ),
    }
}

fn differ(a: &[u64], b: &[u64]) -> Vec<u64> {
    (0..a.len() as u64)
        .filter(|&i| a[i as usize] != b[i as usize])
        .collect()
}

/// The ABIs, each a KTAP test.
const ABIS: [(Abi, &str); 2] = [(Abi::Native, "fuzz_native"), (Abi::Compat, "fuzz_compat")];

/// One pass of every ABI under the walker in place, side by side (a thread each: the guest has
/// two vCPUs; each ABI has its own server and memfd, so the outcomes do not interact).
fn passes(compat32: &str, seeds: u64, unmap: bool) -> Vec<Result<Vec<u64>, String>> {
    std::thread::scope(|s| {
        let threads: Vec<_> = ABIS
            .iter()
            .map(|&(abi, _)| s.spawn(move || pass(abi, compat32, seeds, unmap)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("the pass panicked".to_string()))
            })
            .collect()
    })
}

/// The verdict for one ABI from its passes: the built-in walker's, its second one, the module's.
fn verdict(
    abi: Abi,
    module: &str,
    compat32: &str,
    seeds: u64,
    c: &Result<Vec<u64>, String>,
    c_again: Option<&Result<Vec<u64>, String>>,
    rust: &Result<Vec<u64>, String>,
) -> Result<String, String> {
    let c = c.as_ref().map_err(|e| format!("built-in walker: {}", e))?;
    let rust = rust
        .as_ref()
        .map_err(|e| format!("module's walker: {}", e))?;
    let mut note = format!("{} seeds, {} deaths per walker", seeds, seeds);
    if let Some(again) = c_again {
        let again = again
            .as_ref()
            .map_err(|e| format!("built-in walker, second pass: {}", e))?;
        let m = differ(c, again);
        ensure!(
            m.is_empty(),
            "built-in walker against itself: {} mismatches, seeds {:?}",
            m.len(),
            &m[..m.len().min(20)]
        );
        note += "; built-in against itself: 0 mismatches";
    }
    let m = differ(c, rust);
    if !m.is_empty() {
        for &s in m.iter().take(3) {
            dump(abi, compat32, module, s);
        }
        set_walker(module, false);
        return Err(format!(
            "{} mismatches, seeds {:?}",
            m.len(),
            &m[..m.len().min(20)]
        ));
    }
    Ok(note + "; built-in against module: 0 mismatches")
}

pub fn main(module: &str, compat32: &str, seeds: u64, against_self: bool) -> i32 {
    println!("KTAP version 1");
    println!("1..4");
    let t = std::time::Instant::now();
    set_walker(module, false);
    let c = passes(compat32, seeds, false);
    let c_again = against_self.then(|| passes(compat32, seeds, false));
    set_walker(module, true);
    let rust = passes(compat32, seeds, false);
    let words = || crate::cases::counter("unmap_words").unwrap_or(0);
    let before = words();
    let rust_unmapped = passes(compat32, seeds, true);
    let through = words().saturating_sub(before);
    set_walker(module, false);
    println!(
        "# fuzz: {} passes of {} seeds, both ABIs side by side, in {:.0} s",
        if against_self { 4 } else { 3 },
        seeds,
        t.elapsed().as_secs_f64()
    );
    let mut failed = 0;
    for (i, &(abi, name)) in ABIS.iter().enumerate() {
        let again = c_again.as_ref().map(|a| &a[i]);
        match verdict(abi, module, compat32, seeds, &c[i], again, &rust[i]) {
            Ok(note) => {
                println!("# {}: {}", name, note);
                println!("ok {} {}", i + 1, name);
            }
            Err(e) => {
                println!("# {}: {}", name, e);
                println!("not ok {} {}", i + 1, name);
                failed = 1;
            }
        }
    }
    // The model of the module's walk through unmapped shared memory: the built-in walk of the
    // same case with nothing unmapped.
    for (i, &(abi, name)) in ABIS.iter().enumerate() {
        let n = ABIS.len() + i + 1;
        let name = format!("{}_unmapped", name);
        let verdict = match (&c[i], &rust_unmapped[i]) {
            (Ok(_), Ok(_)) if through == 0 => {
                Err("no futex word went through a record: the pass tested nothing".to_string())
            }
            (Ok(c), Ok(u)) => {
                let m = differ(c, u);
                if m.is_empty() {
                    Ok(format!(
                        "{} seeds, writable pages unmapped before each death: the module's \
                         walk equals the built-in walk of the case with nothing unmapped \
                         ({} futex words reached through records, both ABIs)",
                        seeds, through
                    ))
                } else {
                    Err(format!(
                        "{} mismatches ({:?}), seeds {:?}",
                        m.len(),
                        abi,
                        &m[..m.len().min(20)]
                    ))
                }
            }
            (Err(e), _) => Err(format!("built-in walker: {}", e)),
            (_, Err(e)) => Err(format!("module's walker, pages unmapped: {}", e)),
        };
        match verdict {
            Ok(note) => {
                println!("# {}: {}", name, note);
                println!("ok {} {}", n, name);
            }
            Err(e) => {
                println!("# {}: {}", name, e);
                println!("not ok {} {}", n, name);
                failed = 1;
            }
        }
    }
    failed
}
