// SPDX-License-Identifier: GPL-2.0

//! `librobust_cleanup.so`: makes an unmodified, dynamically linked glibc program call
//! `cleanup_robust_list(2)` where glibc would have to.
//!
//! ```text
//! LD_PRELOAD=/path/to/librobust_cleanup.so program ...
//! ```
//!
//! - `pthread_mutex_destroy()` of a robust mutex (recognised as glibc does, from the mutex's
//!   kind) first calls `cleanup_robust_list(&mutex, 4, 0)`: no task that maps the mutex's memory
//!   keeps a pending operation on it when the memory is reused.
//! - `munmap()`, `mremap()` that shrinks or moves, `mmap(MAP_FIXED)` and `shmat(SHM_REMAP)` over,
//!   and `shmdt()` of shared memory first call it with `CLEANUP_ROBUST_LIST_MM_ONLY` on the part
//!   that goes away: the caller's threads must not keep pointers to addresses it may map anew;
//!   other processes keep the memory at their own addresses, and are left alone. Shared mappings
//!   are known from the library's own record of the `mmap()`/`mremap()`/`shmat()` calls that made
//!   them; with none recorded near the range (the common case) the cost is two relaxed loads,
//!   and a range that overlaps none is seen to without the record's lock (a seqlock read), so
//!   that private memory, such as an allocator's, never waits for it. For a range that overlaps
//!   one, the lock is held across the call, the real function and the record's update (another
//!   thread's mapping cannot land in between and be forgotten), with all signals blocked (a
//!   signal handler may map and unmap); and across `fork()` and `_Fork()`.
//!   `mremap(MREMAP_DONTUNMAP)` leaves the old range mapped: nothing is cleared there.
//! - At load it checks the glibc version (the mutex layout), that no seccomp filter is installed
//!   (`Seccomp: 0` in `/proc/self/status`), and probes the system call: on an unknown glibc it
//!   prints one message and does nothing; under a seccomp filter (which may kill the process on a
//!   system call it does not know), or if the mode cannot be read, it does nothing (and says so
//!   if `ROBUST_CLEANUP_VERBOSE` is set); without the system call (`ENOSYS`: an unpatched
//!   kernel, or the module not loaded) it does nothing. A filter the program installs later is
//!   not seen: such a program must not use the library, unless its filter allows system call 500
//!   (or returns `ENOSYS` for it).
//! - The system call's result never changes what an interposed function returns, nor `errno`.
//!
//! It cannot cover static binaries, system calls made directly, memory a program reuses without
//! destroying the mutexes in it or unmapping it, or shared mappings made before it was loaded.
//! See Documentation/robust-futex/preload.rst.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(
    target_arch = "x86_64",
    target_pointer_width = "64",
    target_os = "linux",
    target_env = "gnu"
)))]
compile_error!("the glibc mutex layout is only known for x86_64 Linux");

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_long, c_void, CStr};
use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use libc::{off_t, pid_t, pthread_mutex_t, sigset_t, size_t};
use std::sync::Once;

/// `__NR_cleanup_robust_list` (include/uapi/linux/robust_cleanup.h).
const NR_CLEANUP_ROBUST_LIST: c_long = 500;
/// `CLEANUP_ROBUST_LIST_MM_ONLY`: only the tasks of the caller's address space.
const MM_ONLY: c_long = 1;

/// `offsetof(struct __pthread_mutex_s, __kind)` on x86_64 (sysdeps/nptl/bits/struct_mutex.h).
const KIND_OFFSET: usize = 16;
/// `PTHREAD_MUTEX_ROBUST_NORMAL_NP` (nptl/pthreadP.h): the kind bit of robust mutexes.
const KIND_ROBUST: c_int = 16;
/// glibc versions whose x86_64 mutex layout (`__lock` at 0, `__kind` at 16) is known: every
/// release since robust mutexes exist has it; newer ones are refused until checked.
const GLIBC_MINOR_KNOWN: core::ops::RangeInclusive<u32> = 5..=42;

const PAGE: usize = 4096;

const UNKNOWN: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

/// Whether the library acts: [`UNKNOWN`] until [`init`] ran, then [`ON`] or [`OFF`].
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static INIT: Once = Once::new();
/// A word of the library's own private memory, the target of the probe.
static PROBE: AtomicU32 = AtomicU32::new(0);

