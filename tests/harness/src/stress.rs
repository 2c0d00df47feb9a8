//! `robust-harness switch-walkers MODULE.ko ROUNDS`: loads and unloads the module ROUNDS times
//! in one thread while processes keep dying with owned robust futexes in another. Every death
//! must be walked (by one walker or the other): no walk may be missed while the hook changes
//! hands, and no exit may call into a module that is going away (that would oops the guest,
//! which the host's log check catches). Prints a one-test KTAP document.

use crate::list::{process_dies, List};
use crate::sys::{self, FUTEX_OWNER_DIED, FUTEX_WAITERS};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// rmmod fails with EAGAIN while an exit holds a reference on the module (it is walking a
/// list with it): retry, as an administrator would.
pub fn unload() -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..2000 {
        match run("rmmod", "robust_futex") {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(format!("{} (2000 tries)", last))
}

fn switch(module: &str, rounds: usize) -> Result<(usize, usize), String> {
    let done = AtomicBool::new(false);
    let l = List::new(4096);
    let (a, b) = (l.entry(0), l.entry(1));
    l.link(&[a, b | 1], 8, 0);
    std::thread::scope(|s| {
        let switcher = s.spawn(|| {
            let r = (|| -> Result<(), String> {
                for _ in 0..rounds {
                    unload()?;
                    run("insmod", module)?;
                }
                Ok(())
            })();
            done.store(true, Ordering::SeqCst);
            r
        });
        let mut deaths = 0;
        while !done.load(Ordering::SeqCst) {
            sys::write_u32(a + 8, 0);
            sys::write_u32(b + 8, 0);
            let st = process_dies(l.head(), &[(a + 8, FUTEX_WAITERS), (b + 8, 0)]);
            if !sys::exited_ok(st) {
                return Err(format!("child status {:#x}", st));
            }
            let (wa, wb) = (sys::read_u32(a + 8), sys::read_u32(b + 8));
            if wa != FUTEX_OWNER_DIED | FUTEX_WAITERS || wb != FUTEX_OWNER_DIED {
                return Err(format!(
                    "death {} not walked: words {:#x} {:#x}",
                    deaths, wa, wb
                ));
            }
            deaths += 1;
        }
        switcher
            .join()
            .map_err(|_| "switcher panicked".to_string())??;
        Ok((rounds, deaths))
    })
}

pub fn main(module: &str, rounds: usize) -> i32 {
    println!("KTAP version 1");
    println!("1..1");
    match switch(module, rounds) {
        Ok((rounds, deaths)) => {
            println!(
                "# {} unload/load rounds, {} deaths, all walked",
                rounds, deaths
            );
            println!("ok 1 hook_switch_under_exits");
            0
        }
        Err(e) => {
            println!("# hook_switch_under_exits: {}", e);
            println!("not ok 1 hook_switch_under_exits");
            1
        }
    }
}
