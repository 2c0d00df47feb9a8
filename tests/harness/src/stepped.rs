//! The race reproduced by stepping the unlocking thread, for each way of unlocking a robust
//! mutex: glibc's classic sequence, the same plus `cleanup_robust_list()` at destroy, and the
//! sequence mainline merged (vDSO `try_unlock`, `FUTEX_ROBUST_UNLOCK` when contended).
//!
//! The holder is a `CLONE_VM` sibling (same memory, its own thread group, so the test can trace
//! it) that owns a robust mutex, with `list_op_pending` pointing at it as glibc sets it before
//! unlocking. The test single-steps its unlock, one instruction at a time, and stops it at the
//! first instruction boundary where the futex word is released while `list_op_pending` still
//! points at it: the window of the race. If there is none, it stops it when the unlock is done.
//! Then the memory is destroyed and reused (cleaning first, for the second way), and the holder
//! is killed: its exit walk must leave the reused memory alone.
//!
//! With the merged sequence the kernel closes the window: a signal (here the single-step trap)
//! that interrupts the thread between the vDSO's compare-and-exchange and its clearing of
//! `list_op_pending` makes the kernel clear it on the way back to user space
//! (`futex_fixup_robust_unlock()`). The test checks that it stepped through that point.

use crate::cleanup::{munmap_setup, shared_setup};
use crate::holder::Control;
use crate::list::HEAD_LEN;
use crate::sys::{self, Shared, FUTEX_WAITERS};
use crate::Ctx;
use std::sync::atomic::{AtomicU32, Ordering};

type R = Result<(), String>;

/// `FUTEX_ROBUST_UNLOCK` (uapi/linux/futex.h of 7.3): `futex(FUTEX_WAKE | FUTEX_ROBUST_UNLOCK,
/// uaddr, nr, NULL, pop)` releases the word, clears `*pop`, then wakes.
pub const FUTEX_ROBUST_UNLOCK: i32 = 512;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// The ELF section type of a dynamic symbol table (elf.h; not in the libc crate).
const SHT_DYNSYM: u32 = 11;
/// Instructions stepped at most (the unlock takes a few dozen).
const MAX_STEPS: usize = 10_000;

/// Makes the memory of a round: returns the futex word and the function that destroys and
/// reuses it (given the holder's TID, which it writes all over the new contents).
type Setup = fn() -> (usize, Box<dyn Fn(u32)>);

/// How the holder unlocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unlock {
    /// glibc 2.36's robust unlock: exchange the word with 0, wake if it had waiters, then
    /// clear `list_op_pending`.
    Classic,
    /// The merged sequence: `__vdso_futex_robust_list64_try_unlock(word, tid, &pending)`, and
    /// if the word was not just the TID (waiters), `FUTEX_WAKE | FUTEX_ROBUST_UNLOCK`.
    Merged,
    /// The merged sequence with a copy of the vDSO's instructions in the harness's own text,
    /// where the kernel does not fix up an interrupted unlock: the window is back.
    MergedCopy,
}

/// `__vdso_futex_robust_list64_try_unlock()`, instruction for instruction
/// (arch/x86/entry/vdso/common/vfutex.c of 7.3), but outside the vDSO.
#[unsafe(naked)]
extern "C" fn try_unlock_copy(_lock: *mut u32, _tid: u32, _pop: *mut u64) -> u32 {
    core::arch::naked_asm!(
        "mov eax, esi",
        "xor ecx, ecx",
        "lock cmpxchg dword ptr [rdi], ecx",
        "jnz 2f",
        "mov qword ptr [rdx], rcx",
        "2:",
        "ret",
    )
}

