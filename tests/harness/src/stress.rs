//! `robust-harness switch-walkers MODULE.ko COMPAT32 ROUNDS`: loads and unloads the module ROUNDS
//! times in one thread while, in others, processes, threads and 32-bit processes keep dying with
//! owned robust futexes and a thread keeps calling cleanup_robust_list(). Every death must be
//! walked (by one walker or the other): no walk may be missed while the hook changes hands, and
//! no exit may call into a module that is going away (that would oops the guest, which the
//! host's log check catches); every call returns a count or ENOSYS; rmmod's EAGAIN (the module
//! was pinned while in use, before the futex core's SRCU) is retried and counted. Every fifth
//! cycle first loads the module with `inject_load_failure=MS`: its init registers the
//! operations, lets exits and calls run in it for MS milliseconds, then fails as a failed
//! `populate()` would. The load must fail, and nothing may run in the freed module afterwards.
//! Prints a one-test KTAP document with the counts.

use crate::list::{process_dies, List, HEAD_LEN};
use crate::sys::{self, FUTEX_OWNER_DIED, FUTEX_WAITERS};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub fn run(cmd: &str, arg: &str) -> Result<(), String> {
    let st = Command::new(cmd)
        .arg(arg)
        .status()
        .map_err(|e| format!("{}: {}", cmd, e))?;
    if !st.success() {
        return Err(format!("{} {}: {}", cmd, arg, st));
    }
    Ok(())
}

