// SPDX-License-Identifier: GPL-2.0

//! Robust futexes in shared memory that a task unmapped while robust list entries still point
//! there (`Documentation/robust-futex/unmap.rst`).
//!
//! A process that holds a process-shared robust mutex, unmaps its memory and dies leaves its
//! exit walk faulting on the entry: the built-in walk stops there, the mutex never gets
//! `FUTEX_OWNER_DIED`, its waiters in other processes sleep forever, and every later entry and
//! `list_op_pending` are lost. The memory itself lives on in the page cache, mapped by those
//! other processes. So:
//!
//! 1. **Record.** Where a writable `VM_SHARED` area of shmem leaves an mm that has tasks with
//!    a robust list ([`unmap`], under that mm's `mmap_lock`, held for writing), a [`Record`]
//!    keeps what reaches the memory without the mapping: a reference to the file, the file
//!    offset and the addresses it was mapped at. No page is pinned, no user memory is read.
//!    Records are kept per mm in the [`index`], at most [`index::MAX_RECORDS`]; where they
//!    overlap, the later one wins.
//! 2. **Prune.** When the task returns to user space ([`unmap_done`], no lock held), the robust
//!    lists of every task of its mm are walked as the exit walk would walk them (through the
//!    records where a list goes on in memory that was unmapped), and every record that no
//!    entry, futex word, head or `list_op_pending` points into is dropped at once: a process
//!    that maps and unmaps shared files without robust locks in them keeps nothing past its
//!    system call. These reads do not fault: `munmap()` must not wait on a page of another
//!    thread's list (a userfaultfd page the unmapping thread itself serves would never come);
//!    a list that cannot be read that way keeps every record. Neither filing a record nor
//!    pruning allocates in the common case (the mm's room for records is kept; a few records'
//!    spans and a few threads' heads are copied onto the stack). The records that remain are
//!    those the mm's lists pointed into at the last unmap; they are dropped with the mm's
//!    group in the index, once its last task has walked its lists (exit, exec).
//! 3. **Walk through.** An exit (or exec) walk that faults on an address no mapping covers now,
//!    but a record does, reads the entry there through the file, and handles its futex word
//!    there: the compare-and-exchange on the page cache, the wakeup by the word's shared key.
//!    Where nothing is recorded the walk is the built-in one, to the instruction.
//!
//! Only shmem is covered (tmpfs, memfd, POSIX and SysV shared memory, shared anonymous
//! memory): a store into the page cache of a disk file would skip `->page_mkwrite()` and stable
//! page writes. Other shared files are counted (debugfs `unmap_not_covered`).

use crate::futex;
use crate::index;
use crate::robust_list::{self, CurrentMem, Flow, UserMem};
use core::{
    cell::{Cell, RefCell},
    ops::ControlFlow,
};
use kernel::{
    bindings,
    fs::File,
    mm::virt::VmaRef,
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
    },
};

/// Records alive, the index's and the copies a walk or a prune holds while it runs (debugfs
/// `unmap_records`).
pub(crate) static RECORDS: Atomic<u64> = Atomic::new(0);
/// Records made (debugfs `unmap_recorded`).
pub(crate) static RECORDED: Atomic<u64> = Atomic::new(0);
/// Records dropped because nothing pointed into them when their mm was checked (debugfs
/// `unmap_dropped`).
pub(crate) static DROPPED: Atomic<u64> = Atomic::new(0);
/// Futex words an exit walk handled through a record (debugfs `unmap_words`).
pub(crate) static WORDS: Atomic<u64> = Atomic::new(0);
/// Shared areas of files other than shmem that left an mm (debugfs `unmap_not_covered`).
pub(crate) static NOT_COVERED: Atomic<u64> = Atomic::new(0);
/// Records that could not be made for lack of memory (debugfs `unmap_lost`).
pub(crate) static LOST: Atomic<u64> = Atomic::new(0);

/// Orders the records: of two that cover an address, the later one describes what was mapped
/// there last.
static SEQ: Atomic<u64> = Atomic::new(0);

/// Shared memory that left an mm: the bytes `[pos, pos + (end - start))` of `file`, which were
/// mapped at `[start, end)`.
pub(crate) struct Record {
    file: ARef<File>,
    pos: i64,
    start: usize,
    end: usize,
    /// The order records were made in: of two records that cover an address, the later one
    /// describes what was mapped there last.
    pub(crate) seq: u64,
}

