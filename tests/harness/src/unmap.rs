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

/// One lock on a robust list: its entry at 0x40 of a page of a memfd (its word at 0x20), the
/// head in anonymous shared memory.
struct OneLock {
    mem: usize,
    head: usize,
    word: usize,
    _list: Shared,
}

impl OneLock {
    fn new() -> Result<OneLock, String> {
        let (_fd, mem) = map_memfd(PAGE)?;
        let list = Shared::new(PAGE);
        let head = list.at(0);
        link_one(head, mem + 0x40);
        Ok(OneLock {
            mem,
            head,
            word: mem + 0x20,
            _list: list,
        })
    }
}

/// Maps `n` memfds of a page, MAP_SHARED and written, each at its own address (in an area
/// reserved for them, so that no two records overlap), and unmaps each: `n` records for a
/// process with a robust list. In a forked child: fails with the exit code to return (2: a
/// mapping, 3: an unmap).
fn unmap_memfds_apart(n: usize) -> Result<(), i32> {
    let area = sys::mmap(
        0,
        n * PAGE,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    )
    .map_err(|_| 2)?;
    for i in 0..n {
        let fd = crate::cleanup::memfd(PAGE);
        let p = sys::mmap_offset(
            area + i * PAGE,
            PAGE,
            RW,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            0,
        );
        // SAFETY: our own descriptor, not used after this.
        unsafe { libc::close(fd) };
        let p = p.map_err(|_| 2)?;
        sys::write_u32(p, 1);
        sys::munmap(p, PAGE).map_err(|_| 3)?;
    }
    Ok(())
}

