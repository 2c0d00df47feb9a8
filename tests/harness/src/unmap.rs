//! Robust futexes in shared memory their holder unmapped (`unmap.rst`): the exit walk of the
//! built-in walker faults on the unmapped entry and stops; the module's reaches the memory
//! through its file. Cases that run under both walkers assert each walker's behaviour: the
//! built-in one's failure is what the module fixes.

use crate::cases::counter;
use crate::glibc::Mutex;
use crate::list::HEAD_LEN;
use crate::sys::{self, *};
use crate::{Ctx, Walker};
use std::time::Duration;

type R = Result<(), String>;

const PAGE: usize = 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const WAITERS: u32 = 0x8000_0000;
const OWNER_DIED: u32 = 0x4000_0000;
/// The futex word of an entry lies this many bytes before it (as the holders' heads say).
const OFFSET: isize = -0x20;
/// What turns a hang into a failure.
const LIMIT: Duration = Duration::from_secs(30);

fn map_memfd(len: usize) -> Result<(i32, usize), String> {
    let fd = crate::cleanup::memfd(len);
    let p = sys::mmap(0, len, RW, libc::MAP_SHARED, fd).map_err(|e| format!("mmap: {}", e))?;
    Ok((fd, p))
}

fn rust(ctx: &Ctx) -> bool {
    matches!(ctx.walker, Walker::Rust)
}

/// The write-up's program: a process locks a process-shared robust mutex in a memfd, unmaps
/// the memfd while it holds the lock, and exits; another process waits for the lock. With the
/// module the waiter gets `EOWNERDEAD`; with the built-in walker it times out (the walk faulted
/// on the unmapped entry and stopped).
pub fn writeup_waiter(ctx: &Ctx) -> R {
    let (_fd, mem) = map_memfd(PAGE)?;
    let m = Mutex::init(mem, true, false)?;
    let sync = Shared::new(PAGE);
    let (locked, go) = (sync.at(0), sync.at(4));
    let holder = sys::fork_with(|| {
        if m.lock() != 0 {
            return 1;
        }
        sys::write_u32(locked, 1);
        let _ = sys::futex_wake(locked, 1);
        while sys::read_u32(go) == 0 {
            let _ = sys::futex_wait(go, 0, Duration::from_secs(1));
        }
        // The bug: the memory goes away with the lock held.
        if sys::munmap(mem, PAGE).is_err() {
            return 2;
        }
        0
    });
    while sys::read_u32(locked) == 0 {
        let _ = sys::futex_wait(locked, 0, Duration::from_millis(100));
    }
    let wait = if rust(ctx) {
        LIMIT
    } else {
        Duration::from_secs(3)
    };
    let r = std::thread::scope(|s| {
        // The waiter makes the lock consistent and releases it itself, as its owner.
        let waiter = s.spawn(|| match m.timedlock(wait) {
            r if r == libc::EOWNERDEAD => (r, m.consistent(), m.unlock()),
            r => (r, 0, 0),
        });
        // Let the waiter block on the futex before the holder goes.
        std::thread::sleep(Duration::from_millis(200));
        sys::write_u32(go, 1);
        let _ = sys::futex_wake(go, 1);
        waiter.join().unwrap()
    });
    let st = sys::wait_pid(holder);
    ensure!(exited_ok(st), "holder status {:#x}", st);
    let (r, consistent, unlock) = r;
    if rust(ctx) {
        ensure!(
            r == libc::EOWNERDEAD,
            "the waiter got {} ({}), want EOWNERDEAD",
            r,
            std::io::Error::from_raw_os_error(r)
        );
        ensure!(
            (consistent, unlock) == (0, 0),
            "the waiter's pthread_mutex_consistent() {}, unlock {}",
            consistent,
            unlock
        );
        let (l, u) = (m.lock(), m.unlock());
        ensure!((l, u) == (0, 0), "lock after recovery: {}, unlock {}", l, u);
        Ok(())
    } else {
        ensure!(
            r == libc::ETIMEDOUT,
            "built-in walker: the waiter got {}, expected ETIMEDOUT (the walk stops at the \
             unmapped entry)",
            r
        );
        Ok(())
    }
}

