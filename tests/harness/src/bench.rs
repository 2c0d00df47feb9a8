//! `robust-harness bench MODULE.ko`: the figures of `make bench`, measured side by side in one
//! boot of the non-debug test kernel. Conditions are interleaved round by round (their order
//! rotated each round), and each round compares conditions measured next to each other, so that
//! drifts of the host cancel out. Prints one `BENCH {json}` line per figure, with the per-round
//! values; `scripts/bench.py` reduces them to medians and spreads.
//!
//! Figures:
//! - `cleanup`: cleanup_robust_list() on one word of private, shared anonymous and memfd
//!   memory, and the null system call (`getppid`), in ns;
//! - `threads`: the call on private memory against the number of threads of the caller's
//!   process (all with a robust list, idle);
//! - `processes`: the call on a memfd word against the number of other processes mapping it;
//! - `unrelated`: the call on private memory (by a process with two threads, so that it looks in
//!   the index) against the number of unrelated idle tasks, and with none again at the end;
//! - `exit`: a thread's exit with N owned robust futexes on its list (private, process-shared
//!   or PI), module walker and built-in walker alternating (the module is loaded and unloaded
//!   between rounds);
//! - `churn`: a thread's start and exit (`set_robust_list()` from glibc, the exit walk of an
//!   empty list, `pthread_join()`) in a process of N threads, module walker vs built-in walker
//!   alternating: the module files the thread in its index and removes it at exit, which must
//!   not cost more with more threads in the process;
//! - `unmap`: `mmap()` + `munmap()` of one page of a memfd, `MAP_SHARED` and written (no robust
//!   lock in it), module and built-in walker alternating: the module records the unmapped
//!   memory and drops the record on the way back to user space;
//! - `unlock`: one robust lock/unlock pair with glibc's classic unlock and with the merged
//!   sequence (vDSO try_unlock, `FUTEX_ROBUST_UNLOCK` when contended), uncontended and
//!   contended (`FUTEX_WAITERS` set, no waiter), and the null system call, in ns (kernels with
//!   the merged fix only).

use crate::stress::{run, unload};
use crate::sys::{self, *};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The time stamp counter. Under TCG the guest's TSC is the host's, at the same rate on every
/// vCPU; this does not depend on the guest kernel having calibrated it (against the PIT, which
/// fails on a loaded host and leaves the kernel's clock in 4 ms steps).
fn ticks() -> u64 {
    // SAFETY: `rdtsc` has no preconditions; user space may execute it (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per ns, measured once over 2 s of `CLOCK_MONOTONIC` (coarse steps do not matter
/// over that span). Only the ns shown depend on it; every ratio is one of tick counts.
fn ticks_per_ns() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        let (t, c) = (Instant::now(), ticks());
        std::thread::sleep(Duration::from_secs(2));
        (ticks() - c) as f64 / t.elapsed().as_nanos() as f64
    })
}

fn null_syscall() {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

/// Mean ns per call of `f` over `k` calls (from TSC ticks).
fn per_call(k: usize, mut f: impl FnMut()) -> f64 {
    let t = ticks();
    for _ in 0..k {
        f();
    }
    (ticks() - t) as f64 / ticks_per_ns() / k as f64
}

fn clean(addr: usize) {
    let r = cleanup_robust_list(addr, 4, 0);
    assert!(
        matches!(r, Ok(0)),
        "cleanup_robust_list({:#x}): {:?}",
        addr,
        r
    );
}

fn emit(figure: &str, params: &str, rounds: &[Vec<f64>], names: &[&str]) {
    let cols: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let v: Vec<String> = rounds.iter().map(|r| format!("{:.1}", r[i])).collect();
            format!("\"{}\":[{}]", n, v.join(","))
        })
        .collect();
    println!(
        "BENCH {{\"figure\":\"{}\",{}{}}}",
        figure,
        params,
        cols.join(",")
    );
}

/// Measures `conds` (closures) for `rounds` rounds of `k` calls each, rotating their order.
fn interleave(rounds: usize, k: usize, conds: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    let n = conds.len();
    let mut out = Vec::new();
    for r in 0..rounds {
        let mut row = vec![0.0; n];
        for j in 0..n {
            let i = (r + j) % n;
            row[i] = per_call(k, &mut *conds[i]);
        }
        out.push(row);
    }
    out
}

