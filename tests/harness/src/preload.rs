//! The preload library (preload/) on unmodified glibc programs: the distribution's dynamic
//! loader and glibc, copied into the guest, run the programs of preload/tests with and without
//! `LD_PRELOAD`.

use crate::cases::counter;
use crate::Ctx;
use std::process::Command;

type R = Result<(), String>;

const DIR: &str = "/preload";
const LIBRARY: &str = "/preload/librobust_cleanup.so";

/// What a program printed, and whether it exited with 0.
pub struct Run {
    pub ok: bool,
    /// The exit code, if it exited.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `/preload/PROGRAM ARGS` with `LD_PRELOAD` set to the library if `preload`, and the
/// extra environment `env`.
pub fn run(
    program: &str,
    args: &[&str],
    preload: bool,
    env: &[(&str, &str)],
) -> Result<Run, String> {
    let mut cmd = Command::new(format!("{}/{}", DIR, program));
    cmd.args(args).env_remove("LD_PRELOAD");
    if preload {
        cmd.env("LD_PRELOAD", LIBRARY);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("{} {:?}: {}", program, args, e))?;
    let run = Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for line in run.stdout.lines().chain(run.stderr.lines()) {
        println!("#   {} {}: {}", program, args.join(" "), line);
    }
    Ok(run)
}

/// A self-checking program's run: exit 0, no failed check, nothing on stderr.
fn passes(program: &str, args: &[&str], preload: bool) -> R {
    let r = run(program, args, preload, &[])?;
    ensure!(
        r.ok && !r.stdout.contains("not ok") && r.stderr.is_empty(),
        "{} {:?} (LD_PRELOAD: {}) failed",
        program,
        args,
        preload
    );
    Ok(())
}

/// Each interposed function makes the calls it should (counted by the module), returns what
/// glibc returns and leaves errno as glibc sets it; without the library, no call.
pub fn calls(_: &Ctx) -> R {
    passes("calls", &["with"], true)?;
    passes("calls", &["without"], false)
}

/// On a glibc whose mutex layout it does not know, the library says so once and does nothing.
pub fn unknown_glibc(_: &Ctx) -> R {
    let r = run(
        "calls",
        &["without"],
        true,
        &[("ROBUST_CLEANUP_GLIBC_VERSION", "2.99")],
    )?;
    ensure!(r.ok && !r.stdout.contains("not ok"), "calls failed");
    let said = r.stderr.matches("does not know").count();
    ensure_eq!(said, 1);
    Ok(())
}

/// `race MODE ROUNDS`: the corrupted rounds it reports.
fn race(mode: &str, rounds: usize, preload: bool) -> Result<usize, String> {
    let r = run("race", &[mode, &rounds.to_string()], preload, &[])?;
    ensure!(r.ok, "race {} failed", mode);
    let tail = format!(" of {}", rounds);
    r.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("corrupted "))
        .find_map(|l| l.strip_suffix(&tail))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("race {}: no result", mode))
}

const ROUNDS: usize = 10;

/// The reproducer corrupts every round without the library, none with it, and with it each
/// round's pending slot was cleared by the call the library made.
fn race_case(mode: &str) -> R {
    ensure_eq!(race(mode, ROUNDS, false)?, ROUNDS);
    let before = counter("cleanup_cleared")?;
    ensure_eq!(race(mode, ROUNDS, true)?, 0);
    ensure_eq!(counter("cleanup_cleared")? - before, ROUNDS as u64);
    Ok(())
}

pub fn race_destroy(_: &Ctx) -> R {
    race_case("destroy")
}

pub fn race_munmap(_: &Ctx) -> R {
    race_case("munmap")
}

/// Without the module the library probes, finds ENOSYS, and stays out of the way: the programs
/// behave as without it (the race included).
pub fn without_module(_: &Ctx) -> R {
    passes("calls", &["nomodule"], true)?;
    ensure_eq!(race("destroy", 3, true)?, 3);
    Ok(())
}