impl Record {
    /// Whether `[addr, addr + len)` lies in the record's addresses.
    fn covers(&self, addr: usize, len: usize) -> bool {
        self.start <= addr && addr.checked_add(len).is_some_and(|e| e <= self.end)
    }

    /// Whether the two records' address ranges overlap.
    pub(crate) fn overlaps(&self, other: &Record) -> bool {
        self.touches(other.start, other.end - other.start)
    }

    /// Whether `[addr, addr + len)` overlaps the record's addresses.
    pub(crate) fn touches(&self, addr: usize, len: usize) -> bool {
        addr < self.end && addr.saturating_add(len) > self.start
    }

    /// The file offset of `addr`, which the record covers.
    fn pos_of(&self, addr: usize) -> i64 {
        self.pos + (addr - self.start) as i64
    }
}

impl Record {
    /// What was unmapped at `[start, end)`: the bytes from `pos` on of `file`; the latest
    /// record made.
    fn new(file: ARef<File>, pos: i64, start: usize, end: usize) -> Self {
        RECORDS.add(1, Relaxed);
        Record {
            file,
            pos,
            start,
            end,
            seq: SEQ.fetch_add(1, Relaxed) + 1,
        }
    }

    /// Its addresses and order, for [`prune`].
    pub(crate) fn span(&self) -> Span {
        Span {
            start: self.start,
            end: self.end,
            seq: self.seq,
        }
    }
}

/// A copy holds its own reference on the file.
impl Clone for Record {
    fn clone(&self) -> Self {
        RECORDS.add(1, Relaxed);
        Record {
            file: self.file.clone(),
            pos: self.pos,
            start: self.start,
            end: self.end,
            seq: self.seq,
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        RECORDS.fetch_sub(1, Relaxed);
    }
}

/// A record's addresses and order, without its file: what [`prune`] copies out of the index.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Span {
    start: usize,
    end: usize,
    seq: u64,
}

impl Span {
    /// Whether `[addr, addr + len)` overlaps the span.
    fn touches(&self, addr: usize, len: usize) -> bool {
        addr < self.end && addr.saturating_add(len) > self.start
    }
}

/// Records taken out of the index in one hold of a shard's mutex that are dropped after it is
/// released; more are dropped under it (see `index::take_out`).
const STALE: usize = 4;

/// References on the records of the current mm: `None` if none (the common case: one atomic
/// load), or if they cannot be copied.
///
/// Context: process context, may sleep.
fn records_of_current() -> Option<KVVec<Record>> {
    if RECORDS.load(Relaxed) == 0 {
        return None;
    }
    let current = kernel::current!();
    let mm = current.mm()?;
    index::records_of(mm.as_raw()).ok().flatten()
}

const VM_WRITE: usize = bindings::VM_WRITE;

/// `futex_robust_ops::unmap`: the `VM_SHARED` area `vma` leaves the current mm. Returns
/// whether it made a record, for [`unmap_done`] to be called.
///
/// Only a writable area is recorded: a futex word the task could not write through its mapping
/// is none the walk could mark (the write through the file checks the file's mode and seals
/// again, `futex_robust_file_cmpxchg()`).
///
/// # Safety
///
/// Called by the mm core with `vma` valid and detached from the current mm, whose `mmap_lock`
/// is held for writing. Process context, may sleep; no user memory is accessed.
pub(crate) unsafe extern "C" fn unmap(vma: *mut bindings::vm_area_struct) -> bool {
    // SAFETY: `vma` is valid and the `mmap_lock` held for the call, per the safety requirement.
    let vma = unsafe { VmaRef::from_raw(vma) };
    let Some(index) = index::get() else {
        return false;
    };
    let Some(file) = vma.file() else {
        return false;
    };
    let mm = vma.mm().as_raw();
    // Records this unmap makes stale (mapped over), dropped after the shard's mutex is
    // released.
    let mut stale: [Option<Record>; STALE] = Default::default();
    let writable = vma.flags() & VM_WRITE != 0;
    if !writable || !vma.is_shmem() || !index.is_complete() {
        // No record: any this area was mapped over are stale. A group tells an mm with a
        // robust list, whose unmaps are counted.
        let robust = index.take_overlapping(mm, vma.start(), vma.end(), &mut stale);
        if robust && writable && !vma.is_shmem() {
            NOT_COVERED.add(1, Relaxed);
        } else if robust && writable {
            // Records could not be pruned (some task may be missing): make none.
            LOST.add(1, Relaxed);
        }
        return false;
    }
    let pos = (vma.pgoff() as i64) << PAGE_SHIFT;
    let mut record = Some(Record::new(file.into(), pos, vma.start(), vma.end()));
    // Larger room for the mm's records, if they need it (allocated without the mutex), or the
    // smaller room they left.
    let mut spare = KVVec::new();
    loop {
        match index.add_record(mm, &mut record, &mut spare, &mut stale) {
            index::AddRecord::Filed => {
                RECORDED.add(1, Relaxed);
                return true;
            }
            index::AddRecord::Full => {
                LOST.add(1, Relaxed);
                return true; // pruning may make room for the next one
            }
            index::AddRecord::NoGroup => return false, // no task of the mm has a robust list
            index::AddRecord::NeedRoom(n) => match KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT) {
                Ok(room) => spare = room,
                Err(_) => {
                    LOST.add(1, Relaxed);
                    return true; // the overlapped records are gone: prune the rest
                }
            },
        }
    }
}