/// `len` bytes of a new memfd, mapped shared.
fn memfd_map(len: usize) -> usize {
    crate::cleanup::map_fd(crate::cleanup::memfd(len), len, libc::MAP_SHARED)
}

const ROUNDS: usize = 41;
const K: usize = 2000;

/// `mincore()` of one page: a system call that, like cleanup_robust_list(), takes the caller's
/// `mmap_lock` and looks up a VMA; a floor for the cost of resolving the range.
fn mincore(addr: usize) {
    let mut vec = [0u8; 1];
    // SAFETY: `addr` is a mapped page of ours; `vec` has room for one page.
    let r = unsafe { libc::mincore(addr as *mut _, 4096, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
}

/// `msync(MS_ASYNC)` of one private anonymous page: takes the caller's `mmap_lock`, looks up the
/// VMA and does nothing else; the floor of resolving an address in a system call, with none of
/// `mincore()`'s page table walk, page allocation and copy out.
fn msync(addr: usize) {
    // SAFETY: `addr` is a mapped page of ours; MS_ASYNC on private memory changes nothing.
    let r = unsafe { libc::msync(addr as *mut _, 4096, libc::MS_ASYNC) };
    assert_eq!(r, 0, "msync: {}", std::io::Error::last_os_error());
}

/// `getcpu()` of the CPU only, made as a system call (not through the vDSO): a system call whose
/// only work is writing one word of user memory. Its difference to the null call (`getppid()`,
/// which does more besides) is only a rough figure for what one user access costs.
fn getcpu() {
    let mut cpu = 0u32;
    // SAFETY: `cpu` is a valid `u32`; the node and cache arguments are NULL.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut u32,
            std::ptr::null_mut::<u32>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    assert_eq!(r, 0, "getcpu: {}", std::io::Error::last_os_error());
}

/// `process_vm_readv()` of 16 bytes of `pid`: reading another process's memory through its page
/// tables, as the call does for each task of another process; a floor for that cost.
fn remote_read(pid: libc::pid_t, addr: usize) {
    let mut buf = [0u8; 16];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 16,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut _,
        iov_len: 16,
    };
    // SAFETY: one local buffer of 16 bytes; the remote range is checked by the kernel.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    assert_eq!(
        n,
        16,
        "process_vm_readv: {}",
        std::io::Error::last_os_error()
    );
}

fn cleanup_vs_null() {
    let private = sys::private_anon(4096);
    sys::write_u32(private, 0);
    // A child to read from, for the floor of remote reads. Forked before the shared memory is
    // mapped: it must not be a second user of it.
    let stop = Shared::new(4096);
    let pid = idle_child(stop.base);
    let shared = Shared::new(4096);
    let memfd = memfd_map(4096);
    sys::write_u32(memfd, 0);
    let rows = interleave(
        ROUNDS,
        K,
        &mut [
            &mut null_syscall,
            &mut || clean(private),
            &mut || clean(shared.base),
            &mut || clean(memfd),
            &mut || mincore(private),
            &mut || msync(private),
            &mut getcpu,
            &mut || remote_read(pid, private),
        ],
    );
    sys::write_u32(stop.base, 1);
    sys::futex_wake(stop.base, 1).expect("futex_wake");
    sys::wait_pid(pid);
    emit(
        "cleanup",
        "",
        &rows,
        &[
            "null",
            "private",
            "shared_anon",
            "memfd",
            "mincore",
            "msync",
            "getcpu",
            "remote_read",
        ],
    );
}

/// One point of a scaling figure: `op` (the call) against the null system call.
fn point(figure: &str, n: usize, op: &mut dyn FnMut()) {
    let rows = interleave(ROUNDS, K / 2, &mut [&mut null_syscall, op]);
    emit(
        figure,
        &format!("\"n\":{},", n),
        &rows,
        &["null", "cleanup"],
    );
}

/// FUTEX_WAIT on `addr` while it holds `val`, for at most `timeout`: the word changed
/// (`EAGAIN`), the time ran out and a signal are all a wait's ordinary ends; any other error is
/// the bench's.
fn idle_wait(addr: usize, val: u32, timeout: std::time::Duration) {
    if let Err(e) = sys::futex_wait(addr, val, timeout) {
        let ordinary = [libc::EAGAIN, libc::ETIMEDOUT, libc::EINTR];
        assert!(
            ordinary.contains(&e.raw_os_error().unwrap_or(0)),
            "futex_wait: {e}"
        );
    }
}

