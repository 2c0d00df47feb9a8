//! cleanup_robust_list(2) cases (with the module) and the race reproducers.

use crate::holder::{clone_vm_holder, fork_holder, pending_for, Control};
use crate::sys::{self, *};
use crate::Ctx;
use std::ffi::CString;

type R = Result<(), String>;

fn errno(r: std::io::Result<i64>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn cleanup(addr: usize, len: usize) -> Result<i64, String> {
    cleanup_robust_list(addr, len, 0).map_err(|e| format!("cleanup_robust_list: {}", e))
}

/// Joins holder threads (released already).
fn join_holders<'a>(threads: impl IntoIterator<Item = std::thread::ScopedJoinHandle<'a, ()>>) -> R {
    for t in threads {
        t.join().map_err(|_| "holder thread panicked".to_string())?;
    }
    Ok(())
}

/// Reaps holder processes (released already); each must have exited with status 0.
fn reap_holders(pids: Vec<libc::pid_t>) -> R {
    for pid in pids {
        ensure!(exited_ok(sys::wait_pid(pid)), "holder process failed");
    }
    Ok(())
}

/// Maps `len` bytes of `fd` with `flags`, at a kernel-chosen address.
pub fn map_fd(fd: i32, len: usize, flags: i32) -> usize {
    // SAFETY: a fresh mapping of an fd we own.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    assert!(
        p != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    p as usize
}

/// A new memfd of `len` bytes.
pub fn memfd(len: usize) -> i32 {
    // SAFETY: plain system calls.
    unsafe {
        let fd = libc::memfd_create(c"robust".as_ptr(), 0);
        assert!(fd >= 0 && libc::ftruncate(fd, len as i64) == 0);
        fd
    }
}

fn tmpfs_file(len: usize) -> i32 {
    let path = CString::new(format!("/tmp/robust-{}", sys::getpid())).unwrap();
    // SAFETY: plain system calls.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        );
        assert!(fd >= 0 && libc::ftruncate(fd, len as i64) == 0);
        libc::unlink(path.as_ptr());
        fd
    }
}

/// One holder process whose word is in memory it maps itself from `fd` (so at another address
/// than the test's); the test cleans through its own mapping. Expects `expect` slots cleared.
fn cross_process_fd(fd: i32, flags: i32, expect: i64) -> R {
    let ctl = Control::new();
    let mine = map_fd(fd, 4096, flags);
    let pid = fork_holder(&ctl, 0, false, || {
        let _spacer = map_fd(fd, 4096, flags); // make the next address differ
        map_fd(fd, 4096, flags) + 0x100
    });
    let r = (|| -> R {
        ctl.wait_ready(0)?;
        let theirs = sys::read_usize(ctl.slot(0));
        ensure!(
            pending_for(mine + 0x100) != theirs,
            "mapped at the same address"
        );
        ensure_eq!(cleanup(mine + 0x100, 4)?, expect);
        let slot = sys::read_usize(ctl.slot(0));
        ensure!(
            (slot == 0) == (expect == 1),
            "slot after cleanup: {:#x}",
            slot
        );
        Ok(())
    })();
    ctl.release();
    ensure!(exited_ok(sys::wait_pid(pid)), "holder failed");
    r
}

pub fn memfd_other_address(_: &Ctx) -> R {
    cross_process_fd(memfd(4096), libc::MAP_SHARED, 1)
}

pub fn tmpfs_file_other_address(_: &Ctx) -> R {
    cross_process_fd(tmpfs_file(4096), libc::MAP_SHARED, 1)
}

/// MAP_PRIVATE file mappings are private memory: another process's is not the same lock.
pub fn private_file_not_cleared(_: &Ctx) -> R {
    cross_process_fd(tmpfs_file(4096), libc::MAP_PRIVATE, 0)
}

pub fn shared_anon_process(_: &Ctx) -> R {
    let ctl = Control::new();
    let mem = Shared::new(4096);
    let word = mem.at(0x200);
    let pid = fork_holder(&ctl, 0, false, || word);
    let r = (|| -> R {
        ctl.wait_ready(0)?;
        ensure_eq!(cleanup(word, 4)?, 1);
        ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
        // A second call finds nothing left to clear.
        ensure_eq!(cleanup(word, 4)?, 0);
        Ok(())
    })();
    ctl.release();
    ensure!(exited_ok(sys::wait_pid(pid)), "holder failed");
    r
}