/// Loads the module with its init made to fail after `ms` milliseconds with the operations
/// registered; the load must fail.
fn failed_load(module: &str, ms: u32) -> Result<(), String> {
    let param = format!("inject_load_failure={}", ms);
    let out = Command::new("insmod")
        .args([module, &param])
        .output()
        .map_err(|e| format!("insmod: {}", e))?;
    if out.status.success() {
        return Err(format!("insmod {} {} succeeded", module, param));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.contains("Cannot allocate memory") && !err.contains("ENOMEM") {
        return Err(format!("insmod {} {}: {}", module, param, err.trim()));
    }
    Ok(())
}

/// rmmod fails with EAGAIN while an exit holds a reference on the module (it is walking a
/// list with it): retry, as an administrator would. Returns how many tries failed first.
pub fn unload() -> Result<usize, String> {
    let mut last = String::new();
    for tries in 0..2000 {
        match run("rmmod", "robust_futex") {
            Ok(()) => return Ok(tries),
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(format!("{} (2000 tries)", last))
}

/// What happened while the module came and went.
#[derive(Default)]
struct Counts {
    cycles: usize,
    failed_loads: usize,
    rmmod_retries: usize,
    process_deaths: usize,
    thread_deaths: usize,
    thread_execs: usize,
    compat_deaths: usize,
    cleanup_calls: usize,
    cleanup_enosys: usize,
}

/// Runs `f` until `done`, counting its rounds; the first error ends it.
fn until(done: &AtomicBool, mut f: impl FnMut() -> Result<(), String>) -> Result<usize, String> {
    let mut n = 0;
    while !done.load(Ordering::SeqCst) {
        f()?;
        n += 1;
    }
    Ok(n)
}

/// A process dies owning two entries (one with waiters, one PI): both must be marked.
fn process_death(l: &List) -> Result<(), String> {
    let (a, b) = (l.entry(0), l.entry(1));
    sys::write_u32(a + 8, 0);
    sys::write_u32(b + 8, 0);
    let st = process_dies(l.head(), &[(a + 8, FUTEX_WAITERS), (b + 8, 0)]);
    if !sys::exited_ok(st) {
        return Err(format!("child status {:#x}", st));
    }
    let (wa, wb) = (sys::read_u32(a + 8), sys::read_u32(b + 8));
    if wa != FUTEX_OWNER_DIED | FUTEX_WAITERS || wb != FUTEX_OWNER_DIED {
        return Err(format!(
            "process death not walked: words {:#x} {:#x}",
            wa, wb
        ));
    }
    Ok(())
}

/// A process whose second thread execs `/bin/true`: `de_thread()` makes that thread the group
/// leader and releases the old one while a load-time scan (or a call's fallback scan) may be
/// walking the group's threads. A walk that follows `next_thread()` back to the thread it
/// started from never ends then; the signal's thread list, followed to its end, does.
fn thread_exec() -> Result<(), String> {
    /// The second thread: execs `/bin/true` (only async-signal-safe calls: the forked child
    /// of a multithreaded process).
    extern "C" fn exec_true(_: *mut libc::c_void) -> *mut libc::c_void {
        let prog = c"/bin/true";
        let argv = [prog.as_ptr(), std::ptr::null()];
        // SAFETY: a NUL-terminated path and a NULL-terminated argv.
        unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
        // SAFETY: ends the process if the exec failed.
        unsafe { libc::_exit(3) }
    }
    let pid = sys::fork_with(|| {
        let mut t: libc::pthread_t = 0;
        // SAFETY: a plain thread running `exec_true`, which never returns.
        if unsafe {
            libc::pthread_create(&mut t, std::ptr::null(), exec_true, std::ptr::null_mut())
        } != 0
        {
            return 4;
        }
        // SAFETY: the exec ends this thread with the process image.
        unsafe { libc::pthread_join(t, std::ptr::null_mut()) };
        5
    });
    let st = sys::wait_pid(pid);
    if !sys::exited_ok(st) {
        return Err(format!(
            "a process whose thread execs /bin/true: status {:#x}",
            st
        ));
    }
    Ok(())
}

/// A thread dies owning an entry: it must be marked before join returns.
fn thread_death(l: &List) -> Result<(), String> {
    let (head, a) = (l.head(), l.entry(0));
    sys::write_u32(a + 8, 0);
    let t = std::thread::spawn(move || {
        sys::set_robust_list(head, HEAD_LEN).map_err(|e| e.to_string())?;
        sys::write_u32(a + 8, sys::gettid() | FUTEX_WAITERS);
        Ok::<(), String>(())
    });
    t.join().map_err(|_| "thread panicked".to_string())??;
    let w = sys::read_u32(a + 8);
    if w != FUTEX_OWNER_DIED | FUTEX_WAITERS {
        return Err(format!("thread death not walked: word {:#x}", w));
    }
    Ok(())
}

fn switch(module: &str, compat32: &str, rounds: usize) -> Result<Counts, String> {
    let done = AtomicBool::new(false);
    let procs = List::new(4096);
    let (a, b) = (procs.entry(0), procs.entry(1));
    procs.link(&[a, b | 1], 8, 0);
    let threads = List::new(4096);
    threads.link(&[threads.entry(0)], 8, 0);
    let word = sys::private_anon(4096);
    let enosys = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let switcher = s.spawn(|| {
            let r = (|| -> Result<(usize, usize), String> {
                let (mut retries, mut failed) = (0, 0);
                for i in 0..rounds {
                    retries += unload()?;
                    if i % 5 == 0 {
                        failed_load(module, 50)?;
                        failed += 1;
                    }
                    run("insmod", module)?;
                }
                Ok((retries, failed))
            })();
            done.store(true, Ordering::SeqCst);
            r
        });
        let thread_deaths = s.spawn(|| until(&done, || thread_death(&threads)));
        let thread_execs = s.spawn(|| until(&done, thread_exec));
        let compat_deaths = s.spawn(|| until(&done, || run(compat32, "list")));
        let cleanups = s.spawn(|| {
            until(&done, || match sys::cleanup_robust_list(word, 4096, 0) {
                Ok(n) if n >= 0 => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    enosys.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                r => Err(format!("cleanup_robust_list: {:?}", r)),
            })
        });
        let process_deaths = until(&done, || process_death(&procs));
        let join = |r: std::thread::Result<Result<usize, String>>, what: &str| {
            r.map_err(|_| format!("{} panicked", what))?
        };
        let (rmmod_retries, failed_loads) = switcher
            .join()
            .map_err(|_| "switcher panicked".to_string())??;
        Ok(Counts {
            cycles: rounds,
            failed_loads,
            rmmod_retries,
            process_deaths: process_deaths?,
            thread_deaths: join(thread_deaths.join(), "thread deaths")?,
            thread_execs: join(thread_execs.join(), "thread execs")?,
            compat_deaths: join(compat_deaths.join(), "compat deaths")?,
            cleanup_calls: join(cleanups.join(), "cleanup caller")?,
            cleanup_enosys: enosys.load(Ordering::Relaxed),
        })
    })
}

pub fn main(module: &str, compat32: &str, rounds: usize) -> i32 {
    println!("KTAP version 1");
    println!("1..1");
    match switch(module, compat32, rounds) {
        Ok(c) => {
            println!(
                "# {} unload/load cycles ({} rmmod retries on EAGAIN, {} loads that failed after \
                 registering); deaths, all walked: {} processes, {} threads, {} 32-bit processes; \
                 {} cleanup calls, {} of them ENOSYS; {} processes whose second thread execed",
                c.cycles,
                c.rmmod_retries,
                c.failed_loads,
                c.process_deaths,
                c.thread_deaths,
                c.compat_deaths,
                c.cleanup_calls,
                c.cleanup_enosys,
                c.thread_execs
            );
            println!("ok 1 load_unload_under_fire");
            0
        }
        Err(e) => {
            println!("# load_unload_under_fire: {}", e);
            println!("not ok 1 load_unload_under_fire");
            1
        }
    }
}