/// A child process that idles until the word `stop` (in memory shared with it) is set.
fn idle_child(stop: usize) -> libc::pid_t {
    sys::fork_with(|| {
        while sys::read_u32(stop) == 0 {
            idle_wait(stop, 0, std::time::Duration::from_secs(3600));
        }
        0
    })
}

/// Idle threads: each blocks on `stop` until it is set. glibc registers a robust list for each.
struct Idle {
    stop: &'static AtomicU32,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Each thread's `pthread_self()`: its glibc TCB, where its robust list head lives.
    tcbs: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Idle {
    fn new() -> Idle {
        Idle {
            stop: Box::leak(Box::new(AtomicU32::new(0))),
            threads: Vec::new(),
            tcbs: Default::default(),
        }
    }

    fn grow(&mut self, n: usize, stack: usize) {
        while self.threads.len() < n {
            let stop = self.stop;
            let tcbs = self.tcbs.clone();
            let t = std::thread::Builder::new()
                .stack_size(stack)
                .spawn(move || {
                    // SAFETY: no preconditions.
                    let me = unsafe { libc::pthread_self() } as usize;
                    tcbs.lock().unwrap().push(me);
                    while stop.load(Ordering::SeqCst) == 0 {
                        idle_wait(
                            stop.as_ptr() as usize,
                            0,
                            std::time::Duration::from_secs(3600),
                        );
                    }
                })
                .expect("spawn");
            self.threads.push(t);
        }
    }

    fn stop(self) {
        self.stop.store(1, Ordering::SeqCst);
        sys::futex_wake(self.stop.as_ptr() as usize, i32::MAX).expect("futex_wake");
        for t in self.threads {
            t.join().expect("an idle thread panicked");
        }
    }
}

/// Lets tasks just started go to sleep before a measurement.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(50));
}

fn threads_scaling() {
    let private = sys::private_anon(4096);
    let sink = crate::cleanup::memfd(4096);
    let mut idle = Idle::new();
    for t in [1usize, 2, 4, 8, 16, 32, 64, 128, 256] {
        idle.grow(t - 1, 64 * 1024);
        settle();
        // The floor of touching each thread's TCB page: one word of each, read from user space.
        let mut tcbs = idle.tcbs.lock().unwrap().clone();
        // SAFETY: no preconditions.
        tcbs.push(unsafe { libc::pthread_self() } as usize);
        let mut touch = || {
            for &a in &tcbs {
                // SAFETY: a live thread's TCB, mapped for as long as the thread exists.
                unsafe { std::ptr::read_volatile(a as *const usize) };
            }
        };
        // The floor of the kernel reading one word of each thread's TCB page: one pwritev()
        // of an 8-byte piece of each into a page of a memfd.
        let iov: Vec<libc::iovec> = tcbs
            .iter()
            .map(|&a| libc::iovec {
                iov_base: a as *mut _,
                iov_len: 8,
            })
            .collect();
        let mut kread = || {
            // SAFETY: each piece is a live thread's TCB, mapped while the thread exists.
            let n = unsafe { libc::pwritev(sink, iov.as_ptr(), iov.len() as i32, 0) };
            assert_eq!(
                n as usize,
                8 * iov.len(),
                "pwritev: {}",
                std::io::Error::last_os_error()
            );
        };
        // The floor of the kernel visiting each thread of the process: getrusage(RUSAGE_SELF)
        // walks the thread group and reads each thread's times and counters.
        let mut visit = || {
            // SAFETY: all-zero bytes are a valid rusage.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `ru` is a valid, writable rusage.
            let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
            assert_eq!(r, 0, "getrusage: {}", std::io::Error::last_os_error());
        };
        let rows = interleave(
            ROUNDS,
            K / 2,
            &mut [
                &mut null_syscall,
                &mut || clean(private),
                &mut touch,
                &mut kread,
                &mut visit,
            ],
        );
        emit(
            "threads",
            &format!("\"n\":{},", t),
            &rows,
            &["null", "cleanup", "touch", "kread", "visit"],
        );
    }
    idle.stop();
}