/// The address and size of the vDSO's function `name`, if the running kernel's vDSO exports it.
pub fn vdso_symbol(name: &str) -> Option<(usize, usize)> {
    // SAFETY: no preconditions; 0 if there is no vDSO.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if base == 0 {
        return None;
    }
    // SAFETY: the vDSO is a complete ELF image mapped readable at `base`, sections included;
    // only its headers, symbol table and string table are read, at offsets it gives.
    unsafe {
        let eh = &*(base as *const libc::Elf64_Ehdr);
        let phs = std::slice::from_raw_parts(
            (base + eh.e_phoff as usize) as *const libc::Elf64_Phdr,
            eh.e_phnum as usize,
        );
        let load = phs.iter().find(|p| p.p_type == libc::PT_LOAD)?;
        let shs = std::slice::from_raw_parts(
            (base + eh.e_shoff as usize) as *const libc::Elf64_Shdr,
            eh.e_shnum as usize,
        );
        let dynsym = shs.iter().find(|s| s.sh_type == SHT_DYNSYM)?;
        let strtab = shs.get(dynsym.sh_link as usize)?;
        let syms = std::slice::from_raw_parts(
            (base + dynsym.sh_offset as usize) as *const libc::Elf64_Sym,
            dynsym.sh_size as usize / std::mem::size_of::<libc::Elf64_Sym>(),
        );
        syms.iter().find_map(|s| {
            let n = std::ffi::CStr::from_ptr(
                (base + strtab.sh_offset as usize + s.st_name as usize) as *const libc::c_char,
            );
            (s.st_value != 0 && n.to_bytes() == name.as_bytes()).then(|| {
                (
                    base + (s.st_value - load.p_vaddr) as usize,
                    s.st_size as usize,
                )
            })
        })
    }
}

/// The merged sequence's uncontended unlock (address, size), if this kernel has it.
pub fn try_unlock() -> Option<(usize, usize)> {
    vdso_symbol("__vdso_futex_robust_list64_try_unlock")
}

struct HolderArgs {
    ctl: *const Control,
    word: usize,
    unlock: Unlock,
    contended: bool,
    try_unlock: usize,
}

fn raw_stop_self() {
    // SAFETY: raw system calls on this task only.
    unsafe {
        libc::syscall(
            libc::SYS_kill,
            libc::syscall(libc::SYS_getpid),
            libc::SIGSTOP,
        )
    };
}

/// The holder: owns the lock, asks to be traced, stops; once resumed, unlocks and stops again.
/// Raw system calls and plain memory accesses only (it shares the test's memory, not its
/// thread-local state).
extern "C" fn holder_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the `HolderArgs` of `step_round`, alive until the holder is reaped.
    let a = unsafe { &*(arg as *const HolderArgs) };
    // SAFETY: the control page outlives the holder.
    let ctl = unsafe { &*a.ctl };
    let tid = sys::gettid();
    if sys::set_robust_list(ctl.head(0), HEAD_LEN).is_err() {
        return 2;
    }
    sys::write_u32(a.word, tid | if a.contended { FUTEX_WAITERS } else { 0 });
    ctl.set_ready(0, tid);
    // SAFETY: makes the task that created this one its tracer.
    if unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) } != 0 {
        return 3;
    }
    raw_stop_self();
    let slot = ctl.slot(0);
    match a.unlock {
        Unlock::Classic => {
            // SAFETY: `word` is an aligned u32 of shared memory, accessed atomically by all.
            let old = unsafe { AtomicU32::from_ptr(a.word as *mut u32) }.swap(0, Ordering::Release);
            if old & FUTEX_WAITERS != 0 {
                let _ = sys::futex_wake(a.word, 1);
            }
            sys::write_usize(slot, 0);
        }
        Unlock::Merged | Unlock::MergedCopy => {
            // SAFETY: `try_unlock` is the vDSO's function of this signature, or its copy.
            let f: extern "C" fn(*mut u32, u32, *mut u64) -> u32 =
                unsafe { std::mem::transmute(a.try_unlock) };
            if f(a.word as *mut u32, tid, slot as *mut u64) != tid {
                // SAFETY: a futex call on our own word and pending slot.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        a.word,
                        libc::FUTEX_WAKE | FUTEX_ROBUST_UNLOCK,
                        1,
                        0,
                        slot,
                        0,
                    )
                };
            }
        }
    }
    raw_stop_self();
    // SAFETY: ends this task only.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    0
}

/// Where the stepping of the unlock stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The word was released while `list_op_pending` still pointed at it.
    Window,
    /// The unlock completed without such a point.
    Unlocked,
}

/// Waits for the traced `pid` to stop; returns the stop signal.
fn wait_stop(pid: libc::pid_t) -> Result<i32, String> {
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    if r != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFSTOPPED(status) {
        return Err(format!("holder did not stop: status {:#x}", status));
    }
    Ok(libc::WSTOPSIG(status))
}

