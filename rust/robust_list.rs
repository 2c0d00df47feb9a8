// SPDX-License-Identifier: GPL-2.0

//! The user-space robust list ABI, parsed once for every user of it.
//!
//! A thread registers a `struct robust_list_head` with `set_robust_list(2)` (or, for a 32-bit
//! task, a `struct compat_robust_list_head`):
//!
//! ```text
//! offset   native (64-bit)          compat (32-bit)
//! 0        list.next      (ulong)   list.next       (u32)
//! 1 word   futex_offset   (long)    futex_offset    (s32)
//! 2 words  list_op_pending (ulong)  list_op_pending (u32)
//! ```
//!
//! Every pointer (`next`, `list_op_pending`) points at a `struct robust_list` entry embedded in a
//! lock; bit 0 flags a PI futex. The futex word of an entry is at `entry + futex_offset`, computed
//! in 32-bit arithmetic for compat lists. The list is circular through `head->list`.
//!
//! User addresses are plain `usize`s here: the walk computes with them (wrapping, masking, 32-bit
//! arithmetic for compat lists) and turns them into a `UserPtr` only to access memory.
//!
//! [`walk`] reproduces the traversal of `exit_robust_list()` / `compat_exit_robust_list()`
//! exactly; what to do with each futex word is up to its caller.

use crate::futex;
use kernel::{
    bindings,
    prelude::*,
    task::cond_resched,
    uaccess::{UserPtr, UserSlice},
};

/// The most entries a walk visits (`ROBUST_LIST_LIMIT`), against long or circular lists.
pub(crate) const ROBUST_LIST_LIMIT: u32 = bindings::ROBUST_LIST_LIMIT;

fn ulong(b: &[u8]) -> usize {
    let mut v = [0u8; core::mem::size_of::<usize>()];
    v.copy_from_slice(b);
    usize::from_ne_bytes(v)
}

fn u32_at(b: &[u8]) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(b);
    u32::from_ne_bytes(v)
}

/// Reads of user memory the parser needs; see [`CurrentMem`].
pub(crate) trait UserMem {
    /// Reads `buf.len()` bytes at `addr`; fails with `EFAULT` if any of them cannot be read.
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result;

    /// Reads a native `unsigned long`.
    fn read_ulong(&self, addr: usize) -> Result<usize> {
        let mut b = [0u8; core::mem::size_of::<usize>()];
        self.read_bytes(addr, &mut b)?;
        Ok(ulong(&b))
    }

    /// Reads a `u32`.
    fn read_u32(&self, addr: usize) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_bytes(addr, &mut b)?;
        Ok(u32_at(&b))
    }
}

/// The current task's user memory: words read with `get_user()`, as the C walker does, and
/// byte ranges with `copy_from_user()`.
///
/// Context: process context with a user `mm`; reads may fault and sleep.
pub(crate) struct CurrentMem;

impl UserMem for CurrentMem {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result {
        UserSlice::new(UserPtr::from_addr(addr), buf.len())
            .reader()
            .read_slice(buf)
    }

    // Single words with `get_user()`, as the C walker reads them.
    #[inline(always)]
    fn read_ulong(&self, addr: usize) -> Result<usize> {
        futex::get_user_ulong(addr)
    }

    #[inline(always)]
    fn read_u32(&self, addr: usize) -> Result<u32> {
        futex::get_user_u32(addr)
    }
}

/// The two layouts of a robust list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abi {
    /// `struct robust_list_head` of a 64-bit task.
    Native,
    /// `struct compat_robust_list_head` of a 32-bit task.
    Compat,
}

impl Abi {
    /// Size of a pointer or `long` in this layout.
    const fn word(self) -> usize {
        match self {
            Abi::Native => core::mem::size_of::<usize>(),
            Abi::Compat => core::mem::size_of::<u32>(),
        }
    }
}

/// A list pointer as stored in user memory, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Address of the `struct robust_list` (bit 0 cleared); 0 for none.
    pub(crate) addr: usize,
    /// Bit 0 of the stored pointer: the lock is a PI futex.
    pub(crate) pi: bool,
}

impl Entry {
    /// Decodes a stored pointer, as `fetch_robust_entry()` (native) or
    /// `compat_fetch_robust_entry()` (a zero-extended `compat_uptr_t`) do.
    pub(crate) const fn decode(raw: usize, abi: Abi) -> Self {
        let raw = match abi {
            Abi::Native => raw,
            Abi::Compat => raw as u32 as usize,
        };
        Entry {
            addr: raw & !1,
            pi: raw & 1 != 0,
        }
    }
}