fn processes_scaling() {
    // Three pages: the word to clean, the children's stop word, and a page never touched.
    let fd = crate::cleanup::memfd(3 * 4096);
    let memfd = crate::cleanup::map_fd(fd, 3 * 4096, libc::MAP_SHARED);
    let stop = memfd + 4096;
    sys::write_u32(stop, 0);
    // The floor of the kernel finding each process that maps the memfd: punching a hole in
    // its untouched third page walks the file's `i_mmap` tree and each mapping's page tables
    // over that page (`unmap_mapping_range()`: per mapping also an mmu_notifier range and a
    // TLB gather on its mm), and frees nothing.
    let mut punch = || {
        // SAFETY: a plain system call on our memfd.
        let r = unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                2 * 4096,
                4096,
            )
        };
        assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
    };
    let mut pids = Vec::new();
    for p in [1usize, 2, 4, 8, 16, 32] {
        while pids.len() < p - 1 {
            // The child inherits the shared mapping: another mm on the memfd's i_mmap tree,
            // with one thread (glibc registers its robust list again after fork).
            pids.push(idle_child(stop));
        }
        settle();
        let rows = interleave(
            ROUNDS,
            K / 2,
            &mut [&mut null_syscall, &mut || clean(memfd), &mut punch],
        );
        emit(
            "processes",
            &format!("\"n\":{},", p),
            &rows,
            &["null", "cleanup", "punch"],
        );
    }
    sys::write_u32(stop, 1);
    sys::futex_wake(stop, i32::MAX).expect("futex_wake");
    for pid in pids {
        sys::wait_pid(pid);
    }
    sys::munmap(memfd, 3 * 4096).expect("munmap");
    // SAFETY: our own memfd, used by nothing any more.
    let r = unsafe { libc::close(fd) };
    assert_eq!(r, 0, "close: {}", std::io::Error::last_os_error());
}

fn unrelated_tasks() {
    let private = sys::private_anon(4096);
    // One idle thread of our own, so that the call looks its mm up in the index (a single-
    // threaded caller needs no lookup at all).
    let mut own = Idle::new();
    own.grow(1, 64 * 1024);
    let ctl = Shared::new(4096);
    let (want, have, stop) = (ctl.base, ctl.base + 4, ctl.base + 8);
    // Another process holds the unrelated tasks, as idle threads with small stacks.
    let pid = sys::fork_with(|| {
        let mut idle = Idle::new();
        loop {
            let n = sys::read_u32(want) as usize;
            idle.grow(n, 16 * 1024);
            sys::write_u32(have, n as u32);
            sys::futex_wake(have, 1).expect("futex_wake");
            if sys::read_u32(stop) != 0 {
                break;
            }
            idle_wait(want, n as u32, std::time::Duration::from_millis(100));
        }
        std::process::exit(0);
    });
    // 0 again at the end: the spread between the two is the noise of the figure.
    for u in [0u32, 1000, 10000] {
        sys::write_u32(want, u);
        sys::futex_wake(want, 1).expect("futex_wake");
        while sys::read_u32(have) != u {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        settle();
        point("unrelated", u as usize, &mut || clean(private));
    }
    sys::write_u32(stop, 1);
    sys::write_u32(want, 0);
    sys::futex_wake(want, 1).expect("futex_wake");
    // SAFETY: our own child; killing is faster than joining 10,000 threads.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    sys::wait_pid(pid);
    settle();
    let rows = interleave(
        ROUNDS,
        K / 2,
        &mut [&mut null_syscall, &mut || clean(private)],
    );
    emit(
        "unrelated",
        "\"n\":0,\"after\":true,",
        &rows,
        &["null", "cleanup"],
    );
    own.stop();
}

#[derive(Clone, Copy)]
enum Kind {
    Private,
    Shared,
    Pi,
}

/// One thread's death with `n` owned robust futexes on its list, in `mem`: ns from its last
/// instruction before exiting to the return of `pthread_join()` (which waits for the exit's
/// CLONE_CHILD_CLEARTID wakeup, after the robust list walk).
fn one_death(mem: usize, n: usize, kind: Kind) -> f64 {
    let t0 = std::thread::scope(|s| {
        let h = s.spawn(move || {
            let tid = sys::gettid();
            let pi = matches!(kind, Kind::Pi) as usize;
            let entry = |i: usize| mem + 64 + 16 * i;
            sys::write_usize(mem, if n > 0 { entry(0) | pi } else { mem });
            sys::write_usize(mem + 8, 8); // futex_offset: the word follows the link
            sys::write_usize(mem + 16, 0);
            for i in 0..n {
                let next = if i + 1 < n { entry(i + 1) | pi } else { mem };
                sys::write_usize(entry(i), next);
                sys::write_u32(entry(i) + 8, tid);
            }
            set_robust_list(mem, crate::list::HEAD_LEN).expect("set_robust_list");
            ticks()
        });
        h.join().expect("join")
    });
    (ticks() - t0) as f64 / ticks_per_ns()
}

fn module_loaded() -> bool {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("robust_futex "))
}

