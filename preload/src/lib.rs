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
//!   them; with none recorded (the common case) the cost is one relaxed load.
//! - At load it checks the glibc version (the mutex layout) and probes the system call: on an
//!   unknown glibc it prints one message and does nothing; without the system call (`ENOSYS`:
//!   an unpatched kernel, or the module not loaded) it does nothing.
//! - The system call's result never changes what an interposed function returns, nor `errno`.
//!
//! It cannot cover static binaries, system calls made directly, memory a program reuses without
//! destroying the mutexes in it or unmapping it, or shared mappings made before it was loaded.
//! See Documentation/robust-futex/preload.rst.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
compile_error!("the glibc mutex layout is only known for x86_64 Linux");

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_long, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering::Relaxed};
use libc::{off_t, pthread_mutex_t, size_t};
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

/// Decides once whether the library acts.
fn init() {
    INIT.call_once(|| {
        let version = glibc_version();
        let known = glibc_minor(version).is_some_and(|m| GLIBC_MINOR_KNOWN.contains(&m));
        if !known {
            say(b"librobust_cleanup: glibc ");
            say(version.to_bytes());
            say(b" has a mutex layout this library does not know; it does nothing\n");
            STATE.store(OFF, Relaxed);
            return;
        }
        let saved = errno();
        // SAFETY: the system call only reads the caller's mappings and clears robust list
        // slots that point at the probe word, which no lock uses.
        let r = unsafe {
            libc::syscall(
                NR_CLEANUP_ROBUST_LIST,
                PROBE.as_ptr() as usize,
                4usize,
                MM_ONLY,
            )
        };
        let on = !(r < 0 && errno() == libc::ENOSYS);
        set_errno(saved);
        STATE.store(if on { ON } else { OFF }, Relaxed);
    });
}

/// Whether the library acts (deciding it on first use).
fn active() -> bool {
    match STATE.load(Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            init();
            STATE.load(Relaxed) == ON
        }
    }
}

/// Calls `cleanup_robust_list(addr, len, flags)`, leaving `errno` as it was. `ENOSYS` (the
/// module was unloaded) turns the library off.
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
}

impl Real {
    const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    fn get(&self) -> *mut c_void {
        let mut p = self.ptr.load(Relaxed);
        if p.is_null() {
            // `dlsym()` may change errno, which the interposed function must not.
            let saved = errno();
            // SAFETY: `dlsym()` with a NUL-terminated name.
            p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
            set_errno(saved);
            if p.is_null() {
                say(b"librobust_cleanup: a libc function is missing\n");
                // SAFETY: ends the process; nothing can be done without the real function.
                unsafe { libc::abort() };
            }
            self.ptr.store(p, Relaxed);
        }
        p
    }
}

static REAL_DESTROY: Real = Real::new(c"pthread_mutex_destroy");
static REAL_MMAP: Real = Real::new(c"mmap");
static REAL_MUNMAP: Real = Real::new(c"munmap");
static REAL_MREMAP: Real = Real::new(c"mremap");
static REAL_SHMAT: Real = Real::new(c"shmat");
static REAL_SHMDT: Real = Real::new(c"shmdt");

/// The shared mappings the program made, as sorted, disjoint `[start, end)` ranges.
struct Ranges {
    len: usize,
    r: [(usize, usize); CAP],
    /// More shared mappings than fit: every unmapping is then forwarded whole.
    overflow: bool,
}

const CAP: usize = 512;

impl Ranges {
    /// Index of the first range that ends after `addr`.
    fn first_after(&self, addr: usize) -> usize {
        self.r[..self.len].partition_point(|&(_, e)| e <= addr)
    }