pub fn sysv_shm(_: &Ctx) -> R {
    // SAFETY: plain SysV shm calls on a private segment removed at the end.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    ensure!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    let mine = unsafe { libc::shmat(id, std::ptr::null(), 0) } as usize;
    let ctl = Control::new();
    let pid = fork_holder(&ctl, 0, false, || {
        // SAFETY: a second attach, at another address, in the child.
        unsafe { libc::shmat(id, std::ptr::null(), 0) as usize + 0x40 }
    });
    let r = (|| -> R {
        ctl.wait_ready(0)?;
        ensure_eq!(cleanup(mine + 0x40, 4)?, 1);
        ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
        Ok(())
    })();
    ctl.release();
    let st = sys::wait_pid(pid);
    // SAFETY: removes the segment.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    ensure!(exited_ok(st), "holder failed");
    r
}

/// A thread of the caller's own process, on private memory.
pub fn same_process_thread(_: &Ctx) -> R {
    let p = sys::private_anon(4096);
    let ctl = Control::new();
    ctl.prepare(0, p + 0x80, false);
    std::thread::scope(|s| {
        let t = s.spawn(|| ctl.hold(0, &[]));
        let r = (|| -> R {
            ctl.wait_ready(0)?;
            ensure_eq!(cleanup(p, 4096)?, 1);
            ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
            Ok(())
        })();
        ctl.release();
        t.join().map_err(|_| "holder panicked".to_string())?;
        r
    })
}

/// Prepares head `i` of `ctl` as an empty list with nothing pending.
fn prepare_idle(ctl: &Control, i: usize) {
    ctl.prepare(i, 0, false);
    sys::write_usize(ctl.slot(i), 0);
}

/// A holder that registered a head with nothing pending, then another one, pending on `word`:
/// the head its task has now. Registers head 1 of `ctl`, after head 0.
fn hold_second_head(ctl: &Control) {
    if sys::set_robust_list(ctl.head(0), crate::list::HEAD_LEN).is_ok() {
        ctl.hold(1, &[]);
    }
}

/// A thread, then another process, registered a second robust list head, pending on the
/// memory, after a first one with nothing pending: the call must read the head each has now
/// (the index keeps the heads of each task as it last registered them). Before (the index's
/// copy of a task's heads not refreshed when it registers another): returned 0.
pub fn reregistered_head(_: &Ctx) -> R {
    let mem = Shared::new(4096);
    let word = mem.at(0x180);
    let ctl = Control::new();
    prepare_idle(&ctl, 0);
    ctl.prepare(1, word, false);
    std::thread::scope(|s| {
        let t = s.spawn(|| hold_second_head(&ctl));
        let r = (|| -> R {
            ctl.wait_ready(1)?;
            ensure_eq!(cleanup(word, 4)?, 1);
            ensure_eq!(sys::read_usize(ctl.slot(1)), 0);
            Ok(())
        })();
        ctl.release();
        t.join().map_err(|_| "holder thread panicked".to_string())?;
        r
    })?;
    let ctl = Control::new();
    prepare_idle(&ctl, 0);
    ctl.prepare(1, word, false);
    let pid = sys::fork_with(|| {
        hold_second_head(&ctl);
        0
    });
    let r = (|| -> R {
        ctl.wait_ready(1)?;
        ensure_eq!(cleanup(word, 4)?, 1);
        ensure_eq!(sys::read_usize(ctl.slot(1)), 0);
        Ok(())
    })();
    ctl.release();
    ensure!(exited_ok(sys::wait_pid(pid)), "holder process failed");
    r
}