/// Waits up to [`LIMIT`] for the `u32` at `addr` (set by another process) to reach `n`.
fn wait_reaches(addr: usize, n: u32, what: &str) -> R {
    let deadline = std::time::Instant::now() + LIMIT;
    while sys::read_u32(addr) < n {
        ensure!(
            std::time::Instant::now() < deadline,
            "{}: not within {:?}",
            what,
            LIMIT
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Makes `head` a robust list head (`futex_offset` [`OFFSET`], nothing pending) whose list
/// holds the one entry at `entry`.
fn link_one(head: usize, entry: usize) {
    sys::write_usize(head, entry);
    sys::write_usize(head + 8, OFFSET as usize);
    sys::write_usize(head + 16, 0);
    sys::write_usize(entry, head);
}

fn rust(ctx: &Ctx) -> bool {
    matches!(ctx.walker, Walker::Rust)
}

/// The write-up's holder: a forked process that has locked a process-shared robust mutex (PI
/// if asked) at the start of a memfd it maps (`mem`, also mapped here), and, once `go` is set,
/// unmaps the memfd with the lock held and exits.
struct UnmappingHolder {
    mem: usize,
    m: Mutex,
    /// Set to 1 (and woken) to let the holder unmap and exit.
    go: usize,
    holder: libc::pid_t,
    /// The holder's TID, the owner the lock's word names.
    tid: u32,
    _sync: Shared,
}

impl UnmappingHolder {
    /// Forks the holder of a robust mutex, PI if `pi`, and waits until it holds the lock.
    fn start(pi: bool) -> Result<Self, String> {
        let (_fd, mem) = map_memfd(PAGE)?;
        let m = Mutex::init(mem, true, pi)?;
        let sync = Shared::new(PAGE);
        let (locked, go) = (sync.at(0), sync.at(4));
        let holder = sys::fork_with(|| {
            if m.lock() != 0 {
                return 1;
            }
            sys::write_u32(locked, sys::gettid());
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
        wait_reaches(locked, 1, "the holder's lock")?;
        Ok(UnmappingHolder {
            mem,
            m,
            go,
            holder,
            tid: sys::read_u32(locked),
            _sync: sync,
        })
    }
}

/// The write-up's program: a process locks a process-shared robust mutex in a memfd, unmaps
/// the memfd while it holds the lock, and exits; another process waits for the lock. With the
/// module the waiter gets `EOWNERDEAD`; with the built-in walker it times out (the walk faulted
/// on the unmapped entry and stopped).
pub fn writeup_waiter(ctx: &Ctx) -> R {
    let UnmappingHolder {
        m,
        go,
        holder,
        _sync,
        ..
    } = UnmappingHolder::start(false)?;
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
    link_one(head, entry);
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
    let lock = OneLock::new()?;
    let (mem, head, word) = (lock.mem, lock.head, lock.word);
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
    wait_reaches(unmapped, 1, "the holder never unmapped")?;
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
    let lock = OneLock::new()?;
    let (mem, head, word) = (lock.mem, lock.head, lock.word);
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

/// The compat walk: a 32-bit child owns three locks, the second in a memfd it unmaps before it
/// dies (`compat32 unmap`): the module's walk marks all three, the built-in one the first.
pub fn compat32(ctx: &Ctx) -> R {
    crate::cases::run_compat32(ctx, &["unmap", if rust(ctx) { "rust" } else { "c" }])
}

/// A holder whose list points into memory it unmapped (a record in its mm) forks; the child
/// registers its copy of the list and exits: its walk faults there and stops, as the built-in
/// one (records are not inherited: `unmap_words` does not move). The holder's own exit then
/// marks the word through its record.
pub fn fork_not_inherited(_: &Ctx) -> R {
    let (_fd, mem) = map_memfd(PAGE)?;
    let head = sys::private_anon(PAGE);
    let entry = mem + 0x40;
    let word = mem + 0x20;
    let sync = Shared::new(PAGE);
    let (tid_at, child_done, go) = (sync.at(0), sync.at(4), sync.at(8));
    let holder = sys::fork_with(|| {
        let tid = sys::gettid();
        link_one(head, entry);
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 1;
        }
        sys::write_u32(word, tid);
        if sys::munmap(mem, PAGE).is_err() {
            return 2;
        }
        sys::write_u32(tid_at, tid);
        while sys::read_u32(go) < 1 {
            let _ = sys::futex_wait(go, 0, Duration::from_millis(100));
        }
        let child = sys::fork_with(|| {
            // The kernel gives a child no robust list: register the copy.
            if sys::set_robust_list(head, HEAD_LEN).is_err() {
                return 1;
            }
            0
        });
        if !exited_ok(sys::wait_pid(child)) {
            return 3;
        }
        sys::write_u32(child_done, 1);
        while sys::read_u32(go) < 2 {
            let _ = sys::futex_wait(go, 1, Duration::from_millis(100));
        }
        0
    });
    let r = (|| -> R {
        wait_reaches(tid_at, 1, "the holder never unmapped")?;
        // The holder forks the child only once the count is read.
        let before = counter("unmap_words")?;
        sys::write_u32(go, 1);
        let _ = sys::futex_wake(go, 1);
        wait_reaches(child_done, 1, "the child never ended")?;
        ensure!(
            counter("unmap_words")? == before,
            "the forked child's exit walk reached a word through a record: records were \
             inherited"
        );
        ensure_eq!(sys::read_u32(word), sys::read_u32(tid_at));
        Ok(())
    })();
    sys::write_u32(go, 2);
    let _ = sys::futex_wake(go, 1);
    let st = sys::wait_pid(holder);
    r?;
    ensure!(exited_ok(st), "holder status {:#x}", st);
    ensure!(
        sys::read_u32(word) == OWNER_DIED,
        "the holder's word after its exit: {:#x}, want OWNER_DIED",
        sys::read_u32(word)
    );
    Ok(())
}

/// A holder unmaps the memory of a lock it holds, then unlocks it through another mapping of
/// the same memfd (it takes the entry off its list and releases the word), and unmaps other
/// shared memory: nothing points into the first any more, so its record goes
/// (`unmap_records` back where it was while the holder lives). Its exit leaves the word alone.
pub fn unlock_other_mapping(_: &Ctx) -> R {
    let (fd, mem) = map_memfd(PAGE)?;
    let alias = sys::mmap(0, PAGE, RW, libc::MAP_SHARED, fd).map_err(|e| e.to_string())?;
    let (_fd2, other) = map_memfd(PAGE)?;
    let head = sys::private_anon(PAGE);
    let sync = Shared::new(PAGE);
    let (step, go) = (sync.at(0), sync.at(4));
    let base = counter("unmap_records")?;
    let holder = sys::fork_with(|| {
        let tid = sys::gettid();
        let entry = mem + 0x40;
        link_one(head, entry);
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 1;
        }
        sys::write_u32(mem + 0x20, tid);
        if sys::munmap(mem, PAGE).is_err() {
            return 2;
        }
        sys::write_u32(step, 1);
        while sys::read_u32(go) < 1 {
            let _ = sys::futex_wait(go, 0, Duration::from_millis(100));
        }
        // Unlock through the alias: off the list, word released.
        sys::write_usize(head, head);
        sys::write_u32(alias + 0x20, 0);
        if sys::munmap(other, PAGE).is_err() {
            return 3;
        }
        sys::write_u32(step, 2);
        while sys::read_u32(go) < 2 {
            let _ = sys::futex_wait(go, 1, Duration::from_millis(100));
        }
        0
    });
    let wait_step = |n: u32| -> R {
        wait_reaches(step, n, &format!("the holder stopped at step {}", n))?;
        Ok(())
    };
    let r = (|| -> R {
        wait_step(1)?;
        let held = counter("unmap_records")?;
        ensure!(
            held > base,
            "unmap_records {} with the lock held in the unmapped memfd (was {}): no record kept",
            held,
            base
        );
        sys::write_u32(go, 1);
        let _ = sys::futex_wake(go, 1);
        wait_step(2)?;
        let after = counter("unmap_records")?;
        ensure!(
            after == base,
            "unmap_records {} after the unlock and another unmap (was {}): the record outlived \
             what pointed into it",
            after,
            base
        );
        Ok(())
    })();
    sys::write_u32(go, 2);
    let _ = sys::futex_wake(go, 1);
    let st = sys::wait_pid(holder);
    r?;
    ensure!(exited_ok(st), "holder status {:#x}", st);
    ensure_eq!(sys::read_u32(alias + 0x20), 0);
    Ok(())
}

/// A PI robust mutex (glibc) in a memfd: its holder unmaps the memfd and exits while holding
/// it. With a waiter blocked in `FUTEX_LOCK_PI`, the PI state hands the lock over and marks the
/// owner's death itself (`exit_pi_state_list()`, then the new owner's fixup): `EOWNERDEAD`
/// with either walker. Without one, only the walk can mark the word: the module's does,
/// through the memfd, and the next locker gets `EOWNERDEAD`; the built-in walk leaves the dead
/// owner's TID.
pub fn pi(ctx: &Ctx) -> R {
    for waiter in [true, false] {
        let UnmappingHolder {
            mem,
            m,
            go,
            holder,
            tid,
            _sync,
        } = UnmappingHolder::start(true)?;
        let lock_recover = || match m.timedlock(LIMIT) {
            r if r == libc::EOWNERDEAD => (r, m.consistent(), m.unlock()),
            r => (r, 0, m.unlock()),
        };
        let got = if waiter {
            std::thread::scope(|s| {
                let w = s.spawn(lock_recover);
                std::thread::sleep(Duration::from_millis(200));
                sys::write_u32(go, 1);
                let _ = sys::futex_wake(go, 1);
                let st = sys::wait_pid(holder);
                (w.join().unwrap(), st)
            })
        } else {
            sys::write_u32(go, 1);
            let _ = sys::futex_wake(go, 1);
            let st = sys::wait_pid(holder);
            let word = sys::read_u32(mem);
            let want = if rust(ctx) { OWNER_DIED } else { tid };
            ensure!(
                word == want,
                "PI, no waiter: the word after the holder's death is {:#x}, want {:#x}",
                word,
                want
            );
            if !rust(ctx) {
                // The built-in walk's failure: the next locker is not told. Not waited for.
                ensure!(exited_ok(st), "holder status {:#x}", st);
                continue;
            }
            (lock_recover(), st)
        };
        let ((r, consistent, unlock), st) = got;
        ensure!(exited_ok(st), "holder status {:#x}", st);
        ensure!(
            r == libc::EOWNERDEAD && (consistent, unlock) == (0, 0),
            "PI, waiter {}: the locker got {} ({}), consistent {}, unlock {}; want EOWNERDEAD",
            waiter,
            r,
            std::io::Error::from_raw_os_error(r),
            consistent,
            unlock
        );
    }
    Ok(())
}

/// Where the lock memory comes from, for [`kinds_waiter`].
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Pages 1 to 3 of a four-page memfd, the lock on the third of them.
    MemfdOffset,
    /// A SysV shared memory segment, detached with `shmdt()`.
    SysV,
    /// `MAP_SHARED | MAP_ANONYMOUS`, inherited by the holder.
    SharedAnon,
}

/// The holder's mapping of the lock memory and the test's, with the lock's entry in the first
/// and its word in the second, for `kind`; and how the holder unmaps its mapping.
struct Lockmem {
    /// The holder's mapping (inherited), what it unmaps.
    start: usize,
    len: usize,
    /// The entry, in the holder's mapping.
    entry: usize,
    /// The word, in the test's own mapping (the same memory).
    seen: usize,
    shm: Option<i32>,
}

fn lockmem(kind: Kind) -> Result<Lockmem, String> {
    let w = |entry: usize| (entry as isize + OFFSET) as usize;
    match kind {
        Kind::MemfdOffset => {
            let fd = crate::cleanup::memfd(4 * PAGE);
            let all =
                sys::mmap(0, 4 * PAGE, RW, libc::MAP_SHARED, fd).map_err(|e| e.to_string())?;
            let part = sys::mmap_offset(0, 3 * PAGE, RW, libc::MAP_SHARED, fd, PAGE)
                .map_err(|e| e.to_string())?;
            let entry = part + 2 * PAGE + 0x40;
            Ok(Lockmem {
                start: part,
                len: 3 * PAGE,
                entry,
                seen: w(all + 3 * PAGE + 0x40),
                shm: None,
            })
        }
        Kind::SysV => {
            // SAFETY: plain System V IPC calls.
            let (id, p) = unsafe {
                let id = libc::shmget(libc::IPC_PRIVATE, 2 * PAGE, libc::IPC_CREAT | 0o600);
                ensure!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
                let p = libc::shmat(id, std::ptr::null(), 0);
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
                (id, p)
            };
            ensure!(
                p as isize != -1,
                "shmat: {}",
                std::io::Error::last_os_error()
            );
            let p = p as usize;
            let entry = p + PAGE + 0x40;
            Ok(Lockmem {
                start: p,
                len: 2 * PAGE,
                entry,
                seen: w(entry),
                shm: Some(id),
            })
        }
        Kind::SharedAnon => {
            let p = sys::mmap(0, 2 * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1)
                .map_err(|e| e.to_string())?;
            let entry = p + PAGE + 0x40;
            Ok(Lockmem {
                start: p,
                len: 2 * PAGE,
                entry,
                seen: w(entry),
                shm: None,
            })
        }
    }
}

/// Every form of shmem, at a file offset and page other than the first: the holder owns a
/// lock (`FUTEX_WAITERS` set) whose waiter, in this process, sleeps on its own mapping; the
/// holder unmaps its mapping (`munmap()`, `shmdt()`) and exits. With the module the word is
/// marked and the waiter woken, by the word's shared key computed from the file; with the
/// built-in walker neither.
pub fn kinds_waiter(ctx: &Ctx) -> R {
    for kind in [Kind::MemfdOffset, Kind::SysV, Kind::SharedAnon] {
        let m = lockmem(kind)?;
        let head = sys::private_anon(PAGE);
        let sync = Shared::new(PAGE);
        let holder = sys::fork_with(|| {
            let tid = sys::gettid();
            link_one(head, m.entry);
            if sys::set_robust_list(head, HEAD_LEN).is_err() {
                return 1;
            }
            sys::write_u32((m.entry as isize + OFFSET) as usize, tid | WAITERS);
            sys::write_u32(sync.at(0), tid);
            while sys::read_u32(sync.at(4)) == 0 {
                let _ = sys::futex_wait(sync.at(4), 0, Duration::from_millis(100));
            }
            // SAFETY: detaches or unmaps this process's own mapping of the lock memory.
            let r = unsafe {
                match m.shm {
                    Some(_) => libc::shmdt(m.start as *const _),
                    None => libc::munmap(m.start as *mut _, m.len),
                }
            };
            if r != 0 {
                return 2;
            }
            0
        });
        wait_reaches(sync.at(0), 1, &format!("{:?}: holder not ready", kind))?;
        let tid = sys::read_u32(sync.at(0));
        let waiters = crate::list::Waiters::start(m.seen, tid | WAITERS, 1)?;
        sys::write_u32(sync.at(4), 1);
        let _ = sys::futex_wake(sync.at(4), 1);
        let st = sys::wait_pid(holder);
        ensure!(exited_ok(st), "{:?}: holder status {:#x}", kind, st);
        // The walk is done when the holder is reaped; give a wakeup time to land.
        std::thread::sleep(Duration::from_millis(100));
        let word = sys::read_u32(m.seen);
        let woken = waiters.woken_before()?;
        let want = if rust(ctx) {
            (OWNER_DIED | WAITERS, 1)
        } else {
            (tid | WAITERS, 0)
        };
        ensure!(
            (word, woken) == want,
            "{:?}: word {:#x}, {} waiter(s) woken; want {:#x}, {}",
            kind,
            word,
            woken,
            want.0,
            want.1
        );
    }
    Ok(())
}

/// A memfd the holder unmapped, then sealed against writes (`F_SEAL_WRITE`, allowed once no
/// writable mapping is left), before dying with a lock in it: the module's walk must not write
/// the sealed memory (the holder could not have, through any mapping). A lock in another,
/// unsealed memfd it unmapped too comes first on its list: that one is marked (the records
/// are in use).
pub fn sealed_not_written(_: &Ctx) -> R {
    // SAFETY: plain system calls.
    let fd = unsafe { libc::memfd_create(c"robust-sealed".as_ptr(), libc::MFD_ALLOW_SEALING) };
    ensure!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    ensure!(
        unsafe { libc::ftruncate(fd, PAGE as i64) } == 0,
        "ftruncate"
    );
    let (_open_fd, open) = map_memfd(PAGE)?;
    let sync = Shared::new(PAGE);
    let head = sys::private_anon(PAGE);
    let holder = sys::fork_with(|| {
        let tid = sys::gettid();
        let Ok(mem) = sys::mmap(0, PAGE, RW, libc::MAP_SHARED, fd) else {
            return 1;
        };
        // head -> the unsealed memfd's entry -> the sealed one's -> head
        link_one(head, open + 0x40);
        sys::write_usize(open + 0x40, mem + 0x40);
        sys::write_usize(mem + 0x40, head);
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 2;
        }
        sys::write_u32(open + 0x20, tid);
        sys::write_u32(mem + 0x20, tid);
        sys::write_u32(sync.at(0), tid);
        if sys::munmap(mem, PAGE).is_err() || sys::munmap(open, PAGE).is_err() {
            return 3;
        }
        // SAFETY: seals our memfd.
        if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) } != 0 {
            return 4;
        }
        0
    });
    let st = sys::wait_pid(holder);
    ensure!(exited_ok(st), "holder status {:#x}", st);
    let seen =
        sys::mmap(0, PAGE, libc::PROT_READ, libc::MAP_SHARED, fd).map_err(|e| e.to_string())?;
    let tid = sys::read_u32(sync.at(0));
    ensure!(
        sys::read_u32(open + 0x20) == OWNER_DIED,
        "the unsealed memfd's word is {:#x}, want OWNER_DIED: the records were not used",
        sys::read_u32(open + 0x20)
    );
    ensure!(
        sys::read_u32(seen + 0x20) == tid,
        "the sealed memfd's word is {:#x}, want {:#x}: the walk wrote sealed memory",
        sys::read_u32(seen + 0x20),
        tid
    );
    Ok(())
}

