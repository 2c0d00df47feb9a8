//! Userspace test harness for the robust futex exit walk and cleanup_robust_list(2).
//!
//! Runs in the test guest as a static binary and prints KTAP (one test per case), so that the
//! kernel tree's `kunit.py parse` reads its results. Each case runs in a forked process of its
//! own, in its own process group, with a time limit: a crash, a hang or a failed check fails that
//! case only.
//!
//! Usage: robust-harness --walker c|rust [--compat32 PATH] [--filter SUBSTRING]
//!        robust-harness demo LABEL
//!        robust-harness race LABEL [with-cleanup]
//!        robust-harness switch-walkers MODULE.ko COMPAT32 [ROUNDS]
//!        robust-harness fuzz MODULE.ko COMPAT32 SEEDS [self]
//!        robust-harness fuzz-server FD  (run by fuzz)
//!        robust-harness index-at-load MODULE.ko
//!        robust-harness calls-during-load MODULE.ko [ROUNDS]
//!        robust-harness many-mappers [COUNT]
//!        robust-harness bench MODULE.ko
//!
//! `--walker` names the walker the kernel is expected to use (the built-in C one, or the
//! robust_futex module's); the same cases, with the same expectations, run for both.

/// `ensure!(cond, fmt...)`: fails the case with the message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// `ensure_eq!(left, right)`: fails the case showing both values unless they are equal.
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {{
        let (l, r) = ($left, $right);
        ensure!(
            l == r,
            "{} == {}: {:#x?} != {:#x?}",
            stringify!($left),
            stringify!($right),
            l,
            r
        );
    }};
}

mod bench;
mod cases;
mod cleanup;
mod fuse;
mod fuzz;
mod glibc;
mod hardening;
mod holder;
mod index;
mod list;
mod preload;
mod stepped;
mod stress;
mod sys;
mod unmap;

use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Walker {
    C,
    Rust,
}

pub struct Ctx {
    pub walker: Walker,
    pub compat32: String,
    /// `--scan`: the module was loaded with `inject_index_lost=1`, so that every
    /// `cleanup_robust_list()` call walks every thread (the fallback of an incomplete index).
    pub scan: bool,
}

/// The cases that `--scan` runs: those of `cleanup_robust_list()`, and the two where another
/// process's head cannot be read (a FUSE page, a locked mm).
fn runs_in_scan(name: &str) -> bool {
    name.starts_with("cleanup_")
        || name == "hardening_fuse_head_never_served"
        || name == "hardening_locked_mm_given_up_once"
}

/// Which kernels a case is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Both walkers, with the same expectations: the exit walk.
    Any,
    /// The robust_futex module: cleanup_robust_list() is implemented.
    Module,
    /// The stock kernel path: no module loaded.
    NoModule,
    /// Both walkers, on a kernel with the fix mainline merged (the vDSO's robust try_unlock).
    MergedFix,
}

pub struct Case {
    pub name: &'static str,
    pub run: fn(&Ctx) -> Result<(), String>,
    pub needs: Needs,
}

impl Case {
    pub const fn any(name: &'static str, run: fn(&Ctx) -> Result<(), String>) -> Case {
        Case {
            name,
            run,
            needs: Needs::Any,
        }
    }

    pub const fn module(name: &'static str, run: fn(&Ctx) -> Result<(), String>) -> Case {
        Case {
            name,
            run,
            needs: Needs::Module,
        }
    }

    pub const fn no_module(name: &'static str, run: fn(&Ctx) -> Result<(), String>) -> Case {
        Case {
            name,
            run,
            needs: Needs::NoModule,
        }
    }

    pub const fn merged(name: &'static str, run: fn(&Ctx) -> Result<(), String>) -> Case {
        Case {
            name,
            run,
            needs: Needs::MergedFix,
        }
    }

