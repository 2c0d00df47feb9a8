//! `hardening_fuse_head_never_served`: `cleanup_robust_list()` never waits on a file system
//! another user serves.
//!
//! A process that maps the memory being cleaned is a candidate: the call reads its robust list
//! head. That head may lie anywhere in its memory, chosen by its owner, for instance in a file
//! of a FUSE file system the owner serves itself (an unprivileged user can mount one in a user
//! namespace). Faulting such a page in sends a read request to the server; a server that takes
//! it and never answers leaves the faulting task waiting uninterruptibly, even when killed. The
//! module read other processes' heads with `access_process_vm()`, which faults the page in: the
//! caller, an innocent process cleaning its own shared memory (`pthread_mutex_destroy()`), hung
//! in D state for as long as the other process wished. It now faults in only anonymous memory
//! and shmem (whose faults wait for nothing but the kernel); a head elsewhere that is not mapped
//! is counted in debugfs `cleanup_missed` and left alone.
//!
//! The case runs a minimal FUSE server (the `/dev/fuse` protocol spoken directly: INIT,
//! LOOKUP, GETATTR, OPEN, and READ requests counted, never answered) in a child process.

use crate::cases::counter;
use crate::hardening::{reported, wait_until};
use crate::sys::{self, *};
use crate::Ctx;
use std::time::Duration;

type R = Result<(), String>;

const PAGE: usize = 4096;
/// How long the caller gets: far more than a call takes under TCG.
const LIMIT: Duration = Duration::from_secs(30);

const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_RELEASE: u32 = 18;
const FUSE_FLUSH: u32 = 25;
const FUSE_INIT: u32 = 26;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_BATCH_FORGET: u32 = 42;
/// `sizeof(struct fuse_in_header)`.
const IN_HEADER: usize = 40;
/// The file's node ID (the root's is 1).
const FILE_NODE: u64 = 2;

// Offsets in the page shared with the children.
/// Set by the server once the file system is mounted (or by a failure).
const SH_MOUNTED: usize = 0;
/// READ requests the server received.
const SH_READS: usize = 4;
/// Set by the holder once its head is registered; then it waits for [`SH_RELEASE`].
const SH_HOLDING: usize = 8;
const SH_RELEASE: usize = 12;
/// Set by the caller when its call returned, with the result and errno.
const SH_RETURNED: usize = 16;
const SH_RESULT: usize = 24;
const SH_ERRNO: usize = 32;
/// A child's failure: step (nonzero) and errno.
const SH_FAILED: usize = 40;
const SH_FAILED_ERRNO: usize = 44;
/// Set by the second holder once its head is registered and its page unmapped from its page
/// tables.
const SH_HOLDING2: usize = 48;

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_ne_bytes());
}

/// A `struct fuse_attr`: the root directory or the file of one page.
fn attr(b: &mut Vec<u8>, node: u64) {
    let (size, mode, nlink) = if node == FILE_NODE {
        (PAGE as u64, 0o100644, 1)
    } else {
        (0, 0o40755, 2)
    };
    put_u64(b, node); // ino
    put_u64(b, size);
    put_u64(b, size / 512); // blocks
    for _ in 0..3 {
        put_u64(b, 0); // atime, mtime, ctime
    }
    for _ in 0..3 {
        put_u32(b, 0); // their nanoseconds
    }
    put_u32(b, mode);
    put_u32(b, nlink);
    put_u32(b, 0); // uid
    put_u32(b, 0); // gid
    put_u32(b, 0); // rdev
    put_u32(b, PAGE as u32); // blksize
    put_u32(b, 0); // flags
}

/// Writes a reply to request `unique`: `error` (a negative errno, or 0) and `body`.
fn reply(fd: i32, unique: u64, error: i32, body: &[u8]) -> bool {
    let mut b = Vec::with_capacity(16 + body.len());
    put_u32(&mut b, (16 + body.len()) as u32);
    b.extend_from_slice(&error.to_ne_bytes());
    put_u64(&mut b, unique);
    b.extend_from_slice(body);
    // SAFETY: writes our buffer.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) == b.len() as isize }
}