/// A process whose list points into more unmapped memfds than an mm may keep records of
/// ([`MAX_RECORDS`](crate) 64), one of its entries into a `PROT_NONE` page (which makes every
/// prune undecided: everything is kept): the records stay capped, the excess is counted in
/// `unmap_lost`, and they go with the process.
pub fn records_capped(_: &Ctx) -> R {
    const MEMFDS: usize = 80;
    const CAP: u64 = 64;
    let head = sys::private_anon(PAGE);
    let hostile = sys::mmap(
        0,
        PAGE,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    )
    .map_err(|e| e.to_string())?;
    let sync = Shared::new(PAGE);
    let base = (counter("unmap_records")?, counter("unmap_lost")?);
    let holder = sys::fork_with(|| {
        // The list: head -> the PROT_NONE page's entry (the walk stops there, undecided).
        sys::write_usize(head, hostile + 0x40);
        sys::write_usize(head + 8, OFFSET as usize);
        sys::write_usize(head + 16, 0);
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 1;
        }
        // Each memfd at its own address (records that overlap replace each other).
        if let Err(rc) = unmap_memfds_apart(MEMFDS) {
            return rc;
        }
        sys::write_u32(sync.at(0), 1);
        while sys::read_u32(sync.at(4)) == 0 {
            let _ = sys::futex_wait(sync.at(4), 0, Duration::from_millis(100));
        }
        0
    });
    let r = (|| -> R {
        wait_reaches(sync.at(0), 1, "holder not done")?;
        let now = (counter("unmap_records")?, counter("unmap_lost")?);
        ensure!(
            now.0 > base.0 && now.0 <= base.0 + CAP,
            "unmap_records {} (was {}): want more, but at most {} more",
            now.0,
            base.0,
            CAP
        );
        ensure!(
            now.1 >= base.1 + (MEMFDS as u64 - CAP),
            "unmap_lost {} (was {}): the records past the cap were not counted",
            now.1,
            base.1
        );
        Ok(())
    })();
    sys::write_u32(sync.at(4), 1);
    let _ = sys::futex_wake(sync.at(4), 1);
    let st = sys::wait_pid(holder);
    r?;
    ensure!(exited_ok(st), "holder status {:#x}", st);
    ensure_eq!(counter("unmap_records")?, base.0);
    Ok(())
}