/// `futex_robust_ops::unmap` with `bench_unmap_floor` (benchmarking only): asks for the task
/// work and does nothing else, so that `make bench` can measure what the mechanism costs (the
/// hook's filter, the call into the module, the task work) without any of the module's work.
///
/// # Safety
///
/// As [`unmap`].
pub(crate) unsafe extern "C" fn floor_unmap(_vma: *mut bindings::vm_area_struct) -> bool {
    true
}

/// `futex_robust_ops::unmap_done` with `bench_unmap_floor`: nothing.
///
/// # Safety
///
/// As [`unmap_done`].
pub(crate) unsafe extern "C" fn floor_unmap_done() {}

/// `futex_robust_ops::unmap_done`: the current task, which unmapped shared memory, returns to
/// user space (or exits). Drops the records of its mm that no robust list of the mm points into.
///
/// # Safety
///
/// Called by the futex core's task work, in process context, with no lock held.
pub(crate) unsafe extern "C" fn unmap_done() {
    let current = kernel::current!();
    if let Some(mm) = current.mm() {
        prune(mm.as_raw());
    }
}

/// Drops the records of `mm` (the current task's) that no robust list of a task of `mm` points
/// into. Nothing is dropped if the index is incomplete (a task may be missing).
///
/// Context: process context, may sleep; reads the lists of the mm's tasks, with no lock held.
fn prune(mm: *mut bindings::mm_struct) {
    let Some(index) = index::get() else {
        return;
    };
    // The spans onto the stack (more than 8 records: an allocation), the heads 16 at a time,
    // one hold of the shard's mutex each: no allocation for them, whatever the threads.
    let mut spans = index::Stash::<Span, 8>::new(Span::default());
    // Records may be filed meanwhile: room with slack, and a few tries, then everything is kept.
    let mut tries = 3;
    loop {
        match index.copy_spans(mm, &mut spans) {
            index::Spans::Nothing => return,
            index::Spans::Copied => break,
            index::Spans::NeedRoom(n) => {
                tries -= 1;
                if tries == 0 || spans.reserve(n + 8).is_err() {
                    return; // keep everything
                }
            }
        }
    }
    let spans = spans.as_slice();
    if spans.is_empty() {
        return;
    }
    let mem = NoFaultMem {
        mm,
        spans,
        used: Cell::new(0),
        undecided: Cell::new(false),
        records: RefCell::new(None),
    };
    // A task filed after a batch passed its key, as one filed after a single copy, is not seen:
    // it registered its head after the unmap, and its list can only gain entries in memory
    // mapped since (a record of memory mapped again is not used). The same holds for a head a
    // filed task registers while this runs (its entry keeps the old one until its update):
    // unless the task built the new list beforehand in memory now unmapped, which only its
    // own process's lists can suffer.
    let walked = index.for_each_head(mm, |index::TaskHead { head, .. }| {
        mem.mark(head.addr, 3 * head.word_size());
        robust_list::walk(&mem, &head, |v| {
            mem.mark(v.entry, head.word_size());
            mem.mark(v.uaddr, 4);
            Flow::Continue
        });
        // A list that could not be read without faulting: keep everything.
        if mem.undecided.get() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    if walked != Some(ControlFlow::Continue(())) {
        return; // some tasks may be missing, or a list undecided: keep everything
    }
    let used = mem.used.get();
    if used.count_ones() as usize == spans.len() {
        return; // every record is pointed into
    }
    // A record made since the snapshot is kept: it is not in `spans`.
    let keep = |seq: u64| match spans.iter().position(|s| s.seq == seq) {
        Some(i) => used & (1 << i) != 0,
        None => true,
    };
    let mut stale: [Option<Record>; STALE] = Default::default();
    let n = index.take_records(mm, keep, &mut stale);
    DROPPED.add(n as u64, Relaxed);
}

/// The current task's memory as [`prune`] reads it, without faulting, with the spans of the
/// records of its mm it found pointed into.
///
/// Where a read fails at an address that no mapping covers and a record does (the list goes on
/// where a task unmapped its memory: the case records exist for), the span is marked used and
/// the read goes through the latest such record's file, so that what follows is decided too; the
/// records are copied out of the index for that, once (an allocation, on this rare path only).
/// Any other failed read is undecided (every record is kept), unless the address is not mapped
/// and not recorded: the exit walk stops there too.
struct NoFaultMem<'a> {
    mm: *mut bindings::mm_struct,
    spans: &'a [Span],
    /// Bit `i` set: `spans[i]` is pointed into ([`index::MAX_RECORDS`] fit in 64 bits).
    used: Cell<u64>,
    undecided: Cell<bool>,
    /// The records, once a read needed them.
    records: RefCell<Option<KVVec<Record>>>,
}

const _: () = assert!(index::MAX_RECORDS <= u64::BITS as usize);

impl NoFaultMem<'_> {
    /// Marks the spans `[addr, addr + len)` touches as used.
    fn mark(&self, addr: usize, len: usize) {
        let mut used = self.used.get();
        for (i, s) in self.spans.iter().enumerate() {
            if s.touches(addr, len) {
                used |= 1 << i;
            }
        }
        self.used.set(used);
    }

    /// Reads `buf.len()` bytes at `addr`, which no mapping covers, through the records, a
    /// page at a time.
    fn read_recorded(&self, addr: usize, buf: &mut [u8]) -> Result {
        let mut records = self.records.borrow_mut();
        if records.is_none() {
            *records = Some(index::records_of(self.mm)?.unwrap_or_default());
        }
        let records = records.as_deref().unwrap_or_default();
        let mut done = 0;
        while done < buf.len() {
            let at = addr.checked_add(done).ok_or(EFAULT)?;
            let n = (PAGE_SIZE - at % PAGE_SIZE).min(buf.len() - done);
            let record = records
                .iter()
                .filter(|r| r.covers(at, n))
                .max_by_key(|r| r.seq)
                .ok_or(EFAULT)?;
            futex::file_read(&record.file, record.pos_of(at), &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }
}

impl UserMem for NoFaultMem<'_> {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result {
        let Err(e) = futex::read_user_nofault(addr, buf) else {
            return Ok(());
        };
        let recorded = self.spans.iter().any(|s| s.touches(addr, buf.len()));
        if mapped(addr) {
            self.undecided.set(true); // not faulted in: unknown
            return Err(e);
        }
        if !recorded {
            return Err(e); // the exit walk stops here too
        }
        self.mark(addr, buf.len());
        self.read_recorded(addr, buf)
            .inspect_err(|_| self.undecided.set(true))
    }
}