fn errno() -> c_int {
    // SAFETY: `__errno_location()` returns the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// Writes `msg` to standard error, unbuffered (no allocation, no lock).
fn say(msg: &[u8]) {
    // SAFETY: writes from a valid buffer; the result does not matter.
    let _ = unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// The glibc version's minor number if it is `2.N`.
fn glibc_minor(v: &CStr) -> Option<u32> {
    let v = v.to_str().ok()?;
    let rest = v.strip_prefix("2.")?;
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// The glibc version in use, or the value of `ROBUST_CLEANUP_GLIBC_VERSION` (to test the refusal
/// of an unknown layout).
fn glibc_version() -> &'static CStr {
    // SAFETY: `getenv()` with a NUL-terminated name; the result, if any, lives as long as the
    // environment, which the library does not change.
    let forced = unsafe { libc::getenv(c"ROBUST_CLEANUP_GLIBC_VERSION".as_ptr()) };
    if !forced.is_null() {
        // SAFETY: a NUL-terminated environment string.
        return unsafe { CStr::from_ptr(forced) };
    }
    extern "C" {
        fn gnu_get_libc_version() -> *const c_char;
    }
    // SAFETY: returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(gnu_get_libc_version()) }
}

/// Finds the `Seccomp:` line of `/proc/PID/status` text fed in pieces of any size, without
/// allocating (the text has no bound: `Groups:` can be long).
struct SeccompLine {
    /// The start of the current line (enough for `Seccomp:` and its value).
    line: [u8; 32],
    len: usize,
    /// The value of the first `Seccomp:` line: `Some(None)` if it is not a number.
    found: Option<Option<u32>>,
}

impl SeccompLine {
    const fn new() -> SeccompLine {
        SeccompLine {
            line: [0; 32],
            len: 0,
            found: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if self.len < self.line.len() {
                self.line[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn end_line(&mut self) {
        let line = &self.line[..self.len];
        self.len = 0;
        if self.found.is_some() {
            return;
        }
        if let Some(rest) = line.strip_prefix(b"Seccomp:") {
            let v = rest.trim_ascii();
            let number = !v.is_empty() && v.len() < 10 && v.iter().all(u8::is_ascii_digit);
            self.found =
                Some(number.then(|| v.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0'))));
        }
    }

    /// The mode (0 none, 1 strict, 2 filter) at the end of the text, if the line was there
    /// and its value a number.
    fn finish(mut self) -> Option<u32> {
        if self.len > 0 {
            self.end_line();
        }
        self.found.flatten()
    }
}

/// The caller's seccomp mode from `/proc/self/status`, read to its end: `None` if the file
/// cannot be read, or has no `Seccomp:` line (a kernel without `CONFIG_SECCOMP`), or its value is
/// not a number. May change `errno`.
fn seccomp_mode() -> Option<u32> {
    // SAFETY: opens a file read-only.
    let fd = unsafe {
        libc::open(
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut scan = SeccompLine::new();
    let mut buf = [0u8; 1024];
    let complete = loop {
        // SAFETY: reads into the local buffer, within its bounds.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => break true,
            n if n > 0 => scan.feed(&buf[..n as usize]),
            _ if errno() == libc::EINTR => {}
            _ => break false,
        }
    };
    // SAFETY: closes the file opened above.
    unsafe { libc::close(fd) };
    if complete {
        scan.finish()
    } else {
        None
    }
}

/// Whether `ROBUST_CLEANUP_VERBOSE` is set to a non-empty value.
fn verbose() -> bool {
    // SAFETY: `getenv()` with a NUL-terminated name; the result, if any, is a NUL-terminated
    // string that lives as long as the environment, which the library does not change.
    let v = unsafe { libc::getenv(c"ROBUST_CLEANUP_VERBOSE".as_ptr()) };
    // SAFETY: as above; its first byte is readable.
    !v.is_null() && unsafe { *v } != 0
}

/// Decides once whether the library acts; `errno` is left as it was (this may run inside an
/// interposed call).
fn init() {
    INIT.call_once(|| {
        let saved = errno();
        STATE.store(decide(), Relaxed);
        set_errno(saved);
    });
}

fn decide() -> u8 {
    let version = glibc_version();
    let known = glibc_minor(version).is_some_and(|m| GLIBC_MINOR_KNOWN.contains(&m));
    if !known {
        say(b"librobust_cleanup: glibc ");
        say(version.to_bytes());
        say(b" has a mutex layout this library does not know; it does nothing\n");
        return OFF;
    }
    // A seccomp filter may kill the process on a system call it does not know: without a sure
    // "no filter", no probe.
    let msg: &[u8] = match seccomp_mode() {
        Some(0) => b"",
        Some(1) => {
            b"librobust_cleanup: seccomp strict mode is on; cleanup_robust_list() is not \
              probed and the library does nothing\n"
        }
        Some(_) => {
            b"librobust_cleanup: a seccomp filter is installed; cleanup_robust_list() is not \
              probed and the library does nothing\n"
        }
        None => {
            b"librobust_cleanup: the seccomp mode cannot be read from /proc/self/status; \
              cleanup_robust_list() is not probed and the library does nothing\n"
        }
    };
    if !msg.is_empty() {
        if verbose() {
            say(msg);
        }
        return OFF;
    }
    // SAFETY: the system call only reads the caller's mappings and clears robust list slots
    // that point at the probe word, which no lock uses.
    let r = unsafe {
        libc::syscall(
            NR_CLEANUP_ROBUST_LIST,
            PROBE.as_ptr() as usize,
            4usize,
            MM_ONLY,
        )
    };
    if r < 0 && errno() == libc::ENOSYS {
        OFF
    } else {
        ON
    }
}

/// Whether the library acts (deciding it on first use).
fn active() -> bool {
    match STATE.load(Relaxed) {
        UNKNOWN => {
            init();
            STATE.load(Relaxed) == ON
        }
        s => s == ON,
    }
}

/// Calls `cleanup_robust_list(addr, len, flags)`; `errno` is not touched. `ENOSYS` (the module
/// was unloaded) turns the library off.
fn cleanup(addr: usize, len: usize, flags: c_long) {
    let saved = errno();
    // SAFETY: the system call validates its arguments; it only clears robust list slots that
    // point into memory the caller can write.
    let r = unsafe { libc::syscall(NR_CLEANUP_ROBUST_LIST, addr, len, flags) };
    if r < 0 && errno() == libc::ENOSYS {
        STATE.store(OFF, Relaxed);
    }
    set_errno(saved);
}

/// The next definition of a symbol (glibc's), looked up once.
struct Real {
    name: &'static CStr,
    ptr: AtomicPtr<c_void>,
    /// Looked up and not found (only for optional symbols, see [`Real::find`]).
    missing: AtomicBool,
}

impl Real {
    const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            ptr: AtomicPtr::new(core::ptr::null_mut()),
            missing: AtomicBool::new(false),
        }
    }

    /// The symbol, or `None` if this glibc has none (looked up once).
    fn find(&self) -> Option<*mut c_void> {
        let mut p = self.ptr.load(Relaxed);
        if p.is_null() {
            if self.missing.load(Relaxed) {
                return None;
            }
            // `dlsym()` may change errno, which the interposed function must not.
            let saved = errno();
            // SAFETY: `dlsym()` with a NUL-terminated name.
            p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
            set_errno(saved);
            if p.is_null() {
                self.missing.store(true, Relaxed);
                return None;
            }
            self.ptr.store(p, Relaxed);
        }
        Some(p)
    }

    /// The symbol, which every glibc has: the process ends if it is missing.
    fn get(&self) -> *mut c_void {
        match self.find() {
            Some(p) => p,
            None => {
                say(b"librobust_cleanup: a libc function is missing\n");
                // SAFETY: ends the process; nothing can be done without the real function.
                unsafe { libc::abort() }
            }
        }
    }
}

static REAL_DESTROY: Real = Real::new(c"pthread_mutex_destroy");
static REAL_MMAP: Real = Real::new(c"mmap");
static REAL_MUNMAP: Real = Real::new(c"munmap");
static REAL_MREMAP: Real = Real::new(c"mremap");
static REAL_SHMAT: Real = Real::new(c"shmat");
static REAL_SHMDT: Real = Real::new(c"shmdt");
/// glibc 2.34 and later only.
static REAL_FORK: Real = Real::new(c"_Fork");

/// One recorded range, `[s, e)`.
struct Slot {
    s: AtomicUsize,
    e: AtomicUsize,
}

/// The shared mappings the program made, as sorted, disjoint `[start, end)` ranges.
///
/// Changed only with the record's lock held, inside [`Ranges::write`]; read with the lock held,
/// or without it by [`Ranges::overlaps_unlocked`], which the sequence count `seq` makes see one
/// state whole (a seqlock: odd while a change is under way). Every field is an atomic, so that
/// such a read is no data race.
struct Ranges {
    seq: AtomicU32,
    len: AtomicUsize,
    r: [Slot; CAP],
    /// More shared mappings than fit: every unmapping is then forwarded whole.
    overflow: AtomicBool,
}

const CAP: usize = 512;

impl Ranges {
    const fn new() -> Ranges {
        Ranges {
            seq: AtomicU32::new(0),
            len: AtomicUsize::new(0),
            r: [const {
                Slot {
                    s: AtomicUsize::new(0),
                    e: AtomicUsize::new(0),
                }
            }; CAP],
            overflow: AtomicBool::new(false),
        }
    }

    fn len(&self) -> usize {
        self.len.load(Relaxed).min(CAP)
    }

    fn overflowed(&self) -> bool {
        self.overflow.load(Relaxed)
    }

    fn get(&self, i: usize) -> (usize, usize) {
        (self.r[i].s.load(Relaxed), self.r[i].e.load(Relaxed))
    }

    fn set(&self, i: usize, (s, e): (usize, usize)) {
        self.r[i].s.store(s, Relaxed);
        self.r[i].e.store(e, Relaxed);
    }

    /// The ranges, in order (for tests and checks).
    #[cfg(test)]
    fn all(&self) -> Vec<(usize, usize)> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// Index of the first range that ends after `addr`.
    fn first_after(&self, addr: usize) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid).1 <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Calls `f` for each run of adjacent recorded ranges overlapping `[s, e)`, clipped to it.
    fn for_overlaps(&self, s: usize, e: usize, mut f: impl FnMut(usize, usize)) {
        if self.overflowed() {
            f(s, e);
            return;
        }
        let mut run: Option<(usize, usize)> = None;
        for i in self.first_after(s)..self.len() {
            let (a, b) = self.get(i);
            if a >= e {
                break;
            }
            let (a, b) = (a.max(s), b.min(e));
            run = match run {
                Some((rs, re)) if re == a => Some((rs, b)),
                Some(prev) => {
                    f(prev.0, prev.1);
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((a, b)) = run {
            f(a, b);
        }
    }

    fn overlaps(&self, s: usize, e: usize) -> bool {
        let i = self.first_after(s);
        self.overflowed() || (i < self.len() && self.get(i).0 < e)
    }

    /// [`Ranges::overlaps`] without the lock: retried until no change ran across the read. A
    /// change holds the lock and lasts a few hundred instructions (no system call), so the wait
    /// is short, and needs no lock: a thread that holds a lock of its own (an allocator's,
    /// which a `pthread_atfork()` handler also takes) cannot deadlock against the record's
    /// lock, held across `fork()`, by unmapping private memory.
    ///
    /// After a few tries the reader sleeps between them (100 us): a reader of a higher real-time
    /// priority on the writer's CPU must let the writer run.
    fn overlaps_unlocked(&self, s: usize, e: usize) -> bool {
        let mut tries = 0u32;
        loop {
            let seq = self.seq.load(Acquire);
            if seq.is_multiple_of(2) {
                let r = self.overlaps(s, e);
                fence(Acquire);
                if self.seq.load(Relaxed) == seq {
                    return r;
                }
            }
            tries += 1;
            if tries < 16 {
                core::hint::spin_loop();
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            } else {
                let nap = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000,
                };
                // SAFETY: `nap` is a valid timespec; the remainder is not wanted.
                unsafe { libc::nanosleep(&nap, core::ptr::null_mut()) };
            }
        }
    }

    /// Runs `change`, which changes the ranges, as one step for [`Ranges::overlaps_unlocked`].
    /// The record's lock must be held.
    fn write(&self, change: impl FnOnce(&Ranges)) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        change(self);
        self.seq.store(seq.wrapping_add(2), Release);
    }

    /// The recorded range that starts at `addr`.
    fn starting_at(&self, addr: usize) -> Option<(usize, usize)> {
        let i = self.first_after(addr);
        (i < self.len() && self.get(i).0 == addr).then(|| self.get(i))
    }

    /// Forgets `[s, e)`. The record's lock must be held.
    fn remove(&self, s: usize, e: usize) {
        self.write(|t| t.remove_in(s, e));
    }

    fn remove_in(&self, s: usize, e: usize) {
        let mut i = self.first_after(s);
        while i < self.len() && self.get(i).0 < e {
            let (a, b) = self.get(i);
            match (a < s, b > e) {
                (true, true) => {
                    // Split in two.
                    self.set(i, (a, s));
                    // On overflow the right part is dropped: everything is forwarded then.
                    let _ = self.insert_at(i + 1, (e, b));
                    return;
                }
                (true, false) => {
                    self.set(i, (a, s));
                    i += 1;
                }
                (false, true) => {
                    self.set(i, (e, b));
                    return;
                }
                (false, false) => {
                    let len = self.len();
                    for j in i..len - 1 {
                        self.set(j, self.get(j + 1));
                    }
                    self.len.store(len - 1, Relaxed);
                }
            }
        }
    }

    fn insert_at(&self, i: usize, range: (usize, usize)) -> bool {
        let len = self.len();
        if len == CAP {
            self.overflow.store(true, Relaxed);
            return false;
        }
        for j in (i..len).rev() {
            self.set(j + 1, self.get(j));
        }
        self.set(i, range);
        self.len.store(len + 1, Relaxed);
        true
    }

    /// Forgets `[s, e)` and records `[ns, ne)` as shared, as one change for lock-free readers.
    /// The record's lock must be held.
    fn replace(&self, s: usize, e: usize, ns: usize, ne: usize) {
        self.write(|t| {
            t.remove_in(s, e);
            t.remove_in(ns, ne);
            let i = t.first_after(ns);
            t.insert_at(i, (ns, ne));
        });
    }

    /// Records `[s, e)` as shared (replacing what was recorded there). The record's lock must
    /// be held.
    fn insert(&self, s: usize, e: usize) {
        self.write(|t| {
            t.remove_in(s, e);
            let i = t.first_after(s);
            t.insert_at(i, (s, e));
        });
    }
}

/// [`Ranges`] under a pthread mutex, which is only taken with every signal blocked (so that no
/// signal handler of the thread that holds it can wait for it), and is held across `fork()`
/// (`pthread_atfork()` handlers) and `_Fork()`. It is only taken for calls that concern recorded
/// shared memory, or make new shared memory ([`recorded`] decides without it).
struct Table {
    lock: UnsafeCell<pthread_mutex_t>,
    ranges: Ranges,
    /// The signal mask of the thread in `fork()`, between the `pthread_atfork()` handlers.
    fork_mask: UnsafeCell<sigset_t>,
}

// SAFETY: `fork_mask` is only accessed with `lock` held; `ranges` is made of atomics.
unsafe impl Sync for Table {}

static TABLE: Table = Table {
    lock: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    ranges: Ranges::new(),
    // SAFETY: a `sigset_t` is plain data (an array of words); all zeroes is the empty set.
    fork_mask: UnsafeCell::new(unsafe { core::mem::zeroed() }),
};

/// Where shared mappings are recorded: from the lowest start to the highest end (everywhere once
/// the record overflowed; empty, `MAX..0`, with none), updated with the record. A range outside
/// it needs no look-up, nor the lock: with none recorded (the common case) the cost of an
/// interposed call is two relaxed loads. Read outside the lock, the two may come from different
/// updates; a range the record held before the call began (as the caller knows) is within both.
static SPAN_START: AtomicUsize = AtomicUsize::new(usize::MAX);
static SPAN_END: AtomicUsize = AtomicUsize::new(0);

/// Whether `[s, e)` may overlap a recorded shared mapping.
fn near_recorded(s: usize, e: usize) -> bool {
    s < SPAN_END.load(Relaxed) && SPAN_START.load(Relaxed) < e
}

/// Whether `[s, e)` overlaps a recorded shared mapping, decided without the lock. A range the
/// record held before the call began, and still holds, is seen; one another thread records at
/// the same time can only be at addresses this call does not own (a call of this library
/// records a mapping after the kernel made it, where nothing was mapped, or where that thread
/// mapped over memory itself).
fn recorded(s: usize, e: usize) -> bool {
    near_recorded(s, e) && TABLE.ranges.overlaps_unlocked(s, e)
}

/// [`recorded`] for the pages of `[addr, addr + len)`, if a valid range.
fn range_recorded(addr: usize, len: usize) -> bool {
    page_range(addr, len).is_some_and(|(s, e)| recorded(s, e))
}

/// Blocks every signal the thread can block; returns the previous mask.
fn block_signals() -> sigset_t {
    // SAFETY: `sigset_t` is plain data; `sigfillset()` and `pthread_sigmask()` write to local
    // sets (glibc leaves its own two internal signals out).
    unsafe {
        let mut all: sigset_t = core::mem::zeroed();
        let mut old: sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signals(mask: &sigset_t) {
    // SAFETY: sets the thread's mask to a mask `block_signals()` returned.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, core::ptr::null_mut()) };
}

/// Blocks every signal and locks the record; returns the previous signal mask.
fn lock() -> sigset_t {
    let mask = block_signals();
    // SAFETY: a statically initialised, never destroyed mutex.
    unsafe { libc::pthread_mutex_lock(TABLE.lock.get()) };
    mask
}

/// Unlocks the record (locked by this thread, or by the thread it was forked from) and restores
/// the signal mask `lock()` returned; `errno` is left as it was.
fn unlock(mask: &sigset_t) {
    let saved = errno();
    let t = &TABLE.ranges;
    let (start, end) = match t.len() {
        _ if t.overflowed() => (0, usize::MAX),
        0 => (usize::MAX, 0),
        n => (t.get(0).0, t.get(n - 1).1),
    };
    SPAN_START.store(start, Relaxed);
    SPAN_END.store(end, Relaxed);
    // SAFETY: a normal mutex, which any thread may unlock.
    unsafe { libc::pthread_mutex_unlock(TABLE.lock.get()) };
    restore_signals(mask);
    set_errno(saved);
}

/// The record, locked until it is dropped. Each interposed function that changes a mapping the
/// record may describe holds it across its `cleanup_robust_list()` calls, the real function and
/// the record's update: another thread's mapping cannot land in between (at an address just
/// freed) and be forgotten by the update.
struct Locked {
    mask: sigset_t,
}

impl Locked {
    fn new() -> Locked {
        Locked { mask: lock() }
    }

    /// The record, to change: the lock is held.
    fn ranges(&mut self) -> &'static Ranges {
        &TABLE.ranges
    }

    /// Clears the caller's pending operations on the recorded shared memory in `[s, e)`.
    fn clear(&mut self, s: usize, e: usize) {
        self.ranges()
            .for_overlaps(s, e, |a, b| cleanup(a, b - a, MM_ONLY));
    }

    /// Records what is now mapped at `[p, p + len)`: shared memory or not.
    fn record(&mut self, p: usize, len: usize, shared: bool) {
        if let Some((s, e)) = page_range(p, len) {
            if shared {
                self.ranges().insert(s, e);
            } else {
                self.ranges().remove(s, e);
            }
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        unlock(&self.mask);
    }
}

extern "C" fn atfork_prepare() {
    let mask = lock();
    // SAFETY: the lock is held.
    unsafe { *TABLE.fork_mask.get() = mask };
}

extern "C" fn atfork_release() {
    // SAFETY: the lock is held (by this thread, or the thread this child was forked from).
    let mask = unsafe { *TABLE.fork_mask.get() };
    unlock(&mask);
}

/// Runs at load: registers the fork handlers and decides whether the library acts.
extern "C" fn constructor() {
    // SAFETY: registers functions that lock and unlock the record around fork().
    unsafe {
        libc::pthread_atfork(
            Some(atfork_prepare),
            Some(atfork_release),
            Some(atfork_release),
        )
    };
    for real in [
        &REAL_DESTROY,
        &REAL_MMAP,
        &REAL_MUNMAP,
        &REAL_MREMAP,
        &REAL_SHMAT,
        &REAL_SHMDT,
    ] {
        real.get();
    }
    // Optional: a glibc before 2.34 has none (`_Fork()` then calls `fork()`).
    let _ = REAL_FORK.find();
    init();
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

/// `n` rounded up to pages (saturating).
fn round_up(n: usize) -> usize {
    n.checked_next_multiple_of(PAGE)
        .unwrap_or(usize::MAX - (PAGE - 1))
}

/// `[addr, addr + len)` rounded out to pages, if `addr` is page aligned and the range valid.
fn page_range(addr: usize, len: usize) -> Option<(usize, usize)> {
    if !addr.is_multiple_of(PAGE) || len == 0 {
        return None;
    }
    let end = addr.checked_add(len)?.checked_next_multiple_of(PAGE)?;
    Some((addr, end))
}

/// `pthread_mutex_destroy()`: for a robust mutex, first clears every pending operation on it.
///
/// # Safety
///
/// As for glibc's `pthread_mutex_destroy()`: `m` points to an initialised mutex.
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_destroy(m: *mut pthread_mutex_t) -> c_int {
    if !m.is_null() && active() {
        // SAFETY: `m` points to a glibc mutex, whose `__kind` is at `KIND_OFFSET` in every
        // version `init()` accepts; read as glibc reads it (the mutex is not in use).
        let kind = unsafe {
            m.cast::<u8>()
                .add(KIND_OFFSET)
                .cast::<c_int>()
                .read_volatile()
        };
        // A destroyed mutex has kind -1.
        if kind >= 0 && kind & KIND_ROBUST != 0 {
            cleanup(m as usize, 4, 0);
        }
    }
    // SAFETY: glibc's function, with the caller's argument.
    unsafe {
        let real: unsafe extern "C" fn(*mut pthread_mutex_t) -> c_int =
            core::mem::transmute(REAL_DESTROY.get());
        real(m)
    }
}

fn is_shared(flags: c_int) -> bool {
    matches!(flags & 0x0f, libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE)
}

/// `mmap()`: records shared mappings; over a recorded one (`MAP_FIXED`), first clears the
/// caller's pending operations on it.
///
/// # Safety
///
/// As for glibc's `mmap()`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    // SAFETY: glibc's function, called with the caller's arguments.
    let real = unsafe {
        core::mem::transmute::<
            *mut c_void,
            unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, off_t) -> *mut c_void,
        >(REAL_MMAP.get())
    };
    if !active() {
        // SAFETY: forwarded as received.
        return unsafe { real(addr, len, prot, flags, fd, off) };
    }
    let shared = is_shared(flags) && prot & libc::PROT_WRITE != 0;
    if flags & libc::MAP_FIXED != 0 {
        if !shared && !range_recorded(addr as usize, len) {
            // SAFETY: forwarded as received.
            return unsafe { real(addr, len, prot, flags, fd, off) };
        }
        // What it replaces goes away: cleared, replaced and recorded as one step.
        let mut t = Locked::new();
        if let Some((s, e)) = page_range(addr as usize, len) {
            t.clear(s, e);
        }
        // SAFETY: forwarded as received.
        let p = unsafe { real(addr, len, prot, flags, fd, off) };
        if p != libc::MAP_FAILED {
            t.record(p as usize, len, shared);
        }
        return p;
    }
    // SAFETY: forwarded as received.
    let p = unsafe { real(addr, len, prot, flags, fd, off) };
    // A new mapping, where nothing was mapped (MAP_FIXED_NOREPLACE included): no other
    // thread's call can concern it before this one returns it, so it is recorded after. Any
    // record there is stale (unmapped behind the library's back).
    if p != libc::MAP_FAILED && (shared || range_recorded(p as usize, len)) {
        Locked::new().record(p as usize, len, shared);
    }
    p
}

/// `mmap64()`: the same function as `mmap()` on x86_64.
///
/// # Safety
///
/// As for glibc's `mmap64()`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    // SAFETY: forwarded as received.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

/// `munmap()`: first clears the caller's pending operations on recorded shared memory in the
/// range.
///
/// # Safety
///
/// As for glibc's `munmap()`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: size_t) -> c_int {
    // SAFETY: glibc's function, called with the caller's arguments.
    let real = unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void, size_t) -> c_int>(
            REAL_MUNMAP.get(),
        )
    };
    let range = page_range(addr as usize, len).filter(|&(s, e)| recorded(s, e) && active());
    let Some((s, e)) = range else {
        // SAFETY: forwarded as received.
        return unsafe { real(addr, len) };
    };
    let mut t = Locked::new();
    if !t.ranges().overlaps(s, e) {
        // Nothing recorded there: nothing to update after.
        drop(t);
        // SAFETY: forwarded as received.
        return unsafe { real(addr, len) };
    }
    t.clear(s, e);
    // SAFETY: forwarded as received.
    let r = unsafe { real(addr, len) };
    if r == 0 {
        t.ranges().remove(s, e);
    }
    r
}

type MremapFn = unsafe extern "C" fn(*mut c_void, size_t, size_t, c_int, ...) -> *mut c_void;

/// `mremap()`: for recorded shared memory, first clears the caller's pending operations on the
/// part that goes away (the tail it shrinks off, or all of it when it moves; a move is only
/// assumed once growing in place failed; with `MREMAP_DONTUNMAP` the old range stays mapped,
/// to the same shared memory, and nothing goes away but what `MREMAP_FIXED` replaces).
///
/// glibc's `mremap()` is variadic; its fifth argument (`MREMAP_FIXED`) is received as the x86_64
/// calling convention passes it, in the fifth integer register.
///
/// # Safety
///
/// As for glibc's `mremap()`.
#[no_mangle]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_size: size_t,
    new_size: size_t,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: glibc's function.
    let real: MremapFn = unsafe { core::mem::transmute(REAL_MREMAP.get()) };
    let fixed = flags & libc::MREMAP_FIXED != 0;
    let maymove = flags & libc::MREMAP_MAYMOVE != 0;
    // The old range stays mapped: with MREMAP_DONTUNMAP, and with an old size of 0 (a second
    // mapping of the same shared memory).
    let stays = flags & libc::MREMAP_DONTUNMAP != 0 || old_size == 0;
    let s = old as usize;
    let e = s.saturating_add(round_up(old_size.max(1)));
    let new_end = s.saturating_add(round_up(new_size));
    let near = recorded(s, e) || fixed && range_recorded(new_addr as usize, new_size);
    if !near || !s.is_multiple_of(PAGE) || !active() {
        // No recorded shared memory concerned (a new shared mapping is only recorded by `mmap()`
        // and `shmat()`), or an invalid call.
        // SAFETY: forwarded as received.
        return unsafe { real(old, old_size, new_size, flags, new_addr) };
    }
    let mut t = Locked::new();
    let shared = t.ranges().overlaps(s, e);
    if fixed {
        if let Some((a, b)) = page_range(new_addr as usize, new_size) {
            t.clear(a, b);
        }
    }
    if shared && !stays {
        if maymove && !fixed {
            // Try in place first: only a move needs the whole old range cleared.
            if new_end < e {
                t.clear(new_end, e);
            }
            let saved = errno();
            // SAFETY: the caller's arguments, without MREMAP_MAYMOVE.
            let p = unsafe { real(old, old_size, new_size, flags & !libc::MREMAP_MAYMOVE) };
            // The attempt's failure is the library's, not the caller's.
            set_errno(saved);
            if p != libc::MAP_FAILED {
                t.ranges().replace(s, e, s, new_end);
                return p;
            }
        }
        if maymove || fixed {
            t.clear(s, e);
        } else if new_end < e {
            t.clear(new_end, e);
        }
    }
    // SAFETY: forwarded as received.
    let p = unsafe { real(old, old_size, new_size, flags, new_addr) };
    if p != libc::MAP_FAILED {
        match page_range(p as usize, new_size) {
            // Moved or resized: one change, so that no lock-free reader sees neither range.
            Some((ns, ne)) if shared && !stays => t.ranges().replace(s, e, ns, ne),
            _ => {
                if !stays {
                    t.ranges().remove(s, e);
                }
                t.record(p as usize, new_size, shared);
            }
        }
    }
    p
}

/// `shmat()`: records a writable attachment; with `SHM_REMAP`, first clears the caller's
/// pending operations on recorded shared memory it replaces.
///
/// # Safety
///
/// As for glibc's `shmat()`.
#[no_mangle]
pub unsafe extern "C" fn shmat(id: c_int, addr: *const c_void, flg: c_int) -> *mut c_void {
    // SAFETY: glibc's function, called with the caller's arguments.
    let real = unsafe {
        core::mem::transmute::<
            *mut c_void,
            unsafe extern "C" fn(c_int, *const c_void, c_int) -> *mut c_void,
        >(REAL_SHMAT.get())
    };
    if !active() {
        // SAFETY: forwarded as received.
        return unsafe { real(id, addr, flg) };
    }
    let mut size = 0usize;
    // SAFETY: `IPC_STAT` into a local buffer.
    let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
    let saved = errno();
    // SAFETY: as above.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } == 0 {
        size = ds.shm_segsz;
    }
    set_errno(saved);
    let writable = flg & libc::SHM_RDONLY == 0;
    if size == 0 {
        // SAFETY: forwarded as received.
        return unsafe { real(id, addr, flg) };
    }
    if flg & libc::SHM_REMAP != 0 {
        // What it replaces goes away: cleared, replaced and recorded as one step.
        let mut t = Locked::new();
        if let Some((s, e)) = page_range(addr as usize & !(PAGE - 1), size) {
            t.clear(s, e);
        }
        // SAFETY: forwarded as received.
        let p = unsafe { real(id, addr, flg) };
        if p as isize != -1 {
            t.record(p as usize, size, writable);
        }
        return p;
    }
    // SAFETY: forwarded as received.
    let p = unsafe { real(id, addr, flg) };
    // A new mapping where nothing was mapped: recorded after, as by `mmap()`.
    if p as isize != -1 && (writable || range_recorded(p as usize, size)) {
        Locked::new().record(p as usize, size, writable);
    }
    p
}

/// `shmdt()`: first clears the caller's pending operations on the attachment at `addr`.
///
/// # Safety
///
/// As for glibc's `shmdt()`.
#[no_mangle]
pub unsafe extern "C" fn shmdt(addr: *const c_void) -> c_int {
    // SAFETY: glibc's function, called with the caller's argument.
    let real = unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const c_void) -> c_int>(
            REAL_SHMDT.get(),
        )
    };
    if !(recorded(addr as usize, (addr as usize).saturating_add(1)) && active()) {
        // SAFETY: forwarded as received.
        return unsafe { real(addr) };
    }
    let mut t = Locked::new();
    let Some((s, e)) = t.ranges().starting_at(addr as usize) else {
        drop(t);
        // SAFETY: forwarded as received.
        return unsafe { real(addr) };
    };
    t.clear(s, e);
    // SAFETY: forwarded as received.
    let r = unsafe { real(addr) };
    if r == 0 {
        t.ranges().remove(s, e);
    }
    r
}

/// `_Fork()` (glibc 2.34 and later): the `fork()` that runs no `pthread_atfork()` handlers. The
/// record's lock is held across it, as `fork()`'s handlers hold it, so that the child does not
/// inherit it held by another thread, which the child does not have. On a glibc without it
/// (before 2.34), `fork()`, whose handlers do the same.
///
/// # Safety
///
/// As for glibc's `_Fork()`.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn _Fork() -> pid_t {
    let Some(real) = REAL_FORK.find() else {
        // SAFETY: glibc's `fork()`; its handlers take and release the lock.
        return unsafe { libc::fork() };
    };
    // SAFETY: glibc's function.
    let real =
        unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> pid_t>(real) };
    let t = Locked::new();
    // SAFETY: forwarded; the lock is released in the parent and in the child.
    let pid = unsafe { real() };
    drop(t);
    pid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[(usize, usize)]) -> Ranges {
        let t = Ranges::new();
        for &(s, e) in list {
            t.insert(s, e);
        }
        t
    }

    fn runs(t: &Ranges, s: usize, e: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        t.for_overlaps(s, e, |a, b| v.push((a, b)));
        v
    }

    #[test]
    fn overlaps_are_clipped_and_adjacent_ranges_joined() {
        let t = ranges(&[(0x5000, 0x6000), (0x1000, 0x3000), (0x3000, 0x4000)]);
        assert_eq!(
            t.all(),
            [(0x1000, 0x3000), (0x3000, 0x4000), (0x5000, 0x6000)]
        );
        assert_eq!(
            runs(&t, 0x2000, 0x5800),
            vec![(0x2000, 0x4000), (0x5000, 0x5800)]
        );
        assert_eq!(runs(&t, 0x4000, 0x5000), vec![]);
        assert!(!t.overlaps(0x4000, 0x5000));
        assert!(t.overlaps(0x4000, 0x5001));
        assert_eq!(t.starting_at(0x3000), Some((0x3000, 0x4000)));
        assert_eq!(t.starting_at(0x2000), None);
    }

    #[test]
    fn remove_trims_splits_and_drops() {
        let t = ranges(&[(0x1000, 0x5000), (0x6000, 0x7000)]);
        t.remove(0x2000, 0x3000);
        assert_eq!(
            t.all(),
            [(0x1000, 0x2000), (0x3000, 0x5000), (0x6000, 0x7000)]
        );
        t.remove(0x4000, 0x8000);
        assert_eq!(t.all(), [(0x1000, 0x2000), (0x3000, 0x4000)]);
        t.remove(0, 0x10000);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn overflow_forwards_whole_ranges() {
        let t = ranges(&[]);
        for i in 0..=CAP {
            t.insert(0x10000 + 2 * i * PAGE, 0x10000 + (2 * i + 1) * PAGE);
        }
        assert!(t.overflowed());
        assert_eq!(runs(&t, 0x1000, 0x2000), vec![(0x1000, 0x2000)]);
    }

    fn seccomp_in(text: &[u8], piece: usize) -> Option<u32> {
        let mut scan = SeccompLine::new();
        for chunk in text.chunks(piece) {
            scan.feed(chunk);
        }
        scan.finish()
    }

    #[test]
    fn seccomp_modes() {
        let groups = format!("Groups:\t{}\n", "65534 ".repeat(3000));
        let status = |seccomp: &str| {
            format!("Name:\tx\nUmask:\t0022\n{groups}NoNewPrivs:\t1\n{seccomp}Speculation_Store_Bypass:\tx\n")
        };
        for piece in [1, 7, 1024, usize::MAX] {
            let mode = |seccomp: &str| seccomp_in(status(seccomp).as_bytes(), piece);
            assert_eq!(mode("Seccomp:\t0\n"), Some(0));
            assert_eq!(mode("Seccomp:\t1\n"), Some(1));
            assert_eq!(mode("Seccomp:\t2\nSeccomp_filters:\t3\n"), Some(2));
            // A kernel without CONFIG_SECCOMP prints no such line: not known to be 0.
            assert_eq!(mode(""), None);
            assert_eq!(mode("Seccomp:\t\n"), None);
            assert_eq!(mode("Seccomp:\tx\n"), None);
            assert_eq!(mode("Seccomp:\t99999999999999999999\n"), None);
        }
        // The last line, without its newline.
        assert_eq!(seccomp_in(b"Name:\tx\nSeccomp:\t2", 3), Some(2));
        assert_eq!(seccomp_in(b"", 1), None);
        // The test process itself: whatever it runs under, the file is read to its end.
        assert!(seccomp_mode().is_none_or(|m| m <= 2));
    }

    #[test]
    fn glibc_versions() {
        assert_eq!(glibc_minor(c"2.36"), Some(36));
        assert_eq!(glibc_minor(c"2.41.9000"), Some(41));
        assert_eq!(glibc_minor(c"3.0"), None);
        assert_eq!(glibc_minor(c"9.99"), None);
    }
}