/// A real program: LMDB (Debian's liblmdb0), whose lock file on tmpfs holds its robust writer
/// mutex. A writer closes the environment inside its write transaction, which unmaps the lock
/// file with the mutex held, and is killed (`preload/tests/lmdb.c`, `unmapped`). With the
/// module the next writer, in another process, recovers through LMDB's own API, and the dead
/// writer's uncommitted data is not there; with the built-in walker it waits until the
/// program's alarm.
pub fn lmdb(ctx: &Ctx) -> R {
    let (dir, seconds) = if rust(ctx) {
        ("/tmp/lmdb-unmapped-rust", LIMIT.as_secs())
    } else {
        ("/tmp/lmdb-unmapped-c", 3)
    };
    let before = if rust(ctx) {
        Some((counter("unmap_recorded")?, counter("unmap_words")?))
    } else {
        None
    };
    let r = crate::preload::run("lmdb", &[dir, "unmapped", &seconds.to_string()], false, &[])?;
    lmdb_behaved(&r, rust(ctx))?;
    if let Some((recorded, words)) = before {
        // The lock file's unmap was recorded and the dead writer's word marked through it.
        ensure!(
            counter("unmap_recorded")? > recorded,
            "no record of the lock file"
        );
        ensure!(
            counter("unmap_words")? > words,
            "no futex word handled through a record"
        );
    }
    Ok(())
}