/// `CLEANUP_ROBUST_LIST_MM_ONLY` (the caller unmaps its view of shared memory): its own thread
/// and `CLONE_VM` sibling are cleared, not a process that keeps the memory; then without the
/// flag, that process too.
pub fn mm_only(_: &Ctx) -> R {
    let mem = Shared::new(4096);
    let ctl = Control::new();
    let word = mem.at(0x80);
    ctl.prepare(0, word, false);
    ctl.prepare(1, word, false);
    let sibling = clone_vm_holder(&ctl, 1);
    let pid = fork_holder(&ctl, 2, false, || word);
    let r = std::thread::scope(|s| -> R {
        let t = s.spawn(|| ctl.hold(0, &[]));
        let r = (|| -> R {
            for i in 0..3 {
                ctl.wait_ready(i)?;
            }
            let other = sys::read_usize(ctl.slot(2));
            ensure!(other != 0, "slot 2 not set");
            ensure_eq!(
                cleanup_robust_list(word, 4, CLEANUP_MM_ONLY).map_err(|e| e.to_string())?,
                2
            );
            ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
            ensure_eq!(sys::read_usize(ctl.slot(1)), 0);
            ensure_eq!(sys::read_usize(ctl.slot(2)), other);
            ensure_eq!(cleanup(word, 4)?, 1);
            ensure_eq!(sys::read_usize(ctl.slot(2)), 0);
            Ok(())
        })();
        ctl.release();
        t.join().map_err(|_| "holder panicked".to_string())?;
        r
    });
    ensure!(exited_ok(sys::wait_pid(sibling)), "sibling failed");
    ensure!(exited_ok(sys::wait_pid(pid)), "holder process failed");
    r
}

/// A CLONE_VM sibling (same mm, another process) on private memory.
pub fn clone_vm_sibling(_: &Ctx) -> R {
    let p = sys::private_anon(4096);
    let ctl = Control::new();
    ctl.prepare(0, p + 0x80, false);
    let pid = clone_vm_holder(&ctl, 0);
    let r = (|| -> R {
        let tid = ctl.wait_ready(0)?;
        ensure_eq!(tid as i32, pid);
        ensure_eq!(cleanup(p + 0x80, 4)?, 1);
        ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
        Ok(())
    })();
    ctl.release();
    ensure!(exited_ok(sys::wait_pid(pid)), "sibling failed");
    r
}

/// A forked copy-on-write copy of private memory is another process's memory.
pub fn cow_copy_not_cleared(_: &Ctx) -> R {
    let p = sys::private_anon(4096);
    sys::write_u32(p, 1); // populate before fork
    let ctl = Control::new();
    let pid = fork_holder(&ctl, 0, false, || p + 0x80);
    let r = (|| -> R {
        ctl.wait_ready(0)?;
        ensure_eq!(cleanup(p + 0x80, 4)?, 0);
        ensure!(sys::read_usize(ctl.slot(0)) != 0, "slot cleared");
        Ok(())
    })();
    ctl.release();
    ensure!(exited_ok(sys::wait_pid(pid)), "holder failed");
    r
}

/// Only words inside [addr, addr + len) count; the PI bit is masked.
pub fn range_and_pi_bit(_: &Ctx) -> R {
    let mem = Shared::new(4096);
    let ctl = Control::new();
    let word = mem.at(0x140);
    let pid = fork_holder(&ctl, 0, true, || word);
    let r = (|| -> R {
        ctl.wait_ready(0)?;
        ensure_eq!(cleanup(mem.at(0x100), 0x40)?, 0); // ends right before the word
        ensure_eq!(cleanup(mem.at(0x144), 4)?, 0); // right after it
        ensure_eq!(cleanup(mem.at(0x0), 0x140)?, 0);
        ensure!(
            sys::read_usize(ctl.slot(0)) != 0,
            "slot cleared by a range without the word"
        );
        ensure_eq!(cleanup(mem.at(0x100), 0x44)?, 1);
        ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
        Ok(())
    })();
    ctl.release();
    ensure!(exited_ok(sys::wait_pid(pid)), "holder failed");
    r
}