fn rip(pid: libc::pid_t) -> Result<usize, String> {
    // SAFETY: all-zero is a valid `user_regs_struct`; PTRACE_GETREGS fills it.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our tracee, stopped; `regs` is a valid out pointer.
    if unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs) } != 0 {
        return Err(format!(
            "PTRACE_GETREGS: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(regs.rip as usize)
}

/// Steps the unlock of holder `pid` (stopped before it). Returns where it stopped, and how many
/// steps stopped inside `try_unlock` (the range `f`) with the word already released.
fn step_unlock(
    pid: libc::pid_t,
    word: usize,
    slot: usize,
    tid: u32,
    f: std::ops::Range<usize>,
) -> Result<(Stop, usize), String> {
    let mut released_inside = 0;
    for _ in 0..MAX_STEPS {
        // SAFETY: `pid` is our stopped tracee; no signal is injected.
        if unsafe { libc::ptrace(libc::PTRACE_SINGLESTEP, pid, 0, 0) } != 0 {
            return Err(format!(
                "PTRACE_SINGLESTEP: {}",
                std::io::Error::last_os_error()
            ));
        }
        match wait_stop(pid)? {
            libc::SIGTRAP => {}
            libc::SIGSTOP => return Ok((Stop::Unlocked, released_inside)),
            s => return Err(format!("holder stopped by signal {}", s)),
        }
        let released = sys::read_u32(word) & FUTEX_TID_MASK != tid;
        if released && sys::read_usize(slot) != 0 {
            return Ok((Stop::Window, released_inside));
        }
        let ip = rip(pid)?;
        if released && f.contains(&ip) {
            released_inside += 1;
        }
    }
    Err(format!(
        "the unlock took more than {} instructions",
        MAX_STEPS
    ))
}

/// The outcome of one round.
struct Round {
    stop: Stop,
    released_inside: usize,
    /// The reused memory was changed by the holder's exit walk: (value written, value found).
    corrupted: Option<(u32, u32)>,
}

/// One round: a holder that owns the word returned by `setup`, stepped through `unlock`; then,
/// if `clean`, cleanup_robust_list() on the word; then the reuse; then the holder's death.
fn step_round(unlock: Unlock, clean: bool, contended: bool, setup: Setup) -> Result<Round, String> {
    let (f, size) = match unlock {
        Unlock::Merged => try_unlock().ok_or("no __vdso_futex_robust_list64_try_unlock")?,
        Unlock::MergedCopy => (try_unlock_copy as *const () as usize, 0),
        Unlock::Classic => (0, 0),
    };
    let (word, reuse) = setup();
    let ctl = Control::new();
    ctl.prepare(0, word, false);
    let args = HolderArgs {
        ctl: &ctl,
        word,
        unlock,
        contended,
        try_unlock: f,
    };
    let stack = Shared::new(64 * 1024);
    // SAFETY: the sibling runs `holder_main` on its own stack, with `args` and the memory it
    // uses alive until it is reaped below.
    let pid = unsafe {
        libc::clone(
            holder_main,
            (stack.base + stack.len) as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            &args as *const HolderArgs as *mut libc::c_void,
        )
    };
    if pid <= 0 {
        return Err(format!("clone: {}", std::io::Error::last_os_error()));
    }
    let r = (|| -> Result<(Stop, usize, u32), String> {
        let first = wait_stop(pid)?;
        if first != libc::SIGSTOP {
            return Err(format!("holder's first stop: signal {}", first));
        }
        let tid = ctl.wait_ready(0)?;
        let (stop, inside) = step_unlock(pid, word, ctl.slot(0), tid, f..f + size)?;
        if clean {
            let n = sys::cleanup_robust_list(word, 4, 0).map_err(|e| e.to_string())?;
            let want = (stop == Stop::Window) as i64;
            if n != want {
                return Err(format!(
                    "cleanup_robust_list cleared {} slots, want {}",
                    n, want
                ));
            }
        }
        reuse(tid);
        Ok((stop, inside, tid))
    })();
    // SAFETY: kills our own traced child, stopped or not.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: reaps it; `status` is a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    let (stop, released_inside, tid) = r?;
    let now = sys::read_u32(word);
    Ok(Round {
        stop,
        released_inside,
        corrupted: (now != tid).then_some((tid, now)),
    })
}

const ROUNDS: usize = 5;

/// `ROUNDS` rounds; each must stop as `want` and corrupt the reused memory or not.
fn rounds(
    unlock: Unlock,
    clean: bool,
    contended: bool,
    setup: Setup,
    want: Stop,
    corrupts: bool,
) -> R {
    for i in 0..ROUNDS {
        let r = step_round(unlock, clean, contended, setup)?;
        if r.stop != want {
            return Err(format!(
                "round {}: stopped {:?}, want {:?}",
                i, r.stop, want
            ));
        }
        if r.corrupted.is_some() != corrupts {
            return Err(format!(
                "round {}: reused memory {} (written, found: {:?})",
                i,
                if corrupts { "intact" } else { "corrupted" },
                r.corrupted
            ));
        }
        // The merged uncontended unlock was interrupted inside the vDSO's critical section,
        // after the release: the kernel's fixup, not the vDSO, cleared list_op_pending.
        if unlock == Unlock::Merged && !contended && r.released_inside == 0 {
            return Err(format!("round {}: no step stopped inside try_unlock", i));
        }
    }
    Ok(())
}

pub fn munmap_classic(_: &Ctx) -> R {
    rounds(
        Unlock::Classic,
        false,
        false,
        munmap_setup,
        Stop::Window,
        true,
    )
}

pub fn munmap_classic_cleanup(_: &Ctx) -> R {
    rounds(
        Unlock::Classic,
        true,
        false,
        munmap_setup,
        Stop::Window,
        false,
    )
}

pub fn munmap_merged(_: &Ctx) -> R {
    rounds(
        Unlock::Merged,
        false,
        false,
        munmap_setup,
        Stop::Unlocked,
        false,
    )
}

pub fn shared_classic(_: &Ctx) -> R {
    rounds(
        Unlock::Classic,
        false,
        false,
        shared_setup,
        Stop::Window,
        true,
    )
}

pub fn shared_classic_cleanup(_: &Ctx) -> R {
    rounds(
        Unlock::Classic,
        true,
        false,
        shared_setup,
        Stop::Window,
        false,
    )
}

pub fn shared_merged(_: &Ctx) -> R {
    rounds(
        Unlock::Merged,
        false,
        false,
        shared_setup,
        Stop::Unlocked,
        false,
    )
}

/// The merged sequence with waiters: the vDSO's exchange fails, the kernel unlocks.
pub fn merged_contended(_: &Ctx) -> R {
    rounds(
        Unlock::Merged,
        false,
        true,
        shared_setup,
        Stop::Unlocked,
        false,
    )
}

/// The control experiment: the same instructions outside the vDSO leave the window open, and
/// the stepping finds it (so it would find it in the vDSO if the kernel did not fix it up).
pub fn merged_copy_has_window(_: &Ctx) -> R {
    rounds(
        Unlock::MergedCopy,
        false,
        false,
        shared_setup,
        Stop::Window,
        true,
    )
}

/// `robust-harness stepped LABEL`: the three ways side by side, for `make demo`.
pub fn demo(label: &str, module: bool) -> R {
    let ways: &[(&str, Unlock, bool)] = &[
        ("classic glibc unlock", Unlock::Classic, false),
        ("classic + cleanup_robust_list()", Unlock::Classic, true),
        (
            "FUTEX_ROBUST_UNLOCK + vDSO try_unlock",
            Unlock::Merged,
            false,
        ),
    ];
    for (name, setup) in [
        ("munmap + mmap at the same address", munmap_setup as Setup),
        ("reuse inside a long-lived shared mapping", shared_setup),
    ] {
        for &(way, unlock, clean) in ways {
            if clean && !module {
                continue;
            }
            if unlock == Unlock::Merged && try_unlock().is_none() {
                println!("[stepped/{}] {}: {}: not in this kernel", label, name, way);
                continue;
            }
            let mut corrupted = 0;
            let mut window = 0;
            for _ in 0..ROUNDS {
                let r = step_round(unlock, clean, false, setup)?;
                corrupted += r.corrupted.is_some() as usize;
                window += (r.stop == Stop::Window) as usize;
            }
            println!(
                "[stepped/{}] {}: {}: killed in the window in {}/{} rounds, reused memory \
                 corrupted in {}/{}",
                label, name, way, window, ROUNDS, corrupted, ROUNDS
            );
        }
    }
    Ok(())
}