/// A registered robust list head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// User address of the head; `head->list` is at offset 0.
    pub(crate) addr: usize,
    /// Its layout.
    pub(crate) abi: Abi,
}

impl Head {
    /// Address of `head->list_op_pending`.
    pub(crate) const fn pending_slot(&self) -> usize {
        self.addr.wrapping_add(2 * self.abi.word())
    }

    /// Reads the list pointer stored at `slot` (`next` of an entry or of the head, or
    /// `list_op_pending`).
    #[inline(always)]
    pub(crate) fn fetch_entry(&self, mem: &impl UserMem, slot: usize) -> Result<Entry> {
        Ok(Entry::decode(self.fetch_raw(mem, slot)?, self.abi))
    }

    /// Reads the list pointer stored at `slot` as it is, PI bit included.
    #[inline(always)]
    pub(crate) fn fetch_raw(&self, mem: &impl UserMem, slot: usize) -> Result<usize> {
        match self.abi {
            Abi::Native => mem.read_ulong(slot),
            Abi::Compat => Ok(mem.read_u32(slot)? as usize),
        }
    }

    /// Size of a pointer slot in this layout.
    pub(crate) const fn word_size(&self) -> usize {
        self.abi.word()
    }

    /// Reads `head->futex_offset`, as stored (a compat offset is kept as its 32 bits).
    #[inline(always)]
    pub(crate) fn futex_offset(&self, mem: &impl UserMem) -> Result<usize> {
        let slot = self.addr.wrapping_add(self.abi.word());
        match self.abi {
            Abi::Native => mem.read_ulong(slot),
            Abi::Compat => Ok(mem.read_u32(slot)? as usize),
        }
    }

    /// The futex word of `entry`: `entry + futex_offset`, wrapping in 32 bits for compat lists
    /// (`futex_uaddr()` in `kernel/futex/core.c`).
    pub(crate) const fn futex_word(&self, entry: Entry, futex_offset: usize) -> usize {
        match self.abi {
            Abi::Native => entry.addr.wrapping_add(futex_offset),
            Abi::Compat => (entry.addr as u32).wrapping_add(futex_offset as u32) as usize,
        }
    }
}

/// One futex word the walk hands to its visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Visit {
    /// Address of the entry (its `struct robust_list`).
    pub(crate) entry: usize,
    /// Address of the futex word.
    pub(crate) uaddr: usize,
    /// The entry was flagged as a PI futex.
    pub(crate) pi: bool,
    /// The entry is `list_op_pending` (visited last).
    pub(crate) pending: bool,
}

/// Whether a walk goes on after a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on with the next entry.
    Continue,
    /// Stop the walk at once; `list_op_pending` is not visited.
    Stop,
}

/// Walks the list at `head`, calling `visit` for each futex word, exactly as
/// `exit_robust_list()` does:
///
/// - nothing happens if `head->list.next`, `futex_offset` or `list_op_pending` cannot be read;
/// - the next pointer of an entry is read before the entry is visited; an entry equal to
///   `list_op_pending` is skipped (it is visited last); if the next pointer could not be read,
///   the walk ends after the visit, without visiting `list_op_pending`;
/// - a visit returning [`Flow::Stop`] ends the walk, without visiting `list_op_pending`;
/// - at most [`ROBUST_LIST_LIMIT`] entries are considered, then `list_op_pending` (if not NULL)
///   is visited and the walk ends; its [`Flow`] is ignored.
///
/// Context: process context, may sleep (reads fault pages in; reschedules between entries).
pub(crate) fn walk(mem: &impl UserMem, head: &Head, mut visit: impl FnMut(Visit) -> Flow) {
    let Ok(mut entry) = head.fetch_entry(mem, head.addr) else {
        return;
    };
    let Ok(futex_offset) = head.futex_offset(mem) else {
        return;
    };
    let Ok(pending) = head.fetch_entry(mem, head.pending_slot()) else {
        return;
    };

    let mut limit = ROBUST_LIST_LIMIT;
    while entry.addr != head.addr {
        let next = head.fetch_entry(mem, entry.addr);
        if entry.addr != pending.addr {
            let word = Visit {
                entry: entry.addr,
                uaddr: head.futex_word(entry, futex_offset),
                pi: entry.pi,
                pending: false,
            };
            if visit(word) == Flow::Stop {
                return;
            }
        }
        let Ok(next) = next else {
            return;
        };
        entry = next;
        limit -= 1;
        if limit == 0 {
            break;
        }
        cond_resched();
    }

    if pending.addr != 0 {
        visit(Visit {
            entry: pending.addr,
            uaddr: head.futex_word(pending, futex_offset),
            pi: pending.pi,
            pending: true,
        });
    }
}