    /// Calls `f` for each run of adjacent recorded ranges overlapping `[s, e)`, clipped to it.
    fn for_overlaps(&self, s: usize, e: usize, mut f: impl FnMut(usize, usize)) {
        if self.overflow {
            f(s, e);
            return;
        }
        let mut run: Option<(usize, usize)> = None;
        for &(a, b) in &self.r[self.first_after(s)..self.len] {
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
        self.overflow || (i < self.len && self.r[i].0 < e)
    }

    /// The recorded range that starts at `addr`.
    fn starting_at(&self, addr: usize) -> Option<(usize, usize)> {
        let i = self.first_after(addr);
        (i < self.len && self.r[i].0 == addr).then(|| self.r[i])
    }

    /// Forgets `[s, e)`.
    fn remove(&mut self, s: usize, e: usize) {
        let mut i = self.first_after(s);
        while i < self.len && self.r[i].0 < e {
            let (a, b) = self.r[i];
            match (a < s, b > e) {
                (true, true) => {
                    // Split in two.
                    self.r[i].1 = s;
                    // On overflow the right part is dropped: everything is forwarded then.
                    let _ = self.insert_at(i + 1, (e, b));
                    return;
                }
                (true, false) => {
                    self.r[i].1 = s;
                    i += 1;
                }
                (false, true) => {
                    self.r[i].0 = e;
                    return;
                }
                (false, false) => {
                    self.r.copy_within(i + 1..self.len, i);
                    self.len -= 1;
                }
            }
        }
    }

    fn insert_at(&mut self, i: usize, range: (usize, usize)) -> bool {
        if self.len == CAP {
            self.overflow = true;
            return false;
        }
        self.r.copy_within(i..self.len, i + 1);
        self.r[i] = range;
        self.len += 1;
        true
    }

    /// Records `[s, e)` as shared (replacing what was recorded there).
    fn insert(&mut self, s: usize, e: usize) {
        self.remove(s, e);
        let i = self.first_after(s);
        self.insert_at(i, (s, e));
    }
}

/// [`Ranges`] under a pthread mutex (held across fork by the `pthread_atfork()` handlers).
struct Table {
    lock: UnsafeCell<pthread_mutex_t>,
    ranges: UnsafeCell<Ranges>,
}

// SAFETY: `ranges` is only accessed with `lock` held.
unsafe impl Sync for Table {}

static TABLE: Table = Table {
    lock: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    ranges: UnsafeCell::new(Ranges {
        len: 0,
        r: [(0, 0); CAP],
        overflow: false,
    }),
};

/// Whether any shared mapping is recorded (or the record overflowed): when not, unmapping needs
/// no look-up.
static ANY: AtomicBool = AtomicBool::new(false);

fn lock() {
    // SAFETY: a statically initialised, never destroyed mutex.
    unsafe { libc::pthread_mutex_lock(TABLE.lock.get()) };
}

fn unlock() {
    // SAFETY: as above; called by the thread that locked it.
    unsafe { libc::pthread_mutex_unlock(TABLE.lock.get()) };
}

/// Runs `f` on the record, locked. May sleep; `f` may make system calls.
fn with_table<T>(f: impl FnOnce(&mut Ranges) -> T) -> T {
    lock();
    // SAFETY: the lock is held, so this is the only reference.
    let t = unsafe { &mut *TABLE.ranges.get() };
    let r = f(t);
    ANY.store(t.len != 0 || t.overflow, Relaxed);
    unlock();
    r
}

extern "C" fn atfork_prepare() {
    lock();
}

extern "C" fn atfork_release() {
    unlock();
}

/// Runs at load: registers the fork handlers and decides whether the library acts.
extern "C" fn constructor() {
    // SAFETY: registers functions that lock and unlock the table's mutex around fork().
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
    init();
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

/// `[addr, addr + len)` rounded out to pages, if `addr` is page aligned and the range valid.
fn page_range(addr: usize, len: usize) -> Option<(usize, usize)> {
    if !addr.is_multiple_of(PAGE) || len == 0 {
        return None;
    }
    let end = addr.checked_add(len)?.checked_next_multiple_of(PAGE)?;
    Some((addr, end))
}

/// Before the caller's mapping of `[s, e)` goes away: forgets its own pending operations on the
/// shared memory recorded there.
fn before_unmap(s: usize, e: usize) {
    if !ANY.load(Relaxed) {
        return;
    }
    with_table(|t| t.for_overlaps(s, e, |a, b| cleanup(a, b - a, MM_ONLY)));
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
    let on = active();
    let fixed = flags & libc::MAP_FIXED != 0;
    if on && fixed {
        if let Some((s, e)) = page_range(addr as usize, len) {
            before_unmap(s, e);
        }
    }
    // SAFETY: glibc's function, with the caller's arguments.
    let p = unsafe {
        let real: unsafe extern "C" fn(
            *mut c_void,
            size_t,
            c_int,
            c_int,
            c_int,
            off_t,
        ) -> *mut c_void = core::mem::transmute(REAL_MMAP.get());
        real(addr, len, prot, flags, fd, off)
    };
    if on && p != libc::MAP_FAILED {
        if let Some((s, e)) = page_range(p as usize, len) {
            if is_shared(flags) && prot & libc::PROT_WRITE != 0 {
                with_table(|t| t.insert(s, e));
            } else if ANY.load(Relaxed) {
                with_table(|t| t.remove(s, e));
            }
        }
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
    let range = if ANY.load(Relaxed) && active() {
        page_range(addr as usize, len)
    } else {
        None
    };
    if let Some((s, e)) = range {
        before_unmap(s, e);
    }
    // SAFETY: glibc's function, with the caller's arguments.
    let r = unsafe {
        let real: unsafe extern "C" fn(*mut c_void, size_t) -> c_int =
            core::mem::transmute(REAL_MUNMAP.get());
        real(addr, len)
    };
    if let (0, Some((s, e))) = (r, range) {
        with_table(|t| t.remove(s, e));
    }
    r
}

type MremapFn = unsafe extern "C" fn(*mut c_void, size_t, size_t, c_int, ...) -> *mut c_void;

/// `mremap()`: for recorded shared memory, first clears the caller's pending operations on the
/// part that goes away (the tail it shrinks off, or all of it when it moves; a move is only
/// assumed once growing in place failed).
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
    let old_range = page_range(old as usize, old_size);
    let shared = match old_range {
        Some((s, e)) if ANY.load(Relaxed) && active() => with_table(|t| t.overlaps(s, e)),
        _ => false,
    };
    if !shared {
        // SAFETY: forwarded as received.
        let p = unsafe { real(old, old_size, new_size, flags, new_addr) };
        if p != libc::MAP_FAILED && ANY.load(Relaxed) {
            // Whatever it replaced at the new address is no longer shared memory.
            if let (Some((s, e)), Some(new)) = (old_range, page_range(p as usize, new_size)) {
                with_table(|t| {
                    t.remove(s, e);
                    t.remove(new.0, new.1);
                });
            }
        }
        return p;
    }
    let (s, e) = old_range.unwrap_or((0, 0));
    let new_end = s.saturating_add(new_size.next_multiple_of(PAGE));
    let fixed = flags & libc::MREMAP_FIXED != 0;
    if fixed {
        if let Some((a, b)) = page_range(new_addr as usize, new_size) {
            before_unmap(a, b);
        }
    }
    if flags & libc::MREMAP_MAYMOVE != 0 && !fixed {
        // Try in place first: only a move needs the whole old range cleared.
        if new_end < e {
            before_unmap(new_end, e);
        }
        let saved = errno();
        // SAFETY: the caller's arguments, without MREMAP_MAYMOVE.
        let p = unsafe { real(old, old_size, new_size, flags & !libc::MREMAP_MAYMOVE) };
        // The attempt's failure is the library's, not the caller's.
        set_errno(saved);
        if p != libc::MAP_FAILED {
            with_table(|t| {
                t.remove(s, e);
                t.insert(s, new_end);
            });
            return p;
        }
    }
    if flags & (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) != 0 {
        before_unmap(s, e);
    } else if new_end < e {
        before_unmap(new_end, e);
    }
    // SAFETY: forwarded as received.
    let p = unsafe { real(old, old_size, new_size, flags, new_addr) };
    if p != libc::MAP_FAILED {
        let new = p as usize;
        with_table(|t| {
            t.remove(s, e);
            t.insert(new, new.saturating_add(new_size.next_multiple_of(PAGE)));
        });
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
    let on = active();
    let mut size = 0usize;
    if on {
        // SAFETY: `IPC_STAT` into a local buffer.
        let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
        let saved = errno();
        // SAFETY: as above.
        if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } == 0 {
            size = ds.shm_segsz;
        }
        set_errno(saved);
    }
    if on && flg & libc::SHM_REMAP != 0 && size != 0 {
        if let Some((s, e)) = page_range(addr as usize & !(PAGE - 1), size) {
            before_unmap(s, e);
        }
    }
    // SAFETY: glibc's function, with the caller's arguments.
    let p = unsafe {
        let real: unsafe extern "C" fn(c_int, *const c_void, c_int) -> *mut c_void =
            core::mem::transmute(REAL_SHMAT.get());
        real(id, addr, flg)
    };
    if on && p as isize != -1 && size != 0 {
        if let Some((s, e)) = page_range(p as usize, size) {
            if flg & libc::SHM_RDONLY == 0 {
                with_table(|t| t.insert(s, e));
            } else if ANY.load(Relaxed) {
                with_table(|t| t.remove(s, e));
            }
        }
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
    let range = if ANY.load(Relaxed) && active() {
        with_table(|t| t.starting_at(addr as usize))
    } else {
        None
    };
    if let Some((s, e)) = range {
        before_unmap(s, e);
    }
    // SAFETY: glibc's function, with the caller's argument.
    let r = unsafe {
        let real: unsafe extern "C" fn(*const c_void) -> c_int =
            core::mem::transmute(REAL_SHMDT.get());
        real(addr)
    };
    if let (0, Some((s, e))) = (r, range) {
        with_table(|t| t.remove(s, e));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[(usize, usize)]) -> Ranges {
        let mut t = Ranges {
            len: 0,
            r: [(0, 0); CAP],
            overflow: false,
        };
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
            &t.r[..t.len],
            &[(0x1000, 0x3000), (0x3000, 0x4000), (0x5000, 0x6000)]
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
        let mut t = ranges(&[(0x1000, 0x5000), (0x6000, 0x7000)]);
        t.remove(0x2000, 0x3000);
        assert_eq!(
            &t.r[..t.len],
            &[(0x1000, 0x2000), (0x3000, 0x5000), (0x6000, 0x7000)]
        );
        t.remove(0x4000, 0x8000);
        assert_eq!(&t.r[..t.len], &[(0x1000, 0x2000), (0x3000, 0x4000)]);
        t.remove(0, 0x10000);
        assert_eq!(t.len, 0);
    }

    #[test]
    fn overflow_forwards_whole_ranges() {
        let mut t = ranges(&[]);
        for i in 0..=CAP {
            t.insert(0x10000 + 2 * i * PAGE, 0x10000 + (2 * i + 1) * PAGE);
        }
        assert!(t.overflow);
        assert_eq!(runs(&t, 0x1000, 0x2000), vec![(0x1000, 0x2000)]);
    }

    #[test]
    fn glibc_versions() {
        assert_eq!(glibc_minor(c"2.36"), Some(36));
        assert_eq!(glibc_minor(c"2.41.9000"), Some(41));
        assert_eq!(glibc_minor(c"3.0"), None);
        assert_eq!(glibc_minor(c"9.99"), None);
    }
}