/// The server (a child process): mounts the file system at `dir`, answers what opening and
/// mapping its one file `f` needs, counts READ requests and never answers them. Returns when
/// the connection ends (the child is killed, or the file system unmounted).
fn serve(sh: usize, dir: &std::ffi::CStr) -> i32 {
    let fail = |step: u32| {
        sys::write_u32(sh + SH_FAILED_ERRNO, last_errno() as u32);
        sys::write_u32(sh + SH_FAILED, step);
        sys::write_u32(sh + SH_MOUNTED, 1);
        let _ = sys::futex_wake(sh + SH_MOUNTED, i32::MAX);
        1
    };
    // SAFETY: plain system calls on our own buffers and paths.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return fail(1);
    }
    let opts =
        std::ffi::CString::new(format!("fd={},rootmode=40000,user_id=0,group_id=0", fd)).unwrap();
    // SAFETY: as above.
    let r = unsafe {
        libc::mount(
            c"robust-fuse".as_ptr(),
            dir.as_ptr(),
            c"fuse".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        )
    };
    if r != 0 {
        return fail(2);
    }
    sys::write_u32(sh + SH_MOUNTED, 1);
    let _ = sys::futex_wake(sh + SH_MOUNTED, i32::MAX);
    let mut buf = vec![0u8; 1 << 17];
    loop {
        // SAFETY: reads into our buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match last_errno() {
                libc::EINTR | libc::ENOENT | libc::EAGAIN => continue,
                _ => return 0, // ENODEV: unmounted or aborted
            }
        }
        let n = n as usize;
        if n < IN_HEADER {
            continue;
        }
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().unwrap());
        let (opcode, unique, node) = (u32_at(4), u64_at(8), u64_at(16));
        let mut body = Vec::new();
        let error = match opcode {
            FUSE_INIT => {
                put_u32(&mut body, 7); // major
                put_u32(&mut body, u32_at(IN_HEADER + 4)); // the kernel's minor
                put_u32(&mut body, PAGE as u32); // max_readahead
                put_u32(&mut body, 0); // flags: no FUSE_ASYNC_READ
                body.extend_from_slice(&12u16.to_ne_bytes()); // max_background
                body.extend_from_slice(&9u16.to_ne_bytes()); // congestion_threshold
                put_u32(&mut body, PAGE as u32); // max_write
                put_u32(&mut body, 1); // time_gran
                body.resize(64, 0); // max_pages .. unused: 0
                0
            }
            FUSE_LOOKUP if node == 1 && buf[IN_HEADER..n].starts_with(b"f\0") => {
                put_u64(&mut body, FILE_NODE);
                put_u64(&mut body, 1); // generation
                put_u64(&mut body, 3600); // entry_valid
                put_u64(&mut body, 3600); // attr_valid
                put_u64(&mut body, 0); // their nanoseconds
                attr(&mut body, FILE_NODE);
                0
            }
            FUSE_LOOKUP => -libc::ENOENT,
            FUSE_GETATTR => {
                put_u64(&mut body, 3600); // attr_valid
                put_u64(&mut body, 0); // attr_valid_nsec, dummy
                attr(&mut body, node);
                0
            }
            FUSE_OPEN => {
                put_u64(&mut body, 1); // fh
                put_u64(&mut body, 0); // open_flags, backing_id
                0
            }
            FUSE_READ => {
                sys::fetch_add_u32(sh + SH_READS, 1);
                let _ = sys::futex_wake(sh + SH_READS, i32::MAX);
                continue; // never answered
            }
            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => continue, // no reply
            FUSE_RELEASE | FUSE_FLUSH => 0,
            _ => -libc::ENOSYS,
        };
        reply(fd, unique, error, &body);
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The holder (a child process, mapping the memfd through the mapping it inherited): maps the
/// FUSE file without touching it and registers its robust list head at the start of that
/// mapping, then waits until released.
fn hold(sh: usize, file: &std::ffi::CStr) -> i32 {
    let fail = |step: u32| {
        sys::write_u32(sh + SH_FAILED_ERRNO, last_errno() as u32);
        sys::write_u32(sh + SH_FAILED, step);
        sys::write_u32(sh + SH_HOLDING, 1);
        let _ = sys::futex_wake(sh + SH_HOLDING, i32::MAX);
        1
    };
    // SAFETY: opens our path.
    let fd = unsafe { libc::open(file.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return fail(11);
    }
    let Ok(head) = sys::mmap(0, PAGE, libc::PROT_READ, libc::MAP_SHARED, fd) else {
        return fail(12);
    };
    if sys::set_robust_list(head, 24).is_err() {
        return fail(13);
    }
    sys::write_u32(sh + SH_HOLDING, 1);
    let _ = sys::futex_wake(sh + SH_HOLDING, i32::MAX);
    while sys::read_u32(sh + SH_RELEASE) == 0 {
        let _ = sys::nap(sh + SH_RELEASE, 0, Duration::from_millis(200));
    }
    // Its exit walk would read the head there, and wait on the server as well: an empty list
    // in anonymous memory instead.
    let own = sys::private_anon(PAGE);
    sys::write_usize(own, own);
    if sys::set_robust_list(own, 24).is_err() {
        return fail(14);
    }
    0
}

/// The second holder (a child process, mapping the memfd and the memfd of heads through the
/// mappings it inherited): registers a head in the memfd of heads, pending on the memfd's word,
/// then maps the memfd anew over that page (`MAP_FIXED`, not touched: the page stays in the
/// memfd, not in its page tables; the test kernel has no `madvise()`), so that reading it from
/// another process takes a fault: shmem, which the call must fault in.
fn hold_in_shmem(sh: usize, head: usize, fd: i32, word: usize) -> i32 {
    let fail = |step: u32| {
        sys::write_u32(sh + SH_FAILED_ERRNO, last_errno() as u32);
        sys::write_u32(sh + SH_FAILED, step);
        sys::write_u32(sh + SH_HOLDING2, 1);
        let _ = sys::futex_wake(sh + SH_HOLDING2, i32::MAX);
        1
    };
    crate::hardening::write_head(head, word);
    if sys::set_robust_list(head, 24).is_err() {
        return fail(21);
    }
    let again = sys::mmap_offset(
        head,
        PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_FIXED,
        fd,
        0,
    );
    if !matches!(again, Ok(p) if p == head) {
        return fail(22);
    }
    sys::write_u32(sh + SH_HOLDING2, 1);
    let _ = sys::futex_wake(sh + SH_HOLDING2, i32::MAX);
    while sys::read_u32(sh + SH_RELEASE) == 0 {
        let _ = sys::nap(sh + SH_RELEASE, 0, Duration::from_millis(200));
    }
    0
}

fn failure(sh: usize, who: &str) -> Option<String> {
    let step = sys::read_u32(sh + SH_FAILED);
    (step != 0).then(|| {
        format!(
            "{} failed at step {}: {}",
            who,
            step,
            std::io::Error::from_raw_os_error(sys::read_u32(sh + SH_FAILED_ERRNO) as i32)
        )
    })
}

/// Waits up to [`LIMIT`] for the `u32` at `addr` to become nonzero.
fn wait_set(addr: usize, what: &str) -> R {
    let deadline = std::time::Instant::now() + LIMIT;
    while sys::read_u32(addr) == 0 {
        ensure!(
            std::time::Instant::now() < deadline,
            "{}: not within {:?}",
            what,
            LIMIT
        );
        let _ = sys::nap(addr, 0, Duration::from_millis(100));
    }
    Ok(())
}

/// A holder process maps a memfd and keeps its robust list head in a page of a FUSE file whose
/// server never answers a read; another process calls `cleanup_robust_list()` on the memfd:
/// the call must return within [`LIMIT`] (the head unread, counted in `cleanup_missed`), and
/// the server must have seen no read. A second holder keeps its head, pending on the memfd, in
/// a shmem page dropped from its page tables: that one the call must fault in and clear (a
/// call that faulted nothing in would pass the first part).
pub fn head_never_served(_: &Ctx) -> R {
    let sh = Shared::new(PAGE);
    let dir = format!("/tmp/robust-fuse-{}", sys::getpid());
    let cdir = std::ffi::CString::new(dir.clone()).unwrap();
    std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {}", dir, e))?;
    let server = sys::fork_with(|| serve(sh.base, &cdir));
    let r = (|| -> R {
        wait_set(sh.at(SH_MOUNTED), "the FUSE server mounting")?;
        if let Some(e) = failure(sh.base, "the FUSE server") {
            return Err(e);
        }
        let memfd = crate::cleanup::memfd(PAGE);
        let mem = sys::mmap(
            0,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            memfd,
        )
        .map_err(|e| format!("mmap memfd: {}", e))?;
        let heads_fd = crate::cleanup::memfd(PAGE);
        let heads = sys::mmap(
            0,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            heads_fd,
        )
        .map_err(|e| format!("mmap memfd of heads: {}", e))?;
        let file = std::ffi::CString::new(format!("{}/f", dir)).unwrap();
        let holder = sys::fork_with(|| hold(sh.base, &file));
        let holder2 = sys::fork_with(|| hold_in_shmem(sh.base, heads, heads_fd, mem));
        let r = (|| -> R {
            wait_set(sh.at(SH_HOLDING), "the holder registering its head")?;
            wait_set(sh.at(SH_HOLDING2), "the second holder registering its head")?;
            if let Some(e) = failure(sh.base, "a holder") {
                return Err(e);
            }
            let missed = counter("cleanup_missed")?;
            let caller = sys::fork_with(|| {
                let r = sys::cleanup_robust_list(mem, 4, 0);
                let (v, e) = match r {
                    Ok(v) => (v as usize, 0),
                    Err(e) => (usize::MAX, e.raw_os_error().unwrap_or(0) as u32),
                };
                sys::write_usize(sh.at(SH_RESULT), v);
                sys::write_u32(sh.at(SH_ERRNO), e);
                sys::write_u32(sh.at(SH_RETURNED), 1);
                0
            });
            let Some(st) = sys::wait_pid_timeout(caller, LIMIT) else {
                let state = sys::task_state(caller, caller as u32);
                let reads = sys::read_u32(sh.at(SH_READS));
                // Ending the server aborts the connection: the caller's read fails, it returns.
                // SAFETY: signals our child.
                unsafe { libc::kill(server, libc::SIGKILL) };
                let _ = sys::wait_pid_timeout(caller, LIMIT);
                return Err(format!(
                    "cleanup_robust_list() on a memfd did not return within {:?}: the caller \
                     waits on the FUSE server of a process that maps the memfd (its state, \
                     wchan: {:?}; READ requests the server received: {})",
                    LIMIT, state, reads
                ));
            };
            ensure!(exited_ok(st), "the caller's status: {:#x}", st);
            let result = sys::read_usize(sh.at(SH_RESULT));
            ensure!(
                result == 1,
                "cleanup_robust_list() returned {} (errno {}), want 1 (the second holder's slot)",
                result as isize,
                sys::read_u32(sh.at(SH_ERRNO))
            );
            let slot = sys::read_usize(heads + 16);
            ensure!(
                slot == 0,
                "the second holder's slot, in shmem dropped from its page tables, is {:#x}: \
                 not cleared (the call must fault shmem in)",
                slot
            );
            let reads = sys::read_u32(sh.at(SH_READS));
            ensure!(
                reads == 0,
                "the FUSE server received {} READ requests",
                reads
            );
            let now = counter("cleanup_missed")?;
            ensure!(
                now > missed,
                "cleanup_missed {} -> {}: the unreadable head was not counted",
                missed,
                now
            );
            Ok(())
        })();
        sys::write_u32(sh.at(SH_RELEASE), 1);
        let _ = sys::futex_wake(sh.at(SH_RELEASE), i32::MAX);
        let st = sys::wait_pid_timeout(holder, LIMIT);
        let st2 = sys::wait_pid_timeout(holder2, LIMIT);
        r?;
        ensure!(
            st.is_some_and(exited_ok) && st2.is_some_and(exited_ok),
            "the holders' status: {:?}, {:?}",
            st,
            st2
        );
        Ok(())
    })();
    // SAFETY: signals our child; detaches the mount (the connection ends with the server).
    unsafe {
        libc::kill(server, libc::SIGKILL);
        libc::umount2(cdir.as_ptr(), libc::MNT_DETACH);
    }
    let _ = sys::wait_pid_timeout(server, LIMIT);
    let _ = std::fs::remove_dir(&dir);
    r
}

/// How many times a call may sleep (a millisecond at least) in all for locks other tasks hold
/// (the module's `LOCK_WAIT_SLEEPS`).
const LOCK_WAIT_SLEEPS: u64 = 1000;

/// `hardening_locked_mm_given_up_once`: another process whose `mmap_lock` stays taken delays
/// a call once, not once per thread.
///
/// P maps the memfd and has 6 holder threads with heads (and its own glibc heads); then its
/// thread A reads, through `/proc/self/mem`, a page of the FUSE file whose server never answers
/// (`access_remote_vm()` holds P's `mmap_lock` for reading while the fault waits), and its
/// thread B calls `mmap()`: a writer queued behind A, so that every later attempt to take P's
/// `mmap_lock` for reading fails. A call on the memfd must give up on P's `mmap_lock` once
/// (debugfs `cleanup_lock_gave_up` + 1, after [`LOCK_WAIT_SLEEPS`] sleeps of a millisecond in
/// all, `cleanup_lock_waits`: every try fails, B being queued) and count each of P's heads as missed, instead of trying again for
/// each head (a second each: 9 here). Through the index (one pass over P's heads) and, with
/// `--scan`, through the fallback that walks every thread (each of P's threads in turn).
pub fn locked_mm_given_up_once(ctx: &Ctx) -> R {
    const HOLDERS: usize = 6;
    // In `p`: holders registered (0), the go for A (4), the go for B (8), A's TID (12), B's
    // TID (16), a failure in P (20, the step) and its errno (24), never set (28).
    let (sh, p) = (Shared::new(PAGE), Shared::new(PAGE));
    let (shb, pb) = (sh.base, p.base);
    let dir = format!("/tmp/robust-fuse-lock-{}", sys::getpid());
    let cdir = std::ffi::CString::new(dir.clone()).unwrap();
    std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {}", dir, e))?;
    let server = sys::fork_with(|| serve(shb, &cdir));
    let mut pid = None;
    let r = (|| -> R {
        wait_set(sh.at(SH_MOUNTED), "the FUSE server mounting")?;
        if let Some(e) = failure(shb, "the FUSE server") {
            return Err(e);
        }
        let memfd = crate::cleanup::memfd(PAGE);
        let mem = crate::cleanup::map_fd(memfd, PAGE, libc::MAP_SHARED);
        let file = std::ffi::CString::new(format!("{}/f", dir)).unwrap();
        pid = Some(sys::fork_with(|| locked_mm_process(pb, &file, HOLDERS)));
        let p_pid = pid.unwrap();
        let p_failed = || reported(pb, 20, 24, lm_step).map(|e| format!("P: {}", e));
        wait_until(
            pb,
            LIMIT,
            "P's holders registering",
            || sys::read_u32(pb) == HOLDERS as u32 && sys::read_u32(pb + 12) != 0,
            p_failed,
        )?;
        sys::write_u32(pb + 4, 1);
        let _ = sys::futex_wake(pb + 4, 1);
        wait_until(
            sh.at(SH_READS),
            LIMIT,
            "A's read reaching the FUSE server",
            || sys::read_u32(sh.at(SH_READS)) > 0,
            p_failed,
        )?;
        sys::write_u32(pb + 8, 1);
        let _ = sys::futex_wake(pb + 8, 1);
        wait_until(
            pb + 16,
            LIMIT,
            "B queueing for P's mmap_lock",
            || {
                let b = sys::read_u32(pb + 16);
                b != 0 && matches!(sys::task_state(p_pid, b), Some((s, _)) if s == 'D')
            },
            p_failed,
        )?;
        let counts = || -> Result<[u64; 4], String> {
            Ok([
                counter("cleanup_lock_gave_up")?,
                counter("cleanup_lock_waits")?,
                counter("cleanup_missed")?,
                counter("cleanup_scans")?,
            ])
        };
        let before = counts()?;
        let start = std::time::Instant::now();
        let n = cleanup_call(mem)?;
        let took = start.elapsed();
        let after = counts()?;
        let [gave_up, waits, missed, scans] = std::array::from_fn(|i| after[i] - before[i]);
        let how = if ctx.scan {
            "walking every thread"
        } else {
            "through the index"
        };
        ensure!(
            scans == u64::from(ctx.scan),
            "the call ran {} fallback scans, want {} ({})",
            scans,
            u64::from(ctx.scan),
            how
        );
        ensure!(
            n == 0 && gave_up == 1 && waits == LOCK_WAIT_SLEEPS && missed >= HOLDERS as u64,
            "{}, the call returned {} after {:?}; it gave up on P's mmap_lock {} times (want \
             once) after {} sleeps for it (want {}), and counted {} heads as missed (want at \
             least {}, P's holders)",
            how,
            n,
            took,
            gave_up,
            waits,
            LOCK_WAIT_SLEEPS,
            missed,
            HOLDERS
        );
        println!(
            "# {}: gave up once after {} sleeps; the call took {:?}",
            how, waits, took
        );
        Ok(())
    })();
    // Ending the server aborts the connection: A's read fails, B gets the lock; then P goes.
    // SAFETY: signals our children; detaches the mount.
    unsafe {
        libc::kill(server, libc::SIGKILL);
        if let Some(p) = pid {
            libc::kill(p, libc::SIGKILL);
        }
        libc::umount2(cdir.as_ptr(), libc::MNT_DETACH);
    }
    let _ = sys::wait_pid_timeout(server, LIMIT);
    if let Some(p) = pid {
        ensure!(
            sys::wait_pid_timeout(p, LIMIT).is_some(),
            "P did not end within {:?} of SIGKILL",
            LIMIT
        );
    }
    let _ = std::fs::remove_dir(&dir);
    r
}

fn cleanup_call(addr: usize) -> Result<i64, String> {
    sys::cleanup_robust_list(addr, 4, 0).map_err(|e| format!("cleanup_robust_list: {}", e))
}

/// The steps of [`locked_mm_process`], for a failure it reports.
fn lm_step(step: u32) -> &'static str {
    match step {
        1 => "opening the FUSE file",
        2 => "mapping the FUSE file",
        3 => "a holder's set_robust_list()",
        4 => "A opening /proc/self/mem",
        _ => "?",
    }
}