/// Whether the module loaded is the one with `bench_unmap_floor=1`.
static FLOOR_LOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Puts the module's walker in place (`rust`) or the built-in one.
pub fn set_walker(module: &str, rust: bool) {
    if rust && module_loaded() && FLOOR_LOADED.load(Ordering::SeqCst) {
        unload().expect("rmmod");
    }
    if rust && !module_loaded() {
        run("insmod", module).expect("insmod");
        FLOOR_LOADED.store(false, Ordering::SeqCst);
    } else if !rust && module_loaded() {
        unload().expect("rmmod");
    }
}

fn exit_walk(module: &str) {
    let private = sys::private_anon(64 * 1024);
    let shared = Shared::new(64 * 1024);
    let cases: Vec<(usize, Kind, &str, usize)> = [0usize, 1, 64, 2048, 2049]
        .iter()
        .flat_map(|&n| {
            [
                (n, Kind::Private, "private", private),
                (n, Kind::Shared, "shared", shared.base),
                (n, Kind::Pi, "pi", private),
            ]
        })
        .collect();
    // results[case][round] = [module, builtin]. Within a round, each case is measured under
    // both walkers back to back (which one first alternates), so that the two batches compared
    // are close in time; after each switch one death is not timed (it warms up the code of the
    // walker just (re)loaded).
    let mut results = vec![Vec::new(); cases.len()];
    const EXIT_ROUNDS: usize = 25;
    for r in 0..EXIT_ROUNDS {
        for (c, &(n, kind, _, mem)) in cases.iter().enumerate() {
            let deaths = if n >= 2048 { 8 } else { 30 };
            let mut pair = [0.0; 2];
            for w in 0..2 {
                let rust = (r + c + w) % 2 == 0;
                set_walker(module, rust);
                one_death(mem, n, kind);
                let mut total = 0.0;
                for _ in 0..deaths {
                    total += one_death(mem, n, kind);
                }
                pair[if rust { 0 } else { 1 }] = total / deaths as f64;
            }
            results[c].push(pair.to_vec());
        }
    }
    for (c, &(n, _, name, _)) in cases.iter().enumerate() {
        emit(
            "exit",
            &format!("\"n\":{},\"kind\":\"{}\",", n, name),
            &results[c],
            &["module", "builtin"],
        );
    }
    set_walker(module, true);
}

/// Rounds of `churn`; in each, both walkers in turn (which one first alternates).
const CHURN_ROUNDS: usize = 15;
/// Threads started and joined per walker and round.
const CHURN_CYCLES: usize = 40;

/// One thread started and joined (a small stack, as the idle threads have).
fn churn_one() {
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(|| ())
        .expect("spawn")
        .join()
        .expect("join");
}

fn thread_churn(module: &str) {
    let mut idle = Idle::new();
    for n in [1usize, 256, 2048] {
        idle.grow(n - 1, 64 * 1024);
        settle();
        let mut rows = Vec::new();
        for r in 0..CHURN_ROUNDS {
            let mut pair = [0.0; 2];
            for w in 0..2 {
                let rust = (r + w) % 2 == 0;
                set_walker(module, rust);
                churn_one(); // warms up the walker just (re)loaded
                pair[if rust { 0 } else { 1 }] = per_call(CHURN_CYCLES, churn_one);
            }
            rows.push(pair.to_vec());
        }
        emit(
            "churn",
            &format!("\"n\":{},", n),
            &rows,
            &["module", "builtin"],
        );
    }
    idle.stop();
    set_walker(module, true);
}

