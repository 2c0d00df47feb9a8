//! The module's index of tasks with a robust list, where cleanup_robust_list(2) finds the tasks
//! to look at (debugfs `index_tasks`): it must follow registration, unregistration, exit and
//! exec, include tasks that registered before the module was loaded, and keep no dead task.

use crate::cases::counter;
use crate::holder::{pending_for, Control};
use crate::list::HEAD_LEN;
use crate::sys::{self, *};
use crate::Ctx;
use std::sync::Barrier;

type R = Result<(), String>;

/// Joins `threads` explicitly: `pthread_join()` returns after the thread's CLONE_CHILD_CLEARTID
/// wakeup, which its exit sends after the robust list walk. (A scope by itself only waits until
/// the closures returned, when the threads may not have exited yet.)
fn join_all<T>(threads: Vec<std::thread::ScopedJoinHandle<'_, T>>) -> R {
    for t in threads {
        t.join().map_err(|_| "a thread panicked".to_string())?;
    }
    Ok(())
}

fn indexed() -> Result<i64, String> {
    counter("index_tasks").map(|n| n as i64)
}

fn cleanup(addr: usize, len: usize) -> Result<i64, String> {
    cleanup_robust_list(addr, len, 0).map_err(|e| format!("cleanup_robust_list: {}", e))
}

/// Threads enter the index when they register a head (glibc registers one for every thread),
/// leave it when they register none, come back with a new one, and leave it when they exit.
pub fn follows_threads(_: &Ctx) -> R {
    const N: usize = 8;
    const PHASES: usize = 3;
    let base = indexed()?;
    // In each phase the threads act, then wait (`done`) while the count is read, then go on.
    let done: Vec<Barrier> = (0..PHASES).map(|_| Barrier::new(N + 1)).collect();
    let go: Vec<Barrier> = (0..PHASES).map(|_| Barrier::new(N + 1)).collect();
    let heads = Shared::new(4096);
    let counts = std::thread::scope(|s| -> Result<Vec<i64>, String> {
        let mut threads = Vec::new();
        for i in 0..N {
            let (done, go, heads) = (&done, &go, &heads);
            threads.push(s.spawn(move || {
                // Phase 0: started; glibc registered a head.
                done[0].wait();
                go[0].wait();
                // Phase 1: half of them unregister (a NULL head, as set_robust_list(2) allows).
                if i % 2 == 0 {
                    set_robust_list(0, HEAD_LEN).expect("set_robust_list(NULL)");
                }
                done[1].wait();
                go[1].wait();
                // Phase 2: every thread registers a head of its own (an empty list).
                let h = heads.at(64 * i);
                sys::write_usize(h, h);
                set_robust_list(h, HEAD_LEN).expect("set_robust_list");
                done[2].wait();
                go[2].wait();
            }));
        }
        let mut counts = Vec::new();
        for p in 0..PHASES {
            done[p].wait();
            counts.push(indexed()? - base);
            go[p].wait();
        }
        join_all(threads)?;
        Ok(counts)
    })?;
    let after = indexed()? - base;
    ensure_eq!(counts, vec![N as i64, N as i64 / 2, N as i64]);
    ensure_eq!(after, 0);
    Ok(())
}

/// Processes too: a forked child is indexed (glibc registers its head again after fork) and
/// leaves the index when it exits, whether it exits or is killed.
pub fn follows_processes(_: &Ctx) -> R {
    let base = indexed()?;
    let ctl = Control::new();
    let mem = Shared::new(4096);
    let mut pids = Vec::new();
    for i in 0..4 {
        pids.push(crate::holder::fork_holder(&ctl, i, false, || {
            mem.at(0x40 * i)
        }));
    }
    for i in 0..4 {
        ctl.wait_ready(i)?;
    }
    let during = indexed()? - base;
    // SAFETY: kills our own children.
    unsafe {
        libc::kill(pids[0], libc::SIGKILL);
        libc::kill(pids[1], libc::SIGKILL);
    }
    ctl.release();
    for pid in pids {
        sys::wait_pid(pid);
    }
    ensure_eq!(during, 4);
    ensure_eq!(indexed()? - base, 0);
    Ok(())
}