/// Whether `preload/tests/lmdb.c unmapped` did what the walker should make it do: with the
/// module's walker, the next writer recovered and the data is as committed; with the built-in
/// one, the next writer still waited when the alarm came (exit 3).
fn lmdb_behaved(r: &crate::preload::Run, module: bool) -> R {
    ensure!(
        r.stdout.contains("holder unmapped the lock file"),
        "lmdb did not get to the unmapped holder"
    );
    if module {
        ensure!(r.ok, "lmdb failed");
        for want in [
            "  the next writer recovered",
            "  before-unmapped = parent",
            "  unmapped-writer: not found",
            "  after-unmapped = parent",
        ] {
            ensure!(
                r.stdout.lines().any(|l| l == want),
                "lmdb did not print {:?}",
                want
            );
        }
    } else {
        ensure!(
            r.code == Some(3) && r.stdout.contains("the writer mutex is still held"),
            "built-in walker: the next writer should wait (the walk stops at the unmapped \
             entry); exit {:?}",
            r.code
        );
    }
    Ok(())
}

/// `robust-harness unmap-demo LABEL [with-module]`: tells the write-up's story (a process locks
/// a robust mutex in shared memory, unmaps that memory, dies) with a waiter in another
/// process, then LMDB's version of it. With the built-in walker the waiter is still waiting
/// when the demo gives up on it (expected: nothing marked the mutex); with the module it gets
/// `EOWNERDEAD`. Fails if the walker does not behave as it should.
pub fn demo(label: &str, module: bool) -> R {
    let say = |s: String| println!("[unmap/{}] {}", label, s);
    let UnmappingHolder {
        mem,
        m,
        go,
        holder,
        _sync,
        ..
    } = UnmappingHolder::start(false)?;
    say(format!(
        "process {} locked a robust mutex in a memfd (futex word {:#010x})",
        holder,
        sys::read_u32(mem)
    ));
    let wait = if module {
        LIMIT
    } else {
        Duration::from_secs(5)
    };
    // When the holder was told to go: the wait is measured from there.
    let start = std::sync::OnceLock::new();
    let (r, waited) = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let r = m.timedlock(wait);
            let waited = start
                .get()
                .map(std::time::Instant::elapsed)
                .unwrap_or_default();
            if r == libc::EOWNERDEAD {
                let _ = (m.consistent(), m.unlock());
            }
            (r, waited)
        });
        std::thread::sleep(Duration::from_millis(200));
        say(format!(
            "process {} waits for it; process {} unmaps the memfd, still holding it, and exits",
            sys::getpid(),
            holder
        ));
        let _ = start.set(std::time::Instant::now());
        sys::write_u32(go, 1);
        let _ = sys::futex_wake(go, 1);
        waiter.join().unwrap()
    });
    let st = sys::wait_pid(holder);
    ensure!(exited_ok(st), "holder status {:#x}", st);
    if r == libc::EOWNERDEAD {
        say(format!(
            "the exit walk reached the lock through the memfd: pthread_mutex_lock() = \
             EOWNERDEAD after {} ms",
            waited.as_millis()
        ));
    } else {
        say(format!(
            "pthread_mutex_lock() = {} after {} ms: the exit walk faulted on the unmapped \
             entry and stopped; nobody will ever mark this mutex",
            if r == libc::ETIMEDOUT {
                "ETIMEDOUT (given up)".to_string()
            } else {
                crate::glibc::errname(r)
            },
            waited.as_millis()
        ));
    }
    let want = if module {
        libc::EOWNERDEAD
    } else {
        libc::ETIMEDOUT
    };
    ensure!(r == want, "the waiter got {}", crate::glibc::errname(r));
    say(
        "the same with LMDB: a writer closes its environment inside a write transaction \
         (unmapping lock.mdb, writer mutex held) and is killed; another process writes next"
            .to_string(),
    );
    let dir = format!("/tmp/lmdb-demo-{}", label);
    let secs = wait.as_secs().to_string();
    let run = crate::preload::run("lmdb", &[&dir, "unmapped", &secs], false, &[])?;
    for line in run.stdout.lines() {
        say(format!("lmdb: {}", line.trim()));
    }
    lmdb_behaved(&run, module)
}