/// A list of four locks owned by a process: in anonymous shared memory, in a memfd the process
/// unmaps, then two more in anonymous shared memory, and `list_op_pending` on a fifth, unlocked.
/// The built-in walk marks the first and stops; the module's marks all four.
pub fn middle_of_list(ctx: &Ctx) -> R {
    let (_fd, mem) = map_memfd(PAGE)?;
    let list = Shared::new(PAGE);
    let head = list.at(0);
    let e = |i: usize| list.at(0x100 + 0x40 * i);
    let unmapped = mem + 0x40;
    let entries = [e(0), unmapped, e(1), e(2)];
    let pending = e(3);
    let word = |entry: usize| (entry as isize + OFFSET) as usize;
    sys::write_usize(head, entries[0]);
    sys::write_usize(head + 8, OFFSET as usize);
    sys::write_usize(head + 16, pending);
    for (i, &en) in entries.iter().enumerate() {
        sys::write_usize(en, entries.get(i + 1).copied().unwrap_or(head));
    }
    sys::write_u32(word(pending), 0);
    let sync = Shared::new(PAGE);
    let ready = sync.at(0);
    let holder = sys::fork_with(|| {
        let tid = sys::gettid();
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 1;
        }
        for &en in &entries {
            sys::write_u32(word(en), tid);
        }
        if sys::munmap(mem, PAGE).is_err() {
            return 2;
        }
        sys::write_u32(ready, tid);
        0
    });
    let st = sys::wait_pid(holder);
    ensure!(exited_ok(st), "holder status {:#x}", st);
    let tid = sys::read_u32(ready);
    let words: Vec<u32> = entries.iter().map(|&en| sys::read_u32(word(en))).collect();
    let want: Vec<u32> = if rust(ctx) {
        vec![OWNER_DIED; 4]
    } else {
        vec![OWNER_DIED, tid, tid, tid]
    };
    ensure!(
        words == want,
        "words {:x?}, want {:x?} (the second lies in the memfd the holder unmapped)",
        words,
        want
    );
    Ok(())
}

/// A process that maps and unmaps shared memory without robust locks in it keeps nothing: after
/// each `munmap()` returns, `unmap_records` is back where it was.
pub fn records_bounded(_: &Ctx) -> R {
    const ROUNDS: usize = 2000;
    let (fd, _) = map_memfd(PAGE)?;
    let before = (counter("unmap_records")?, counter("unmap_recorded")?);
    let mut worst = 0;
    for _ in 0..ROUNDS {
        let p = sys::mmap(0, PAGE, RW, libc::MAP_SHARED, fd).map_err(|e| e.to_string())?;
        sys::write_u32(p, 1);
        sys::munmap(p, PAGE).map_err(|e| e.to_string())?;
        worst = worst.max(counter("unmap_records")?);
    }
    let after = (counter("unmap_records")?, counter("unmap_recorded")?);
    ensure!(
        after.1 >= before.1 + ROUNDS as u64,
        "unmap_recorded {} -> {}: the unmaps were not seen (this process has a robust list)",
        before.1,
        after.1
    );
    ensure!(
        worst <= before.0,
        "unmap_records rose to {} (from {}) after an munmap() returned: a record outlived its \
         system call with nothing pointing into it",
        worst,
        before.0
    );
    ensure_eq!(after.0, before.0);
    Ok(())
}

fn free_bytes(path: &std::ffi::CStr) -> Result<u64, String> {
    // SAFETY: `st` is a valid out pointer; `path` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    ensure!(
        unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0,
        "statvfs: {}",
        std::io::Error::last_os_error()
    );
    Ok(st.f_bfree * st.f_frsize)
}

