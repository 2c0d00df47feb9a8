//! Thin wrappers around the system calls the harness uses.

use std::io::{Error, Result};
use std::time::{Duration, Instant};

/// `__NR_cleanup_robust_list` on x86_64 and i386 (see include/uapi/linux/robust_cleanup.h).
pub const NR_CLEANUP_ROBUST_LIST: libc::c_long = 500;
/// `CLEANUP_ROBUST_LIST_MM_ONLY`: only the tasks of the caller's mm.
pub const CLEANUP_MM_ONLY: u32 = 1;

pub const FUTEX_WAITERS: u32 = 0x8000_0000;
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
pub const ROBUST_LIST_LIMIT: usize = 2048;
/// A TID no task has (PID_MAX_LIMIT is 4M): "owned by another thread". Not the parent's TID + 1,
/// which is likely the TID of the child the parent forks next.
pub const OTHER_TID: u32 = 0x3fff_fffe;

pub fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

fn check(ret: libc::c_long) -> Result<libc::c_long> {
    if ret < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Anonymous `MAP_SHARED` memory, shared with forked children.
pub struct Shared {
    pub base: usize,
    pub len: usize,
}

impl Shared {
    pub fn new(len: usize) -> Shared {
        Self::map(0, len, 0)
    }

    /// Maps at `addr` (`MAP_FIXED_NOREPLACE` when `addr != 0`).
    pub fn map(addr: usize, len: usize, extra: libc::c_int) -> Shared {
        let flags = libc::MAP_SHARED
            | libc::MAP_ANONYMOUS
            | extra
            | if addr != 0 {
                libc::MAP_FIXED_NOREPLACE
            } else {
                0
            };
        // SAFETY: a fresh anonymous mapping; no existing memory is replaced.
        let p = unsafe {
            libc::mmap(
                addr as *mut _,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap: {}", Error::last_os_error());
        Shared {
            base: p as usize,
            len,
        }
    }

    pub fn at(&self, off: usize) -> usize {
        assert!(off < self.len);
        self.base + off
    }
}

/// Private anonymous memory of `len` bytes, never unmapped (tests remap or protect parts of it).
pub fn private_anon(len: usize) -> usize {
    // SAFETY: a fresh anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap: {}", Error::last_os_error());
    p as usize
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base as *mut _, self.len) };
    }
}

/// Volatile access to user words the kernel (or other processes) may change.
pub fn read_u32(addr: usize) -> u32 {
    // SAFETY: callers pass addresses inside mappings they own.
    unsafe { std::ptr::read_volatile(addr as *const u32) }
}

pub fn write_u32(addr: usize, v: u32) {
    // SAFETY: callers pass addresses inside mappings they own.
    unsafe { std::ptr::write_volatile(addr as *mut u32, v) }
}

pub fn read_usize(addr: usize) -> usize {
    // SAFETY: callers pass addresses inside mappings they own.
    unsafe { std::ptr::read_volatile(addr as *const usize) }
}

/// Writes a list pointer; list entries may be deliberately misaligned.
pub fn write_usize(addr: usize, v: usize) {
    // SAFETY: callers pass addresses inside mappings they own.
    unsafe { std::ptr::write_unaligned(addr as *mut usize, v) }
}

pub fn set_robust_list(head: usize, len: usize) -> Result<()> {
    // SAFETY: the kernel only records the pointer.
    check(unsafe { libc::syscall(libc::SYS_set_robust_list, head, len) }).map(|_| ())
}

pub fn cleanup_robust_list(addr: usize, len: usize, flags: u32) -> Result<i64> {
    // SAFETY: the system call validates its arguments.
    check(unsafe { libc::syscall(NR_CLEANUP_ROBUST_LIST, addr, len, flags) })
}

/// Shared (not private) FUTEX_WAIT, as the robust wake uses a shared key.
pub fn futex_wait(addr: usize, val: u32, timeout: Duration) -> Result<()> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: `addr` is a futex word in a mapping the caller owns; `ts` outlives the call.
    check(unsafe { libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAIT, val, &ts, 0, 0) })
        .map(|_| ())
}

/// Shared FUTEX_WAKE; returns the number of waiters woken.
pub fn futex_wake(addr: usize, n: i32) -> Result<i64> {
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAKE, n, 0, 0, 0) })
}