/// P of [`locked_mm_given_up_once`] (a child, mapping the memfd through the mapping it
/// inherited); see there. Never returns unless a step fails: it is killed.
fn locked_mm_process(p: usize, file: &std::ffi::CStr, holders: usize) -> i32 {
    let fail = |step: u32| {
        sys::write_u32(p + 24, last_errno() as u32);
        sys::write_u32(p + 20, step);
        1
    };
    // SAFETY: opens our path.
    let fd = unsafe { libc::open(file.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return fail(1);
    }
    let Ok(fuse_page) = sys::mmap(0, PAGE, libc::PROT_READ, libc::MAP_SHARED, fd) else {
        return fail(2);
    };
    let heads = sys::private_anon(PAGE);
    let nap = |at: usize| {
        while sys::read_u32(at) == 0 {
            let _ = sys::nap(at, 0, Duration::from_millis(200));
        }
    };
    // Every thread is started before A takes the lock: a thread's stack is an mmap().
    for i in 0..holders {
        let h = heads + 64 * i;
        crate::hardening::write_head(h, 0);
        std::thread::spawn(move || {
            if sys::set_robust_list(h, 24).is_err() {
                sys::write_u32(p + 24, last_errno() as u32);
                sys::write_u32(p + 20, 3);
                return;
            }
            sys::fetch_add_u32(p, 1);
            nap(p + 28);
        });
    }
    std::thread::spawn(move || {
        nap(p + 8);
        sys::write_u32(p + 16, sys::gettid());
        // Queued behind A for as long as A waits.
        let _ = sys::mmap(
            0,
            PAGE,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
        );
        nap(p + 28);
    });
    std::thread::spawn(move || {
        nap(p + 4);
        // SAFETY: opens and reads our own memory into our buffer. The read waits until the
        // server is killed (the test then checks nothing of it).
        unsafe {
            let mem = libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDONLY);
            if mem < 0 {
                sys::write_u32(p + 24, last_errno() as u32);
                sys::write_u32(p + 20, 4);
                return;
            }
            let mut buf = [0u8; 8];
            libc::pread(mem, buf.as_mut_ptr().cast(), 8, fuse_page as i64);
        }
        nap(p + 28);
    });
    sys::write_u32(p + 12, sys::gettid());
    nap(p + 28);
    0
}