/// A deleted file's space is not kept by a process that merely unmapped it: a 32 MiB file on
/// /tmp (tmpfs), written, mapped, unmapped and unlinked, gives its space back at once, while
/// the process lives.
pub fn deleted_file_space_freed(_: &Ctx) -> R {
    const LEN: usize = 32 << 20;
    let dir = c"/tmp";
    let path = std::ffi::CString::new(format!("/tmp/robust-unmap-{}", sys::getpid())).unwrap();
    let base = free_bytes(dir)?;
    // SAFETY: plain system calls on a path of our own.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
    };
    ensure!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    ensure!(unsafe { libc::ftruncate(fd, LEN as i64) } == 0, "ftruncate");
    let p = sys::mmap(0, LEN, RW, libc::MAP_SHARED, fd).map_err(|e| e.to_string())?;
    for off in (0..LEN).step_by(PAGE) {
        sys::write_u32(p + off, 1);
    }
    let full = free_bytes(dir)?;
    sys::munmap(p, LEN).map_err(|e| e.to_string())?;
    // SAFETY: as above.
    unsafe {
        libc::close(fd);
        libc::unlink(path.as_ptr());
    }
    let after = free_bytes(dir)?;
    ensure!(
        base.saturating_sub(full) >= (LEN as u64) / 2,
        "the file did not take space on /tmp ({} -> {} free)",
        base,
        full
    );
    ensure!(
        after + (1 << 20) >= base,
        "/tmp free space {} before the file, {} after it was unmapped and deleted: its space is \
         still held",
        base,
        after
    );
    Ok(())
}

/// The memory is mapped again at the same address, another memfd, before the holder dies: the
/// live mapping wins, as in the built-in walk. Its word is not the holder's: left alone, and
/// the unmapped memfd's word too.
pub fn remapped_live_wins(ctx: &Ctx) -> R {
    let (_fd, mem) = map_memfd(PAGE)?;
    let (other_fd, other) = map_memfd(PAGE)?;
    let list = Shared::new(PAGE);
    let head = list.at(0);
    let entry = mem + 0x40;
    let word = mem + 0x20;
    sys::write_usize(head, entry);
    sys::write_usize(head + 8, OFFSET as usize);
    sys::write_usize(head + 16, 0);
    sys::write_usize(entry, head);
    // The other memfd has the same entry at the same offset, its word 0 (not owned).
    sys::write_usize(other + 0x40, head);
    let sync = Shared::new(PAGE);
    let holder = sys::fork_with(|| {
        let tid = sys::gettid();
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 1;
        }
        sys::write_u32(word, tid);
        sys::write_u32(sync.at(0), tid);
        if sys::munmap(mem, PAGE).is_err() {
            return 2;
        }
        let again = sys::mmap_offset(
            mem,
            PAGE,
            RW,
            libc::MAP_SHARED | libc::MAP_FIXED,
            other_fd,
            0,
        );
        if !matches!(again, Ok(p) if p == mem) {
            return 3;
        }
        0
    });
    let words_before = if rust(ctx) {
        counter("unmap_words")?
    } else {
        0
    };
    let st = sys::wait_pid(holder);
    ensure!(exited_ok(st), "holder status {:#x}", st);
    let tid = sys::read_u32(sync.at(0));
    ensure!(
        sys::read_u32(word) == tid,
        "the unmapped memfd's word is {:#x}, want {:#x}: the walk went through the record \
         where a live mapping was",
        sys::read_u32(word),
        tid
    );
    ensure_eq!(sys::read_u32(other + 0x20), 0);
    if rust(ctx) {
        ensure_eq!(counter("unmap_words")?, words_before);
    }
    Ok(())
}

/// Another thread of the process holds the lock; the main thread unmaps the memory; the process
/// is killed. The holder thread's walk marks the word (records are per mm).
pub fn other_thread_holds(ctx: &Ctx) -> R {
    let (_fd, mem) = map_memfd(PAGE)?;
    let list = Shared::new(PAGE);
    let head = list.at(0);
    let entry = mem + 0x40;
    let word = mem + 0x20;
    sys::write_usize(head, entry);
    sys::write_usize(head + 8, OFFSET as usize);
    sys::write_usize(head + 16, 0);
    sys::write_usize(entry, head);
    let sync = Shared::new(PAGE);
    let (tid_at, unmapped) = (sync.at(0), sync.at(4));
    let pid = sys::fork_with(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let tid = sys::gettid();
                if sys::set_robust_list(head, HEAD_LEN).is_err() {
                    return;
                }
                sys::write_u32(word, tid);
                sys::write_u32(tid_at, tid);
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            while sys::read_u32(tid_at) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            if sys::munmap(mem, PAGE).is_ok() {
                sys::write_u32(unmapped, 1);
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    });
    let deadline = std::time::Instant::now() + LIMIT;
    while sys::read_u32(unmapped) == 0 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the holder never unmapped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kills our child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = sys::wait_pid(pid);
    let tid = sys::read_u32(tid_at);
    let want = if rust(ctx) { OWNER_DIED } else { tid };
    ensure!(
        sys::read_u32(word) == want,
        "word {:#x}, want {:#x}",
        sys::read_u32(word),
        want
    );
    Ok(())
}

