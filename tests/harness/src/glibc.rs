//! glibc robust mutexes: what applications see of the exit walk.

use crate::sys::{self, Shared};
use crate::Ctx;
use std::time::Duration;

type R = Result<(), String>;

/// An initialised robust mutex in memory the caller provides.
pub(crate) struct Mutex(*mut libc::pthread_mutex_t);

// SAFETY: pthread mutexes are made to be shared between threads.
unsafe impl Send for Mutex {}
// SAFETY: as above.
unsafe impl Sync for Mutex {}

impl Mutex {
    /// Initialises a robust mutex at `at` (process-shared if `shared`, PI if `pi`).
    pub(crate) fn init(at: usize, shared: bool, pi: bool) -> Result<Mutex, String> {
        let m = at as *mut libc::pthread_mutex_t;
        // SAFETY: attribute calls on a local attribute object, then an init of `m`, which points
        // to memory the caller owns, big enough and aligned for a mutex.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            if shared {
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            }
            if pi {
                libc::pthread_mutexattr_setprotocol(&mut attr, libc::PTHREAD_PRIO_INHERIT);
            }
            let r = libc::pthread_mutex_init(m, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            if r != 0 {
                return Err(format!("pthread_mutex_init: {}", r));
            }
        }
        Ok(Mutex(m))
    }

    pub(crate) fn lock(&self) -> i32 {
        // SAFETY: `self.0` is an initialised mutex.
        unsafe { libc::pthread_mutex_lock(self.0) }
    }

    pub(crate) fn timedlock(&self, d: Duration) -> i32 {
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `ts` is a valid out pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        ts.tv_sec += d.as_secs() as libc::time_t;
        // SAFETY: `self.0` is an initialised mutex; `ts` outlives the call.
        unsafe { libc::pthread_mutex_timedlock(self.0, &ts) }
    }

    pub(crate) fn consistent(&self) -> i32 {
        // SAFETY: `self.0` is an initialised mutex.
        unsafe { libc::pthread_mutex_consistent(self.0) }
    }

    pub(crate) fn unlock(&self) -> i32 {
        // SAFETY: `self.0` is an initialised mutex.
        unsafe { libc::pthread_mutex_unlock(self.0) }
    }

    /// After EOWNERDEAD: make it consistent, release it, and take it again normally.
    fn recover(&self) -> R {
        let (c, u, l, u2) = (self.consistent(), self.unlock(), self.lock(), self.unlock());
        if (c, u, l, u2) != (0, 0, 0, 0) {
            return Err(format!(
                "recover: consistent {} unlock {} lock {} unlock {}",
                c, u, l, u2
            ));
        }
        Ok(())
    }
}

fn expect_ownerdead(what: &str, r: i32) -> R {
    if r != libc::EOWNERDEAD {
        return Err(format!(
            "{}: got {} ({}), want EOWNERDEAD",
            what,
            r,
            errname(r)
        ));
    }
    Ok(())
}

pub fn errname(r: i32) -> String {
    std::io::Error::from_raw_os_error(r).to_string()
}

pub fn thread_owner_dies(_: &Ctx) -> R {
    let mem = Shared::new(4096);
    let m = Mutex::init(mem.base, false, false)?;
    let r = std::thread::scope(|s| s.spawn(|| m.lock()).join().unwrap());
    if r != 0 {
        return Err(format!("thread lock: {}", r));
    }
    expect_ownerdead("lock after owner thread exit", m.lock())?;
    m.recover()
}

/// A process dies holding a process-shared robust mutex (`pi`: a PI one).
fn process_owner_dies(pi: bool) -> R {
    let mem = Shared::new(4096);
    let m = Mutex::init(mem.base, true, pi)?;
    let pid = sys::fork_with(|| if m.lock() == 0 { 0 } else { 1 });
    if !sys::exited_ok(sys::wait_pid(pid)) {
        return Err("child could not lock".into());
    }
    expect_ownerdead("lock after owner process exit", m.lock())?;
    m.recover()
}

pub fn process_owner_dies_plain(_: &Ctx) -> R {
    process_owner_dies(false)
}

pub fn pi_owner_dies(_: &Ctx) -> R {
    process_owner_dies(true)
}