/// `robust-harness hold-memfd FD`: the program a holder execs. It maps the inherited memfd, whose
/// first page is a `Control` page, and holds head 0 with a pending entry for the word at 0x1100
/// of the memfd (in its own mapping, at whatever address).
pub fn hold_memfd(fd: i32) -> i32 {
    // The mapping lives until the process exits.
    let p = crate::cleanup::map_fd(fd, 8192, libc::MAP_SHARED);
    let ctl = Control {
        mem: Shared { base: p, len: 4096 },
    };
    ctl.prepare(0, p + 0x1100, false);
    ctl.hold(0, &[]);
    std::mem::forget(ctl);
    0
}

/// A holder that registered a head, then exec'd a program that registered another: the index
/// keeps only the new one (filed under the new mm), and the call finds it there.
pub fn follows_exec(_: &Ctx) -> R {
    let base = indexed()?;
    // SAFETY: plain system calls; the fd is inherited across exec (no MFD_CLOEXEC).
    let fd = unsafe { libc::memfd_create(c"robust-exec".as_ptr(), 0) };
    ensure!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    ensure!(unsafe { libc::ftruncate(fd, 8192) } == 0, "ftruncate");
    let p = crate::cleanup::map_fd(fd, 8192, libc::MAP_SHARED);
    let ctl = Control {
        mem: Shared { base: p, len: 4096 },
    };
    sys::write_u32(p + 2048, 0);
    let exe = std::ffi::CString::new("/proc/self/exe").unwrap();
    let fdarg = std::ffi::CString::new(fd.to_string()).unwrap();
    let pid = sys::fork_with(|| {
        // Before exec, a head whose pending entry points at the same word: it must be forgotten.
        let h = p + 1024;
        sys::write_usize(h, h);
        sys::write_usize(h + 8, crate::holder::OFFSET as usize);
        sys::write_usize(h + 16, pending_for(p + 0x1100));
        if set_robust_list(h, HEAD_LEN).is_err() {
            return 2;
        }
        let argv = [
            exe.as_ptr(),
            c"hold-memfd".as_ptr(),
            fdarg.as_ptr(),
            std::ptr::null(),
        ];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv.
        unsafe { libc::execv(argv[0], argv.as_ptr()) };
        3
    });
    let r = (|| -> R {
        ctl.wait_ready(0)?;
        ensure_eq!(indexed()? - base, 1);
        ensure_eq!(cleanup(p + 0x1100, 4)?, 1);
        ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
        Ok(())
    })();
    ctl.release();
    ensure!(exited_ok(sys::wait_pid(pid)), "holder failed");
    std::mem::forget(ctl);
    r?;
    ensure_eq!(indexed()? - base, 0);
    Ok(())
}

/// Threads keep starting, unregistering and exiting while the caller keeps calling: every call
/// succeeds, holders started before a call are always cleared by it, and the index ends where
/// it began.
pub fn churn(_: &Ctx) -> R {
    let base = indexed()?;
    let mem = Shared::new(4096);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let heads = Shared::new(64 * 64);
    let r = std::thread::scope(|s| -> R {
        let churner = s.spawn(|| {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = n % 64;
                let (mem, heads) = (&mem, &heads);
                std::thread::scope(|s2| {
                    let t = s2.spawn(move || {
                        // A thread in the window of the race on a word of `mem`, which exits
                        // (or first unregisters) while calls are under way.
                        let h = heads.at(64 * i);
                        sys::write_usize(h, h);
                        sys::write_usize(h + 8, crate::holder::OFFSET as usize);
                        sys::write_usize(h + 16, pending_for(mem.at(4 * i)));
                        let _ = set_robust_list(h, HEAD_LEN);
                        if i.is_multiple_of(3) {
                            let _ = set_robust_list(0, HEAD_LEN);
                        }
                    });
                    let _ = t.join();
                });
                n += 1;
            }
            n
        });
        for round in 0..30 {
            let ctl = Control::new();
            ctl.prepare(0, mem.at(0x800 + 4 * round), false);
            let r = std::thread::scope(|s3| -> R {
                let holder = s3.spawn(|| ctl.hold(0, &[]));
                let r = (|| -> R {
                    ctl.wait_ready(0)?;
                    let n = cleanup(mem.base, 4096)?;
                    ensure!(n >= 1, "round {}: cleared {}", round, n);
                    ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
                    Ok(())
                })();
                ctl.release();
                join_all(vec![holder])?;
                r
            });
            if r.is_err() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                return r;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = churner.join().map_err(|_| "churner panicked".to_string())?;
        ensure!(n > 0, "no thread churned");
        Ok(())
    });
    r?;
    ensure_eq!(indexed()? - base, 0);
    Ok(())
}