/// exec walks the old list in the old mm: a holder that unmapped its lock's memory and execs
/// marks it (records are the old mm's, dropped with it).
pub fn exec_marks(ctx: &Ctx) -> R {
    let (_fd, mem) = map_memfd(PAGE)?;
    let list = Shared::new(PAGE);
    let head = list.at(0);
    let entry = mem + 0x40;
    let word = mem + 0x20;
    sys::write_usize(head, entry);
    sys::write_usize(head + 8, OFFSET as usize);
    sys::write_usize(head + 16, 0);
    sys::write_usize(entry, head);
    let sync = Shared::new(PAGE);
    let pid = sys::fork_with(|| {
        let tid = sys::gettid();
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 1;
        }
        sys::write_u32(word, tid | WAITERS);
        sys::write_u32(sync.at(0), tid);
        if sys::munmap(mem, PAGE).is_err() {
            return 2;
        }
        let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv.
        unsafe { libc::execv(argv[0], argv.as_ptr()) };
        3
    });
    let st = sys::wait_pid(pid);
    ensure!(exited_ok(st), "holder status {:#x}", st);
    let tid = sys::read_u32(sync.at(0));
    let want = if rust(ctx) {
        OWNER_DIED | WAITERS
    } else {
        tid | WAITERS
    };
    ensure!(
        sys::read_u32(word) == want,
        "word {:#x}, want {:#x}",
        sys::read_u32(word),
        want
    );
    Ok(())
}

/// Florian Weimer's question: must `pthread_join()` clean up too, since the joiner may free the
/// memory of a lock the joined thread died holding? No: a thread's exit walk runs in
/// `mm_release()` before the kernel clears its TID and wakes the joiner. Threads exit holding a
/// lock on their list, or with `list_op_pending` on one (the unlock window); right after each
/// `pthread_join()` returns, the joiner overwrites both locks' memory (the reuse); nothing is
/// written into it afterwards. Both walkers.
pub fn join_then_reuse(_: &Ctx) -> R {
    const THREADS: usize = 32;
    const PATTERN: u32 = 0x5a5a_5a5a;
    // Per thread: a head, an owned entry and a pending entry, 0x100 bytes apart.
    let mem = sys::private_anon(THREADS * 0x400);
    let at = |t: usize, i: usize| mem + t * 0x400 + i * 0x100;
    let word = |entry: usize| (entry as isize + OFFSET) as usize;
    let mut reused = Vec::new();
    for t in 0..THREADS {
        let (head, owned, pending) = (at(t, 0), at(t, 1) + 0x40, at(t, 2) + 0x40);
        let h = std::thread::spawn(move || {
            let tid = sys::gettid();
            sys::write_usize(head, owned);
            sys::write_usize(head + 8, OFFSET as usize);
            sys::write_usize(head + 16, pending);
            sys::write_usize(owned, head);
            sys::write_u32(word(owned), tid);
            sys::write_u32(word(pending), 0); // released, slot not yet cleared: the window
            sys::set_robust_list(head, HEAD_LEN).map_err(|e| e.to_string())
        });
        h.join()
            .map_err(|_| "thread panicked".to_string())?
            .map_err(|e| format!("set_robust_list: {}", e))?;
        // Joined: reuse both locks' memory at once.
        for w in [word(owned), word(pending)] {
            sys::write_u32(w, PATTERN);
        }
        sys::write_usize(owned, 0);
        sys::write_usize(pending, 0);
        reused.push((owned, pending));
    }
    std::thread::sleep(Duration::from_millis(100));
    for (t, &(owned, pending)) in reused.iter().enumerate() {
        let got = [sys::read_u32(word(owned)), sys::read_u32(word(pending))];
        ensure!(
            got == [PATTERN, PATTERN],
            "thread {}: the reused words are {:#x?} after pthread_join() returned, want {:#x}: \
             written after the join",
            t,
            got,
            PATTERN
        );
    }
    Ok(())
}