/// Whether a mapping of the current mm covers `addr`.
///
/// Context: process context, may sleep (takes the `mmap_lock` for reading).
fn mapped(addr: usize) -> bool {
    let task = kernel::current!();
    task.mm()
        .is_some_and(|mm| mm.mmap_read_lock().vma_lookup(addr).is_some())
}

/// The current task's memory, and where it faults, the shared memory its mm unmapped: what
/// the exit walk reads.
///
/// Context: process context with a user `mm`; reads may fault and sleep.
pub(crate) struct RecordedMem {
    records: RefCell<KVVec<Record>>,
    /// The record order ([`SEQ`]) when the records were last fetched: at a miss they are
    /// fetched again if any record was made since (a sibling thread may have recorded memory
    /// it unmapped meanwhile).
    fetched: Cell<u64>,
}

impl RecordedMem {
    /// For the exit walk of the current task: mapped memory is read as the built-in walk reads
    /// it, faulting; the records of its mm are fetched at the first miss (none, in the common
    /// case of a walk that does not fault).
    pub(crate) fn for_exit() -> Self {
        RecordedMem {
            records: RefCell::new(KVVec::new()),
            fetched: Cell::new(u64::MAX),
        }
    }

    /// Fetches the records of the current mm again if any record was made since the last
    /// fetch. Returns whether it did.
    fn fetch(&self) -> bool {
        let now = SEQ.load(Relaxed);
        if now == self.fetched.get() {
            return false;
        }
        self.fetched.set(now);
        match records_of_current() {
            Some(records) => {
                *self.records.borrow_mut() = records;
                true
            }
            None => false,
        }
    }