/// Loads the module with `bench_unmap_floor=1`: its unmap operations only ask for the task
/// work, the floor of the mechanism.
fn set_unmap_floor(module: &str) {
    if module_loaded() && !FLOOR_LOADED.load(Ordering::SeqCst) {
        unload().expect("rmmod");
    }
    if !module_loaded() {
        let st = std::process::Command::new("insmod")
            .args([module, "bench_unmap_floor=1"])
            .status()
            .expect("insmod");
        assert!(
            st.success(),
            "insmod {} bench_unmap_floor=1: {}",
            module,
            st
        );
        FLOOR_LOADED.store(true, Ordering::SeqCst);
    }
}

fn unmap_cost(module: &str) {
    let fd = crate::cleanup::memfd(4096);
    let cycle = || {
        let p = sys::mmap(
            0,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
        )
        .expect("mmap");
        sys::write_u32(p, 1);
        sys::munmap(p, 4096).expect("munmap");
    };
    // Per round, each of: the module, the built-in walker (no unmap operation), the module
    // with `bench_unmap_floor` (the hook, the call and the task work, nothing else), in an
    // order that rotates; one cycle after each switch is not timed.
    let mut rows = Vec::new();
    for r in 0..ROUNDS {
        let mut row = [0.0; 3];
        for w in 0..3 {
            let which = (r + w) % 3;
            match which {
                0 => set_walker(module, true),
                1 => set_walker(module, false),
                _ => set_unmap_floor(module),
            }
            cycle();
            row[which] = per_call(K / 4, cycle);
        }
        rows.push(row.to_vec());
    }
    emit("unmap", "", &rows, &["module", "builtin", "floor"]);
    set_walker(module, true);
    // SAFETY: our own memfd, no longer mapped.
    let r = unsafe { libc::close(fd) };
    assert_eq!(r, 0, "close: {}", std::io::Error::last_os_error());
}

/// The preload library's cost on the calls it interposes: `/preload/overhead` under
/// `LD_PRELOAD` times each call through the library and through glibc's own function, in
/// alternation in one process, and prints per round the mean ticks of each.
fn preload_overhead() {
    const ROUNDS: usize = 21;
    const OPS: [&str; 5] = [
        "munmap_private",
        "munmap_private_beside_shared",
        "munmap_shared",
        "destroy_normal",
        "destroy_robust",
    ];
    let out = std::process::Command::new("/preload/overhead")
        .args([ROUNDS.to_string(), "1000".to_string()])
        .env("LD_PRELOAD", "/preload/librobust_cleanup.so")
        .output()
        .expect("/preload/overhead");
    assert!(
        out.status.success(),
        "/preload/overhead: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for op in OPS {
        let rounds: Vec<Vec<f64>> = text
            .lines()
            .filter_map(|l| l.strip_prefix(op)?.strip_prefix(' '))
            .map(|v| v.split(' ').map(|x| x.parse().expect("ticks")).collect())
            .collect();
        assert_eq!(rounds.len(), ROUNDS, "/preload/overhead: {}", op);
        emit(
            "preload",
            &format!("\"op\":\"{}\",", op),
            &rounds,
            &["with", "without"],
        );
    }
}