    fn runs_with(&self, walker: Walker) -> bool {
        match self.needs {
            Needs::Any => true,
            Needs::Module => walker == Walker::Rust,
            Needs::NoModule => walker == Walker::C,
            Needs::MergedFix => stepped::try_unlock().is_some(),
        }
    }
}

const CASE_TIMEOUT: Duration = Duration::from_secs(90);

fn usage() -> ! {
    eprintln!(
        "usage: robust-harness --walker c|rust [--compat32 PATH] [--filter SUBSTRING] [--scan]"
    );
    std::process::exit(2);
}

/// The file descriptor number given as the second argument (modes run by the harness itself).
fn fd_arg() -> i32 {
    std::env::args()
        .nth(2)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| usage())
}

/// Runs one case in a child process; returns None on success, or the reason of the failure.
fn run_case(ctx: &Ctx, case: &Case) -> Option<String> {
    let _ = std::io::stdout().flush();
    let pid = sys::fork_with(|| {
        // SAFETY: puts the case in a process group of its own, to be killed as a whole.
        unsafe { libc::setpgid(0, 0) };
        match (case.run)(ctx) {
            Ok(()) => 0,
            Err(msg) => {
                println!("# {}: {}", case.name, msg);
                let _ = std::io::stdout().flush();
                1
            }
        }
    });
    let deadline = Instant::now() + CASE_TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if sys::exited_ok(status) {
                None
            } else if libc::WIFSIGNALED(status) {
                Some(format!("killed by signal {}", libc::WTERMSIG(status)))
            } else {
                Some(format!("exit status {}", libc::WEXITSTATUS(status)))
            };
        }
        if Instant::now() > deadline {
            dump_group(pid);
            // SAFETY: kills the case's process group, then reaps the case.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            sys::wait_pid(pid);
            return Some(format!("timed out after {:?}", CASE_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Prints where every thread of the process group `pgrp` is, in the kernel, for a hung case.
fn dump_group(pgrp: libc::pid_t) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().to_string();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid)).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(2) != Some(&pgrp.to_string().as_str()) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", pid)) else {
            continue;
        };
        for t in tasks.flatten() {
            let dir = t.path();
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let name = t.file_name().to_string_lossy().to_string();
            println!("# hung task {}/{}: {}", pid, name, read("stat").trim());
            for line in read("stack").lines() {
                println!("#   {}", line);
            }
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("demo") {
        let walker = std::env::args().nth(2).unwrap_or_default();
        if let Err(e) = glibc::demo(&walker) {
            println!("[demo/{}] FAILED: {}", walker, e);
            std::process::exit(1);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("race") {
        let label = std::env::args().nth(2).unwrap_or_default();
        let clean = std::env::args().nth(3).as_deref() == Some("with-cleanup");
        if let Err(e) = cleanup::demo(&label, clean) {
            println!("[race/{}] FAILED: {}", label, e);
            std::process::exit(1);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("unmap-demo") {
        let label = std::env::args().nth(2).unwrap_or_default();
        let module = std::env::args().nth(3).as_deref() == Some("with-module");
        if let Err(e) = unmap::demo(&label, module) {
            println!("[unmap/{}] FAILED: {}", label, e);
            std::process::exit(1);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("stepped") {
        let label = std::env::args().nth(2).unwrap_or_default();
        let module = std::env::args().nth(3).as_deref() == Some("with-module");
        if let Err(e) = stepped::demo(&label, module) {
            println!("[stepped/{}] FAILED: {}", label, e);
            std::process::exit(1);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("hold-memfd") {
        std::process::exit(index::hold_memfd(fd_arg()));
    }
    if std::env::args().nth(1).as_deref() == Some("bench") {
        let module = std::env::args().nth(2).unwrap_or_else(|| usage());
        let only = std::env::args().nth(3);
        std::process::exit(bench::main(&module, only.as_deref()));
    }
    if std::env::args().nth(1).as_deref() == Some("index-at-load") {
        let module = std::env::args().nth(2).unwrap_or_else(|| usage());
        std::process::exit(index::at_load(&module));
    }
    if std::env::args().nth(1).as_deref() == Some("calls-during-load") {
        let module = std::env::args().nth(2).unwrap_or_else(|| usage());
        let rounds = std::env::args()
            .nth(3)
            .map(|r| r.parse().unwrap_or_else(|_| usage()))
            .unwrap_or(20);
        std::process::exit(hardening::calls_during_load(&module, rounds));
    }
    if std::env::args().nth(1).as_deref() == Some("many-mappers") {
        let count = std::env::args()
            .nth(2)
            .map(|c| c.parse().unwrap_or_else(|_| usage()))
            .unwrap_or(hardening::MANY_DEFAULT);
        std::process::exit(hardening::many_mappers(count));
    }
    if std::env::args().nth(1).as_deref() == Some("fuzz-server") {
        std::process::exit(fuzz::server(fd_arg()));
    }
    if std::env::args().nth(1).as_deref() == Some("fuzz") {
        let arg = |i: usize| std::env::args().nth(i).unwrap_or_else(|| usage());
        let seeds = arg(4).parse().unwrap_or_else(|_| usage());
        let against_self = std::env::args().nth(5).as_deref() == Some("self");
        std::process::exit(fuzz::main(&arg(2), &arg(3), seeds, against_self));
    }
    if std::env::args().nth(1).as_deref() == Some("switch-walkers") {
        let module = std::env::args().nth(2).unwrap_or_else(|| usage());
        let compat32 = std::env::args().nth(3).unwrap_or_else(|| usage());
        let rounds = std::env::args()
            .nth(4)
            .and_then(|r| r.parse().ok())
            .unwrap_or(50);
        std::process::exit(stress::main(&module, &compat32, rounds));
    }
    let mut walker = None;
    let mut compat32 = "/compat32".to_string();
    let mut filter = String::new();
    let mut scan = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--walker" => {
                walker = match args.next().as_deref() {
                    Some("c") => Some(Walker::C),
                    Some("rust") => Some(Walker::Rust),
                    _ => usage(),
                }
            }
            "--compat32" => compat32 = args.next().unwrap_or_else(|| usage()),
            "--filter" => filter = args.next().unwrap_or_else(|| usage()),
            "--scan" => scan = true,
            _ => usage(),
        }
    }
    let ctx = Ctx {
        walker: walker.unwrap_or_else(|| usage()),
        compat32,
        scan,
    };
    let cases: Vec<&Case> = cases::ALL
        .iter()
        .filter(|c| c.name.contains(&filter) && c.runs_with(ctx.walker))
        .filter(|c| !scan || runs_in_scan(c.name))
        .collect();

    println!("KTAP version 1");
    println!("# robust-harness: walker {:?}", ctx.walker);
    if scan {
        // Every case of this run counts on the fallback: a module loaded without
        // `inject_index_lost` would pass them through the index, and test nothing new.
        match cases::counter("index_incomplete") {
            Ok(1) => println!("# --scan: the index is incomplete, every call walks every thread"),
            got => {
                println!("1..1");
                println!(
                    "# --scan: debugfs index_incomplete is {:?}, not 1: load the module with \
                     inject_index_lost=1",
                    got
                );
                println!("not ok 1 index_lost");
                std::process::exit(1);
            }
        }
    }
    println!("1..{}", cases.len());
    let mut failed = 0;
    for (i, case) in cases.iter().enumerate() {
        let start = Instant::now();
        match run_case(&ctx, case) {
            None => println!("ok {} {}", i + 1, case.name),
            Some(why) => {
                failed += 1;
                println!("# {}: {}", case.name, why);
                println!("not ok {} {}", i + 1, case.name);
            }
        }
        println!("# {} took {} ms", case.name, start.elapsed().as_millis());
    }
    let _ = std::io::stdout().flush();
    std::process::exit((failed > 0) as i32);
}