/// LMDB (Debian's liblmdb0) keeps robust mutexes in its MAP_SHARED lock file. Writers and
/// readers killed inside transactions, recovery through its API, environments closed (the lock
/// file unmapped) and reopened: under the library it prints exactly what it prints without,
/// and the module counted one call per close (the library's munmap of the lock file) besides
/// the library's probe at load.
pub fn lmdb(_: &Ctx) -> R {
    const LMDB_ROUNDS: u64 = 3;
    let rounds = LMDB_ROUNDS.to_string();
    let before = counter("cleanup_calls")?;
    let without = run("lmdb", &["/tmp/lmdb-without", &rounds], false, &[])?;
    let between = counter("cleanup_calls")?;
    let with = run("lmdb", &["/tmp/lmdb-with", &rounds], true, &[])?;
    let after = counter("cleanup_calls")?;
    ensure!(without.ok && with.ok, "lmdb failed");
    ensure!(
        without.stdout.contains("killed-writer-2: not found"),
        "lmdb did not run its rounds"
    );
    ensure_eq!(with.stdout, without.stdout);
    ensure_eq!(between - before, 0);
    // One call per close, and the library's probe at load.
    ensure_eq!(after - between, LMDB_ROUNDS + 1);
    Ok(())
}

/// `preload/tests/hardening.c`: munmap(), mremap() (a move), shmdt() and mmap(MAP_FIXED) of
/// recorded shared memory while another thread maps new shared memory at the address freed,
/// from inside the call (the program's own pthread_mutex_lock()/unlock(), which the library's
/// calls reach, open the window): the library still knows the new mapping (its munmap() makes
/// a call). Without the library, no call.
pub fn hardening_window(_: &Ctx) -> R {
    passes("hardening", &["window", "with"], true)?;
    passes("hardening", &["window", "without"], false)
}

/// A signal handler maps and unmaps shared memory while its thread holds the library's lock
/// (held longer by the program's unlock hook): no deadlock, the signal waits for the lock's end.
pub fn hardening_signal(_: &Ctx) -> R {
    passes("hardening", &["signal"], true)
}

/// `_Fork()` (and `fork()`) while another thread holds the library's lock: each child's first
/// shared mmap() does not wait for a lock no thread of it will release.
pub fn hardening_fork(_: &Ctx) -> R {
    passes("hardening", &["fork"], true)
}

/// An allocator's `pthread_atfork()` handlers, registered before the library's (so the library's
/// prepare handler takes its lock first): a thread holding the allocator's lock unmaps private
/// memory between two recorded shared mappings while another forks. The library took its lock
/// for any range within the span of its record, and the two threads deadlocked.
pub fn hardening_atfork(_: &Ctx) -> R {
    passes("hardening", &["atfork"], true)
}

const LIBRARY_SECCOMP: &str = "librobust_cleanup: a seccomp filter is installed; \
                               cleanup_robust_list() is not probed and the library does nothing";

/// A seccomp filter that kills the process on cleanup_robust_list(), installed before exec: the
/// library sees it at load and makes no call (the program destroys robust mutexes and unmaps
/// shared memory, runs to its end, and the filter still kills a child that makes the call). It
/// says so once with ROBUST_CLEANUP_VERBOSE set, and not at all without. (A filter installed
/// after the library loaded is documented as not supported, and not tested.)
pub fn hardening_seccomp(_: &Ctx) -> R {
    const NO_SECCOMP: &str = "this kernel has no seccomp filters";
    for verbose in [true, false] {
        let env: &[(&str, &str)] = if verbose {
            &[("ROBUST_CLEANUP_VERBOSE", "1")]
        } else {
            &[]
        };
        let r = run("hardening", &["seccomp-exec"], true, env)?;
        ensure!(
            !r.stdout.contains(NO_SECCOMP),
            "the test kernel has no CONFIG_SECCOMP_FILTER: nothing tested"
        );
        ensure!(
            r.ok && !r.stdout.contains("not ok"),
            "hardening seccomp-exec (ROBUST_CLEANUP_VERBOSE: {}) failed",
            verbose
        );
        if verbose {
            ensure_eq!(r.stderr.trim_end(), LIBRARY_SECCOMP);
        } else {
            ensure_eq!(r.stderr, "");
        }
    }
    Ok(())
}

/// mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP) of recorded shared memory: the old range stays
/// mapped to the same memory, so no call for it, and the library still knows it (its munmap()
/// makes a call); with MREMAP_FIXED, one call, for what the move replaces.
pub fn hardening_dontunmap(_: &Ctx) -> R {
    passes("hardening", &["dontunmap", "with"], true)?;
    passes("hardening", &["dontunmap", "without"], false)
}