/// One range over a private mapping, a shared anonymous one and a memfd one (as `munmap()` may
/// name): each part is matched with its own identity; a private copy and a slot just outside the
/// range stay.
pub fn spans_mappings(_: &Ctx) -> R {
    let page = 4096;
    // [0] private, [1] shared anonymous, [2] memfd (shared), [3] private: four VMAs.
    let base = sys::private_anon(4 * page);
    let fd = memfd(page);
    // SAFETY: replaces pages of our own mapping.
    unsafe {
        for (pg, flags, fd) in [
            (1, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
            (2, libc::MAP_SHARED, fd),
            (
                3,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
            ),
        ] {
            let p = libc::mmap(
                (base + pg * page) as *mut _,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_FIXED,
                fd,
                0,
            );
            ensure!(
                p as usize == base + pg * page,
                "mmap: {}",
                std::io::Error::last_os_error()
            );
        }
        libc::close(fd);
    }
    let at = |pg: usize, off: usize| base + pg * page + off;
    let ctl = Control::new();
    // 0: thread, private [0]; 1, 2: processes, shared [1] and memfd [2] (inherited, same
    // memory); 3: thread, [3], outside the range; 4: process, its private copy of [0].
    let words = [
        at(0, 0x100),
        at(1, 0x100),
        at(2, 0x200),
        at(3, 0x100),
        at(0, 0x100),
    ];
    ctl.prepare(0, words[0], false);
    ctl.prepare(3, words[3], false);
    let pids: Vec<_> = [1, 2, 4]
        .iter()
        .map(|&i| fork_holder(&ctl, i, false, || words[i]))
        .collect();
    let r = std::thread::scope(|s| -> R {
        let threads = [s.spawn(|| ctl.hold(0, &[])), s.spawn(|| ctl.hold(3, &[]))];
        let r = (|| -> R {
            for i in 0..5 {
                ctl.wait_ready(i)?;
            }
            let before: Vec<usize> = (0..5).map(|i| sys::read_usize(ctl.slot(i))).collect();
            ensure!(before.iter().all(|&v| v != 0), "slots not set");
            // Across the boundaries of [2] and [3], no word: nothing to clear.
            ensure_eq!(cleanup(at(2, page - 4), 8)?, 0);
            ensure_eq!(cleanup(base, 3 * page)?, 3);
            let after: Vec<usize> = (0..5).map(|i| sys::read_usize(ctl.slot(i))).collect();
            ensure_eq!(after, vec![0, 0, 0, before[3], before[4]]);
            Ok(())
        })();
        ctl.release();
        join_holders(threads)?;
        r
    });
    reap_holders(pids)?;
    r
}

/// A range over two mappings of overlapping parts of one memfd (in either order): every mm that
/// maps the memory gets windows that overlap (equal starts), and each word in them must still
/// be found. Threads hold words in each page of the caller's range; processes, in each page of
/// their own single mapping of the memfd.
pub fn overlapping_mappings(_: &Ctx) -> R {
    let page = 4096;
    for (layout, parts) in [[(0, 2), (2, 1)], [(0, 1), (1, 2)]].iter().enumerate() {
        let fd = memfd(2 * page);
        let base = sys::private_anon(3 * page);
        for &(pg, pages) in parts {
            // SAFETY: replaces pages of our own mapping with the memfd's first pages.
            let p = unsafe {
                libc::mmap(
                    (base + pg * page) as *mut _,
                    pages * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    0,
                )
            };
            ensure!(
                p as usize == base + pg * page,
                "mmap: {}",
                std::io::Error::last_os_error()
            );
        }
        let ctl = Control::new();
        // 0..3: threads, a word in each page of the range; 3, 4: processes, a word in each page
        // of their own mapping of the memfd.
        for i in 0..3 {
            ctl.prepare(i, base + i * page + 0x100, false);
        }
        let pids: Vec<_> = [3, 4]
            .iter()
            .map(|&i| {
                fork_holder(&ctl, i, false, || {
                    map_fd(fd, 2 * page, libc::MAP_SHARED) + (i - 3) * page + 0x200
                })
            })
            .collect();
        // SAFETY: the holders have their own references.
        unsafe { libc::close(fd) };
        let r = std::thread::scope(|s| -> R {
            let threads: Vec<_> = (0..3)
                .map(|i| {
                    let ctl = &ctl;
                    s.spawn(move || ctl.hold(i, &[]))
                })
                .collect();
            let r = (|| -> R {
                for i in 0..5 {
                    ctl.wait_ready(i)?;
                }
                ensure!(
                    (0..5).all(|i| sys::read_usize(ctl.slot(i)) != 0),
                    "slots not set"
                );
                let n = cleanup(base, 3 * page)?;
                let left: Vec<usize> = (0..5)
                    .filter(|&i| sys::read_usize(ctl.slot(i)) != 0)
                    .collect();
                ensure!(
                    n == 5 && left.is_empty(),
                    "layout {}: {} cleared, slots left set: {:?}",
                    layout,
                    n,
                    left
                );
                Ok(())
            })();
            ctl.release();
            join_holders(threads)?;
            r
        });
        reap_holders(pids)?;
        // SAFETY: our own mapping, no longer used.
        ensure!(
            unsafe { libc::munmap(base as *mut _, 3 * page) } == 0,
            "munmap"
        );
        r?;
    }
    Ok(())
}

/// Many threads in several processes, one call for the whole region.
pub fn many_threads_many_processes(_: &Ctx) -> R {
    const PROCS: usize = 3;
    const THREADS: usize = 4;
    let mem = Shared::new(4096);
    let ctl = Control::new();
    let mut pids = Vec::new();
    for p in 0..PROCS {
        let ctl = &ctl;
        let mem = &mem;
        pids.push(sys::fork_with(move || {
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    let i = p * THREADS + t;
                    ctl.prepare(i, mem.at(0x40 * i), false);
                    s.spawn(move || ctl.hold(i, &[]));
                }
            });
            0
        }));
    }
    let r = (|| -> R {
        for i in 0..PROCS * THREADS {
            ctl.wait_ready(i)?;
        }
        ensure_eq!(cleanup(mem.base, 4096)?, (PROCS * THREADS) as i64);
        for i in 0..PROCS * THREADS {
            ensure_eq!(sys::read_usize(ctl.slot(i)), 0);
        }
        Ok(())
    })();
    ctl.release();
    reap_holders(pids)?;
    r
}