    /// The latest record that covers `[addr, addr + len)`, fetched again once if none does.
    fn covering(&self, addr: usize, len: usize) -> Option<Record> {
        let find = || {
            self.records
                .borrow()
                .iter()
                .filter(|r| r.covers(addr, len))
                .max_by_key(|r| r.seq)
                .cloned()
        };
        find().or_else(|| if self.fetch() { find() } else { None })
    }

    /// The record through which `[addr, addr + len)` is reached: the latest that covers it, if
    /// no mapping of the current mm covers `addr` (a mapping made there since wins, as it does
    /// for the built-in walk).
    pub(crate) fn locate(&self, addr: usize, len: usize) -> Option<Record> {
        let record = self.covering(addr, len)?;
        (!mapped(addr)).then_some(record)
    }

    /// Reads `buf.len()` bytes at `addr` through the records, a page at a time.
    fn read_recorded(&self, addr: usize, buf: &mut [u8]) -> Result {
        let mut done = 0;
        while done < buf.len() {
            let at = addr.checked_add(done).ok_or(EFAULT)?;
            let n = (PAGE_SIZE - at % PAGE_SIZE).min(buf.len() - done);
            let record = self.locate(at, n).ok_or(EFAULT)?;
            // Any failure of the file's read is told apart from "no record" (`EFAULT`).
            futex::file_read(&record.file, record.pos_of(at), &mut buf[done..done + n])
                .map_err(|e| if e == EFAULT { EIO } else { e })?;
            done += n;
        }
        Ok(())
    }
}

impl UserMem for RecordedMem {
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result {
        CurrentMem
            .read_bytes(addr, buf)
            .or_else(|_| self.read_recorded(addr, buf))
    }

    // Single words as the built-in walk reads them (`get_user()`), once.
    #[inline(always)]
    fn read_ulong(&self, addr: usize) -> Result<usize> {
        CurrentMem.read_ulong(addr).or_else(|_| {
            let mut b = [0u8; core::mem::size_of::<usize>()];
            self.read_recorded(addr, &mut b)?;
            Ok(usize::from_ne_bytes(b))
        })
    }

    #[inline(always)]
    fn read_u32(&self, addr: usize) -> Result<u32> {
        CurrentMem.read_u32(addr).or_else(|_| {
            let mut b = [0u8; 4];
            self.read_recorded(addr, &mut b)?;
            Ok(u32::from_ne_bytes(b))
        })
    }
}

/// A futex word reached through a record: byte `pos` of the record's file.
pub(crate) struct FileWord {
    record: Record,
    pos: i64,
}

impl FileWord {
    /// The word at `addr`, which `record` covers.
    pub(crate) fn new(record: Record, addr: usize) -> Self {
        WORDS.add(1, Relaxed);
        let pos = record.pos_of(addr);
        FileWord { record, pos }
    }
}

impl crate::walker::FutexWord for FileWord {
    fn aligned(&self) -> bool {
        self.pos % 4 == 0
    }

    fn get(&self) -> Result<u32> {
        let mut b = [0u8; 4];
        futex::file_read(&self.record.file, self.pos, &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }

    // Any failure (the file may not be written, `ENOMEM`, `EIO`) stops the walk, as a word
    // that cannot be made writable does: `EFAULT`, then a failing `fault_in()`.
    fn cmpxchg(&self, old: u32, new: u32) -> Result<u32> {
        futex::file_cmpxchg_u32(&self.record.file, self.pos, old, new).map_err(|_| EFAULT)
    }

    fn fault_in(&self) -> Result {
        Err(EFAULT) // the page cache needs no fault; a failed exchange is final
    }

    fn wake(&self) {
        futex::wake_robust_file(&self.record.file, self.pos);
    }
}