/// Forks; the child runs `f` and exits with its return value (no destructors, no atexit).
pub fn fork_with(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the harness is single-threaded when it forks workers that use only syscalls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", Error::last_os_error());
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid` and returns its raw wait status.
pub fn wait_pid(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(r == pid, "waitpid: {}", Error::last_os_error());
    status
}

pub fn exited_ok(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Waits until thread `tid` of process `pid` sleeps in `futex()`: state S in
/// /proc/PID/task/TID/stat and system call number 202 in .../syscall. Then it is queued on the
/// futex, so a later wake reaches it.
pub fn wait_blocked_in_futex(pid: libc::pid_t, tid: u32) -> bool {
    let dir = format!("/proc/{}/task/{}", pid, tid);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let sys = std::fs::read_to_string(format!("{}/syscall", dir)).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("{}/stat", dir)).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .chars()
            .next();
        if sys.starts_with("202 ") && state == Some('S') {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: no arguments.
    unsafe { libc::getpid() }
}

/// `mmap()` returning the error instead of asserting, for mappings a case expects to fail or
/// makes in a child that must report the failure.
pub fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32) -> Result<usize> {
    // SAFETY: callers pass `MAP_FIXED` only over memory of their own that they mean to replace.
    let p = unsafe { libc::mmap(addr as *mut _, len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        Err(Error::last_os_error())
    } else {
        Ok(p as usize)
    }
}

/// The calling thread's native robust list head (`get_robust_list(0, ...)`), 0 if it has none.
pub fn get_robust_list() -> Result<usize> {
    let (mut head, mut len) = (0usize, 0usize);
    // SAFETY: both out pointers are valid for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut usize,
            &mut len as *mut usize,
        )
    })
    .map(|_| head)
}

/// i386 `__NR_set_robust_list`, for the `int $0x80` entry.
const NR32_SET_ROBUST_LIST: u32 = 311;

/// Registers a compat (32-bit) robust list head for the calling thread of this 64-bit process,
/// through the i386 system call entry (`int $0x80`, which dispatches to the compat system
/// calls): `head` must lie below 4 GiB, `len` is `sizeof(struct compat_robust_list_head)` (12).
/// Returns the raw result: 0 or a negative errno.
pub fn compat_set_robust_list(head: u32, len: u32) -> i32 {
    let mut eax = NR32_SET_ROBUST_LIST;
    // SAFETY: a system call through the i386 entry with plain integer arguments; it only records
    // the pointer. `rbx` (the first argument) cannot be an operand: it is swapped in and out
    // around the call. The entry preserves every register but `eax`; r8-r11 are declared
    // clobbered all the same (kernels before 4.17 zeroed them).
    unsafe {
        core::arch::asm!(
            "xchg {h}, rbx",
            "int 0x80",
            "xchg {h}, rbx",
            h = inout(reg) u64::from(head) => _,
            inout("eax") eax,
            in("ecx") len,
            lateout("r8") _,
            lateout("r9") _,
            lateout("r10") _,
            lateout("r11") _,
        );
    }
    eax as i32
}

/// Waits up to `limit` for `pid` to end, and returns its raw wait status, or `None` if it is
/// still running (it is then not reaped).
pub fn wait_pid_timeout(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        assert!(r == 0, "waitpid({}): {}", pid, Error::last_os_error());
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The state letter of thread `tid` of process `pid` (/proc/PID/task/TID/stat) and its wchan,
/// for reports; `None` if the thread is gone.
pub fn task_state(pid: libc::pid_t, tid: u32) -> Option<(char, String)> {
    let dir = format!("/proc/{}/task/{}", pid, tid);
    let stat = std::fs::read_to_string(format!("{}/stat", dir)).ok()?;
    let state = stat.rsplit(')').next()?.trim_start().chars().next()?;
    let wchan = std::fs::read_to_string(format!("{}/wchan", dir)).unwrap_or_default();
    Some((state, wchan.trim().to_string()))
}

/// The CPUs the calling thread may run on (`sched_getaffinity()`).
pub fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: `set` is a plain bit set, valid for the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let r = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        check(r as libc::c_long)?;
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// Pins the calling thread to `cpu` (`sched_setaffinity()`).
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: `set` is a plain bit set, valid for the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let r = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        check(r as libc::c_long).map(|_| ())
    }
}

/// `mmap()` of `fd` from byte `offset` (a multiple of the page size), returning the error.
pub fn mmap_offset(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    offset: usize,
) -> Result<usize> {
    // SAFETY: callers pass `MAP_FIXED` only over memory of their own that they mean to replace.
    let p = unsafe { libc::mmap(addr as *mut _, len, prot, flags, fd, offset as libc::off_t) };
    if p == libc::MAP_FAILED {
        Err(Error::last_os_error())
    } else {
        Ok(p as usize)
    }
}

/// `munmap()`, returning the error.
pub fn munmap(addr: usize, len: usize) -> Result<()> {
    // SAFETY: callers unmap memory of their own that nothing uses any more.
    check(unsafe { libc::munmap(addr as *mut _, len) } as libc::c_long).map(|_| ())
}

/// `fork()` as the bare system call: no glibc wrapper, so no `pthread_atfork()` handlers and no
/// locks taken, and no robust list registered in the child (a new task has none until it calls
/// `set_robust_list()`; glibc's wrapper registers its own). Cheaper, for children forked by
/// the thousand or in a tight loop. Only for a single-threaded caller whose child uses system
/// calls only (no allocation, no stdio). Returns 0 in the child.
pub fn fork_raw() -> Result<libc::pid_t> {
    // SAFETY: a plain fork; the callers' children keep to system calls and end with `_exit()`.
    check(unsafe { libc::syscall(libc::SYS_fork) }).map(|p| p as libc::pid_t)
}

/// Atomically adds `v` to the `u32` at `addr` (shared memory that other processes update too);
/// returns the previous value.
pub fn fetch_add_u32(addr: usize, v: u32) -> u32 {
    // SAFETY: callers pass an aligned `u32` of a mapping they own, only accessed atomically by
    // every process that updates it.
    unsafe { std::sync::atomic::AtomicU32::from_ptr(addr as *mut u32) }
        .fetch_add(v, std::sync::atomic::Ordering::SeqCst)
}

/// Reads a `usize` at an address that need not be aligned (a list pointer a case placed there
/// deliberately); a volatile access all the same.
pub fn read_usize_unaligned(addr: usize) -> usize {
    // SAFETY: callers pass addresses inside mappings they own; `[u8; 8]` has alignment 1.
    usize::from_ne_bytes(unsafe { std::ptr::read_volatile(addr as *const [u8; 8]) })
}

/// `futex_wait()` for a loop that re-checks its condition: waking up, a timeout, a changed value
/// (`EAGAIN`) and a signal are all fine; any other error is returned.
pub fn nap(addr: usize, val: u32, timeout: Duration) -> Result<()> {
    match futex_wait(addr, val, timeout) {
        Err(e)
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIMEDOUT | libc::EAGAIN | libc::EINTR)
            ) =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}