/// More threads than a batch of the index (64) in another process, and more than the 16 heads
/// the caller's own path copies at a time in the test's process: one call over the memory
/// their slots point into must clear every one (each batch resumes where the one before
/// stopped).
pub fn many_threads_batched(_: &Ctx) -> R {
    const REMOTE: usize = 150;
    const LOCAL: usize = 40;
    const N: usize = REMOTE + LOCAL;
    let mem = Shared::new(4096); // word i at 4 * i
    let ctl = Shared::new(4 * 4096 + 4096); // head i at 64 * i; then ready, go, failed
    let (memb, ctlb) = (mem.base, ctl.base);
    let (ready, go, failed) = (ctlb + 4 * 4096, ctlb + 4 * 4096 + 4, ctlb + 4 * 4096 + 8);
    let hold = move |i: usize| {
        let head = ctlb + 64 * i;
        sys::write_usize(head, head);
        sys::write_usize(head + 8, crate::holder::OFFSET as usize);
        sys::write_usize(head + 16, pending_for(memb + 4 * i));
        if sys::set_robust_list(head, crate::list::HEAD_LEN).is_err() {
            sys::fetch_add_u32(failed, 1);
            return;
        }
        sys::fetch_add_u32(ready, 1);
        while sys::read_u32(go) == 0 {
            let _ = sys::futex_wait(go, 0, std::time::Duration::from_secs(1));
        }
    };
    let pid = sys::fork_with(|| {
        std::thread::scope(|s| {
            for i in 0..REMOTE {
                s.spawn(move || hold(i));
            }
        });
        0
    });
    let r = std::thread::scope(|s| -> R {
        for i in REMOTE..N {
            s.spawn(move || hold(i));
        }
        let r = (|| -> R {
            for _ in 0..20000 {
                if sys::read_u32(ready) as usize + sys::read_u32(failed) as usize == N {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            ensure!(
                sys::read_u32(ready) as usize == N,
                "{} of {} threads registered, {} failed",
                sys::read_u32(ready),
                N,
                sys::read_u32(failed)
            );
            let n = cleanup(memb, 4096)?;
            let left: Vec<usize> = (0..N)
                .filter(|&i| sys::read_usize(ctlb + 64 * i + 16) != 0)
                .collect();
            ensure!(
                n == N as i64 && left.is_empty(),
                "{} of {} slots cleared; left set: {:?}",
                n,
                N,
                left
            );
            Ok(())
        })();
        sys::write_u32(go, 1);
        let _ = sys::futex_wake(go, i32::MAX);
        r
    });
    ensure!(exited_ok(sys::wait_pid(pid)), "holder process failed");
    r
}

/// A holder that already exited (a zombie, not reaped) is skipped: its exit walked its list.
pub fn exited_target_skipped(_: &Ctx) -> R {
    let mem = Shared::new(4096);
    let ctl = Control::new();
    let word = mem.at(0x100);
    let pid = fork_holder(&ctl, 0, false, || word);
    ctl.wait_ready(0)?;
    ctl.release();
    // Wait for the zombie without reaping it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out pointer.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as u32,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    ensure!(r == 0, "waitid: {}", std::io::Error::last_os_error());
    let n = cleanup(word, 4)?;
    ensure!(exited_ok(sys::wait_pid(pid)), "holder failed");
    ensure_eq!(n, 0);
    Ok(())
}

/// Bad ranges, with the implementation registered: nothing is cleared.
pub fn bad_mappings(_: &Ctx) -> R {
    let page = 4096;
    let base = sys::private_anon(4 * page);
    // [0] RW, [1] PROT_NONE, [2] read-only, [3] unmapped; then [4..5] two RW mappings.
    // SAFETY: our own mappings.
    unsafe {
        libc::mprotect((base + page) as *mut _, page, libc::PROT_NONE);
        libc::mprotect((base + 2 * page) as *mut _, page, libc::PROT_READ);
        libc::munmap((base + 3 * page) as *mut _, page);
    }
    ensure_eq!(
        errno(cleanup_robust_list(base + page, 4, 0)),
        Some(libc::EFAULT)
    );
    ensure_eq!(
        errno(cleanup_robust_list(base + 2 * page, 4, 0)),
        Some(libc::EACCES)
    );
    ensure_eq!(
        errno(cleanup_robust_list(base + 3 * page, 4, 0)),
        Some(libc::EFAULT)
    );
    ensure_eq!(errno(cleanup_robust_list(0, 4, 0)), Some(libc::EFAULT));
    // RW followed by PROT_NONE.
    ensure_eq!(
        errno(cleanup_robust_list(base + page - 4, 8, 0)),
        Some(libc::EFAULT)
    );
    // Read-only followed by a hole.
    ensure_eq!(
        errno(cleanup_robust_list(base + 3 * page - 4, 8, 0)),
        Some(libc::EFAULT)
    );
    ensure_eq!(
        cleanup_robust_list(base, page, 0).map_err(|e| e.to_string())?,
        0
    );
    Ok(())
}

/// The race, deterministically: a thread dies between releasing a robust futex and clearing
/// `list_op_pending`, after the memory was destroyed and reused with contents that look owned
/// by it (its TID). `reuse` destroys and reuses the memory (after calling cleanup_robust_list if
/// `clean`). Returns how many of `rounds` rounds found the reused memory changed, and the last
/// change seen (the value written, and what the kernel made of it).
fn race_rounds(
    rounds: usize,
    clean: bool,
    setup: impl Fn() -> (usize, Box<dyn Fn(u32)>),
) -> Result<(usize, Option<(u32, u32)>), String> {
    let mut corrupted = 0;
    let mut example = None;
    for _ in 0..rounds {
        let (word, reuse) = setup();
        let ctl = Control::new();
        ctl.prepare(0, word, false);
        let corrupt = std::thread::scope(|s| -> Result<bool, String> {
            // The holder "unlocks" (the word is 0, pending still set) and dies when told.
            let t = s.spawn(|| ctl.hold(0, &[]));
            let tid = ctl.wait_ready(0)?;
            if clean {
                ensure_eq!(cleanup(word, 4)?, 1);
            }
            reuse(tid);
            ctl.release();
            t.join().map_err(|_| "holder panicked".to_string())?;
            let now = sys::read_u32(word);
            if now != tid {
                example = Some((tid, now));
            }
            Ok(now != tid)
        })?;
        corrupted += corrupt as usize;
    }
    Ok((corrupted, example))
}

const ROUNDS: usize = 20;

/// Destroy by munmap, reuse by mmap at the same address (robust_bug.c).
pub(crate) fn munmap_setup() -> (usize, Box<dyn Fn(u32)>) {
    let mem = Shared::new(4096);
    let base = mem.base;
    std::mem::forget(mem); // unmapped by the reuse, and the new mapping leaks per round
    let reuse = Box::new(move |tid: u32| {
        // SAFETY: replaces our own mapping with a new one at the same address.
        unsafe {
            libc::munmap(base as *mut _, 4096);
            let p = libc::mmap(
                base as *mut _,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
            assert_eq!(p as usize, base);
        }
        for off in (0..4096).step_by(4) {
            sys::write_u32(base + off, tid);
        }
    });
    (base + 0x100, reuse)
}

/// Destroy inside a long-lived shared mapping; another process reuses the chunk.
pub(crate) fn shared_setup() -> (usize, Box<dyn Fn(u32)>) {
    let mem = Shared::new(4096);
    let base = mem.base;
    std::mem::forget(mem);
    let reuse = Box::new(move |tid: u32| {
        let pid = sys::fork_with(|| {
            for off in (0x100..0x200).step_by(4) {
                sys::write_u32(base + off, tid);
            }
            0
        });
        sys::wait_pid(pid);
    });
    (base + 0x100, reuse)
}

pub fn race_munmap_without_cleanup(_: &Ctx) -> R {
    ensure_eq!(race_rounds(ROUNDS, false, munmap_setup)?.0, ROUNDS);
    Ok(())
}

pub fn race_munmap_with_cleanup(_: &Ctx) -> R {
    ensure_eq!(race_rounds(ROUNDS, true, munmap_setup)?.0, 0);
    Ok(())
}

pub fn race_shared_without_cleanup(_: &Ctx) -> R {
    ensure_eq!(race_rounds(ROUNDS, false, shared_setup)?.0, ROUNDS);
    Ok(())
}

pub fn race_shared_with_cleanup(_: &Ctx) -> R {
    ensure_eq!(race_rounds(ROUNDS, true, shared_setup)?.0, 0);
    Ok(())
}

/// `robust-harness race LABEL`: the reproducer's outcome, for `make demo`.
pub fn demo(label: &str, clean: bool) -> R {
    for (name, setup) in [
        (
            "munmap + mmap at the same address",
            munmap_setup as fn() -> _,
        ),
        ("reuse inside a long-lived shared mapping", shared_setup),
    ] {
        let (n, example) = race_rounds(ROUNDS, clean, setup)?;
        let example = example
            .map(|(was, now)| format!(" (e.g. {:#010x} became {:#010x})", was, now))
            .unwrap_or_default();
        println!(
            "[race/{}] {}: {} cleanup_robust_list(): reused memory corrupted in {}/{} rounds{}",
            label,
            name,
            if clean { "with" } else { "without" },
            n,
            ROUNDS,
            example
        );
    }
    Ok(())
}

pub fn compat32_cleanup(ctx: &Ctx) -> R {
    crate::cases::run_compat32(ctx, &["cleanup"])
}

/// The permission model: holders running as another user, and in another PID namespace, that map
/// the same memory are cleaned too (they share the lock memory).
pub fn other_user_and_pid_namespace(_: &Ctx) -> R {
    let mem = Shared::new(4096);
    let ctl = Control::new();
    let (w0, w1) = (mem.at(0x100), mem.at(0x200));
    let other_user = fork_holder(&ctl, 0, false, || {
        // SAFETY: drops privileges in the child only.
        unsafe {
            libc::setgid(65534);
            libc::setuid(65534);
        }
        w0
    });
    let ctl_ref = &ctl;
    let other_ns = sys::fork_with(move || {
        // SAFETY: the next child of this process starts a new PID namespace, as its PID 1.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 2;
        }
        let inner = fork_holder(ctl_ref, 1, false, || w1);
        if exited_ok(sys::wait_pid(inner)) {
            0
        } else {
            1
        }
    });
    let r = (|| -> R {
        ctl.wait_ready(0)?;
        // Its TID in its own namespace.
        ensure_eq!(ctl.wait_ready(1)?, 1);
        ensure_eq!(cleanup(mem.base, 4096)?, 2);
        ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
        ensure_eq!(sys::read_usize(ctl.slot(1)), 0);
        Ok(())
    })();
    ctl.release();
    ensure!(
        exited_ok(sys::wait_pid(other_user)),
        "holder of another user failed"
    );
    ensure!(
        exited_ok(sys::wait_pid(other_ns)),
        "holder in another PID namespace failed"
    );
    r
}