/// One robust lock/unlock pair of a mutex whose word is `word` and whose list entry is
/// `entry`, with `slot` the thread's `list_op_pending`, as glibc's robust mutexes do it (without
/// the list insertion, the same for all): announce, lock (with `FUTEX_WAITERS` when
/// `contended`, as if a waiter had queued), clear; announce, unlock, clear (the merged sequence
/// clears in the unlock itself).
fn lock_unlock(
    word: usize,
    entry: usize,
    slot: usize,
    tid: u32,
    contended: bool,
    merged: Option<extern "C" fn(*mut u32, u32, *mut u64) -> u32>,
) {
    // SAFETY: `word` is an aligned u32 of our own memory, only accessed atomically.
    let w = unsafe { AtomicU32::from_ptr(word as *mut u32) };
    sys::write_usize(slot, entry);
    let locked = tid | if contended { FUTEX_WAITERS } else { 0 };
    let ok = w.compare_exchange(0, locked, Ordering::Acquire, Ordering::Relaxed);
    assert!(ok.is_ok(), "the bench's lock word was not free: {:?}", ok);
    sys::write_usize(slot, 0);
    sys::write_usize(slot, entry);
    match merged {
        None => {
            if w.swap(0, Ordering::Release) & FUTEX_WAITERS != 0 {
                sys::futex_wake(word, 1).expect("futex_wake");
            }
            sys::write_usize(slot, 0);
        }
        Some(f) => {
            if f(word as *mut u32, tid, slot as *mut u64) != tid {
                // SAFETY: a futex call on our own word and pending slot.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        word,
                        // Shared, as `sys::futex_wake()` of the classic sequence.
                        libc::FUTEX_WAKE | crate::stepped::FUTEX_ROBUST_UNLOCK,
                        1,
                        0,
                        slot,
                        0,
                    )
                };
                assert!(
                    r >= 0,
                    "FUTEX_ROBUST_UNLOCK: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// The cost of each way to unlock a robust mutex, where it is paid: per unlock. (The cost of
/// cleanup_robust_list() is per destroy: the `cleanup` figure.)
fn unlock_costs() {
    let Some((f, _)) = crate::stepped::try_unlock() else {
        println!("# bench: no vDSO try_unlock in this kernel: no unlock figure");
        return;
    };
    // SAFETY: the vDSO's function of this signature.
    let f: extern "C" fn(*mut u32, u32, *mut u64) -> u32 = unsafe { std::mem::transmute(f) };
    let mem = sys::private_anon(4096);
    // A robust list head of our own at `mem`, the mutex's word at +0x100, its entry at +0x120.
    let (head, word, entry) = (mem, mem + 0x100, mem + 0x120);
    sys::write_usize(head, head);
    sys::write_usize(head + 8, (word as isize - entry as isize) as usize);
    sys::write_usize(head + 16, 0);
    let slot = head + 16;
    // In a child of its own, whose robust list head this one replaces.
    let pid = sys::fork_with(|| {
        if sys::set_robust_list(head, crate::list::HEAD_LEN).is_err() {
            return 1;
        }
        unlock_rounds(word, entry, slot, f);
        0
    });
    assert!(
        sys::exited_ok(sys::wait_pid(pid)),
        "the unlock bench failed"
    );
}

fn unlock_rounds(
    word: usize,
    entry: usize,
    slot: usize,
    f: extern "C" fn(*mut u32, u32, *mut u64) -> u32,
) {
    let tid = sys::gettid();
    let rows = interleave(
        ROUNDS,
        K,
        &mut [
            &mut null_syscall,
            &mut || lock_unlock(word, entry, slot, tid, false, None),
            &mut || lock_unlock(word, entry, slot, tid, false, Some(f)),
            &mut || lock_unlock(word, entry, slot, tid, true, None),
            &mut || lock_unlock(word, entry, slot, tid, true, Some(f)),
        ],
    );
    emit(
        "unlock",
        "",
        &rows,
        &[
            "null",
            "classic",
            "merged",
            "classic_contended",
            "merged_contended",
        ],
    );
}

/// The figures, in the order they run, by the names `rf.bench=` selects them with.
const FIGURES: [(&str, &str); 9] = [
    ("cleanup", "cleanup vs null syscall"),
    ("threads", "threads of the caller"),
    ("processes", "processes on a memfd"),
    ("unrelated", "unrelated tasks"),
    ("exit", "exit walk, module vs built-in"),
    (
        "churn",
        "thread start and exit against the threads of the process",
    ),
    ("unmap", "unmapping shared memory, module / built-in"),
    ("preload", "preload library, with / without"),
    ("unlock", "robust unlock, classic vs merged"),
];

/// Runs every figure, or those named in `only` (comma-separated: a quicker run while working
/// on one; `make bench` runs them all).
pub fn main(module: &str, only: Option<&str>) -> i32 {
    println!(
        "# bench: timing with the TSC, {:.3} ticks/ns; the kernel's clocksource is {}",
        ticks_per_ns(),
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default()
            .trim()
    );
    set_walker(module, true);
    for (name, what) in FIGURES {
        if only.is_some_and(|o| !o.split(',').any(|n| n == name)) {
            continue;
        }
        println!("# bench: {}", what);
        match name {
            "cleanup" => cleanup_vs_null(),
            "threads" => threads_scaling(),
            "processes" => processes_scaling(),
            "unrelated" => unrelated_tasks(),
            "exit" => exit_walk(module),
            "churn" => thread_churn(module),
            "unmap" => unmap_cost(module),
            "preload" => preload_overhead(),
            _ => unlock_costs(),
        }
    }
    println!("# bench: done");
    0
}