/// A waiter blocked on a process-shared robust mutex gets EOWNERDEAD when the owner dies.
fn waiter_woken_on(pi: bool) -> R {
    let mem = Shared::new(4096);
    let m = Mutex::init(mem.base, true, pi)?;
    let go = mem.base + 2048;
    let locked = mem.base + 2052;
    let pid = sys::fork_with(|| {
        if m.lock() != 0 {
            return 1;
        }
        sys::write_u32(locked, 1);
        while sys::read_u32(go) == 0 {
            let _ = sys::futex_wait(go, 0, Duration::from_secs(1));
        }
        0
    });
    while sys::read_u32(locked) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            tx.send(sys::gettid()).unwrap();
            let r = m.timedlock(Duration::from_secs(60));
            // The waiter owns the mutex now: it is the one to recover it.
            expect_ownerdead("blocked waiter", r).and_then(|()| m.recover())
        });
        let tid = rx.recv().unwrap();
        let blocked = sys::wait_blocked_in_futex(sys::getpid(), tid);
        sys::write_u32(go, 1);
        let _ = sys::futex_wake(go, 1);
        let r = waiter.join().unwrap();
        if blocked {
            r
        } else {
            Err("waiter never blocked".to_string())
        }
    });
    if !sys::exited_ok(sys::wait_pid(pid)) {
        return Err("child failed".into());
    }
    r
}

pub fn waiter_woken(_: &Ctx) -> R {
    waiter_woken_on(false)
}

pub fn pi_waiter_woken(_: &Ctx) -> R {
    waiter_woken_on(true)
}

pub fn many_threads_die(_: &Ctx) -> R {
    const N: usize = 8;
    let mem = Shared::new(4096);
    let size = std::mem::size_of::<libc::pthread_mutex_t>();
    let ms: Vec<Mutex> = (0..N)
        .map(|i| Mutex::init(mem.base + i * size, false, false))
        .collect::<Result<_, _>>()?;
    std::thread::scope(|s| {
        for m in &ms {
            s.spawn(move || assert_eq!(m.lock(), 0));
        }
    });
    for (i, m) in ms.iter().enumerate() {
        expect_ownerdead(&format!("mutex {}", i), m.lock())?;
        m.recover()?;
    }
    Ok(())
}

/// `robust-harness demo`: tells, step by step, what happens to a process-shared robust mutex
/// whose owner dies while another process waits for it.
pub fn demo(walker: &str) -> R {
    let say = |s: String| println!("[demo/{}] {}", walker, s);
    let mem = Shared::new(4096);
    let m = Mutex::init(mem.base, true, false)?;
    let word = mem.base; // __data.__lock is the first word of a glibc mutex
    let go = mem.base + 2048;
    let pid = sys::fork_with(|| {
        if m.lock() != 0 {
            return 1;
        }
        while sys::read_u32(go) == 0 {
            let _ = sys::futex_wait(go, 0, Duration::from_secs(1));
        }
        0 // exits holding the mutex
    });
    while sys::read_u32(word) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    say(format!(
        "process {} locked a robust mutex: futex word {:#010x}",
        pid,
        sys::read_u32(word)
    ));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            tx.send(sys::gettid()).unwrap();
            let start = std::time::Instant::now();
            let r = m.timedlock(Duration::from_secs(60));
            let waited = start.elapsed();
            let seen = sys::read_u32(word);
            // The waiter owns the mutex now: it is the one to make it consistent and unlock it.
            let (c, u) = if r == libc::EOWNERDEAD {
                (m.consistent(), m.unlock())
            } else {
                (-1, -1)
            };
            (r, waited, seen, c, u)
        });
        let tid = rx.recv().unwrap();
        if sys::wait_blocked_in_futex(sys::getpid(), tid) {
            say(format!(
                "thread {} of process {} blocks in pthread_mutex_lock()",
                tid,
                sys::getpid()
            ));
        }
        say(format!("process {} exits without unlocking", pid));
        sys::write_u32(go, 1);
        let _ = sys::futex_wake(go, 1);
        let (r, waited, seen, c, u) = waiter.join().unwrap();
        say(format!(
            "the owner's exit walk woke the waiter: pthread_mutex_lock() = {} after {} ms; \
             the waiter now owns it (futex word {:#010x})",
            if r == libc::EOWNERDEAD {
                "EOWNERDEAD".to_string()
            } else {
                errname(r)
            },
            waited.as_millis(),
            seen,
        ));
        if r != libc::EOWNERDEAD {
            return Err(format!("expected EOWNERDEAD, got {}", errname(r)));
        }
        say(format!(
            "the waiter: pthread_mutex_consistent() = {}, pthread_mutex_unlock() = {}",
            c, u
        ));
        if (c, u) != (0, 0) {
            return Err("the waiter could not recover the mutex".into());
        }
        Ok(())
    })?;
    sys::wait_pid(pid);
    let l = m.lock();
    let u = m.unlock();
    say(format!(
        "lock again: {}, unlock: {}: the mutex survived its owner",
        l, u
    ));
    if (l, u) != (0, 0) {
        return Err("the mutex did not recover".into());
    }
    Ok(())
}