/// `robust-harness index-at-load MODULE.ko`, with the module unloaded: tasks that registered
/// their heads before the module was loaded are found by the call once it is (the module files
/// them when it loads). A thread of this process on private memory and a forked process on
/// shared memory; the module is unloaded again at the end. Prints a one-test KTAP document.
pub fn at_load(module: &str) -> i32 {
    let r = at_load_case(module);
    println!("KTAP version 1");
    println!("1..1");
    match r {
        Ok(()) => {
            println!("ok 1 index_tasks_registered_before_load");
            0
        }
        Err(e) => {
            println!("# index_tasks_registered_before_load: {}", e);
            println!("not ok 1 index_tasks_registered_before_load");
            1
        }
    }
}

fn at_load_case(module: &str) -> R {
    {
        let private = sys::private_anon(4096);
        let mem = Shared::new(4096);
        let ctl = Control::new();
        ctl.prepare(0, private + 0x100, false);
        let r = std::thread::scope(|s| -> R {
            s.spawn(|| ctl.hold(0, &[]));
            let pid = crate::holder::fork_holder(&ctl, 1, false, || mem.at(0x200));
            let r = (|| -> R {
                ctl.wait_ready(0)?;
                ctl.wait_ready(1)?;
                ensure_eq!(
                    cleanup_robust_list(private + 0x100, 4, 0)
                        .map_err(|e| e.raw_os_error())
                        .err(),
                    Some(Some(libc::ENOSYS))
                );
                crate::stress::run("insmod", module)?;
                ensure!(indexed()? >= 2, "index_tasks {}", indexed()?);
                ensure_eq!(cleanup(private + 0x100, 4)?, 1);
                ensure_eq!(cleanup(mem.at(0x200), 4)?, 1);
                ensure_eq!(sys::read_usize(ctl.slot(0)), 0);
                ensure_eq!(sys::read_usize(ctl.slot(1)), 0);
                Ok(())
            })();
            ctl.release();
            ensure!(exited_ok(sys::wait_pid(pid)), "holder process failed");
            r
        });
        let unloaded = crate::stress::unload().map(|_| ());
        r.and(unloaded)
    }
}

/// A single-threaded caller (the only user of its mm, which the call does not look up in the
/// index) whose own `list_op_pending` points at the word, in private memory and in a memfd only
/// it maps: the call clears it, and leaves a slot pointing elsewhere alone.
pub fn own_slot_single_thread(_: &Ctx) -> R {
    let p = sys::private_anon(4096);
    let h = p + 0x800;
    sys::write_usize(h, h);
    sys::write_usize(h + 8, crate::holder::OFFSET as usize);
    sys::write_usize(h + 16, pending_for(p + 0x100));
    set_robust_list(h, HEAD_LEN).map_err(|e| format!("set_robust_list: {}", e))?;
    let threads = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string());
    ensure_eq!(threads.as_deref(), Some("1"));
    ensure_eq!(cleanup(p + 0x200, 4)?, 0);
    ensure!(
        sys::read_usize(h + 16) != 0,
        "slot pointing elsewhere cleared"
    );
    ensure_eq!(cleanup(p + 0x100, 4)?, 1);
    ensure_eq!(sys::read_usize(h + 16), 0);
    // Shared memory that only the caller maps: the same shortcut.
    let m = crate::cleanup::map_fd(crate::cleanup::memfd(4096), 4096, libc::MAP_SHARED);
    sys::write_usize(h + 16, pending_for(m + 0x40));
    ensure_eq!(cleanup(m + 0x44, 4)?, 0);
    ensure_eq!(cleanup(m + 0x40, 4)?, 1);
    ensure_eq!(sys::read_usize(h + 16), 0);
    Ok(())
}