/// A process keeps running with a lock held in memory it unmapped (its list goes on through
/// that record), maps and unmaps more shared memory than the cap on records (none of it
/// locked), then unmaps a second held lock and dies: both locks are marked. The pruning after
/// each of those unmaps reads the list through the first record and drops the others; had it
/// given up at the recorded entry, the records would have reached the cap and the second lock
/// would have gone unrecorded.
pub fn prune_past_held(_: &Ctx) -> R {
    const UNRELATED: usize = 80;
    let (_fa, a) = map_memfd(PAGE)?;
    let (_fb, b) = map_memfd(PAGE)?;
    let sync = Shared::new(PAGE);
    let base = counter("unmap_lost")?;
    let holder = sys::fork_with(|| {
        let head = sys::private_anon(PAGE);
        let tid = sys::gettid();
        sys::write_u32(sync.at(0), tid);
        // head -> A's entry -> head, A's word owned.
        link_one(head, a + 0x40);
        sys::write_u32(a + 0x20, tid);
        if sys::set_robust_list(head, HEAD_LEN).is_err() {
            return 1;
        }
        if sys::munmap(a, PAGE).is_err() {
            return 2;
        }
        // Each at its own address: a mapping at A's address would replace A's record (the
        // later one wins), which is not what is tested here.
        if let Err(rc) = unmap_memfds_apart(UNRELATED) {
            return rc;
        }
        // head -> B's entry -> A's entry (unmapped) -> head, B's word owned.
        sys::write_usize(b + 0x40, a + 0x40);
        sys::write_u32(b + 0x20, tid);
        sys::write_usize(head, b + 0x40);
        if sys::munmap(b, PAGE).is_err() {
            return 5;
        }
        0
    });
    let st = sys::wait_pid(holder);
    ensure!(exited_ok(st), "holder status {:#x}", st);
    ensure!(sys::read_u32(sync.at(0)) != 0, "the holder's TID");
    for (name, word) in [("A", a + 0x20), ("B", b + 0x20)] {
        ensure!(
            sys::read_u32(word) == OWNER_DIED,
            "lock {}: word {:#x}, want {:#x} (unmap_lost +{})",
            name,
            sys::read_u32(word),
            OWNER_DIED,
            counter("unmap_lost")? - base
        );
    }
    ensure_eq!(counter("unmap_lost")?, base);
    Ok(())
}
