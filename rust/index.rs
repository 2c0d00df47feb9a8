// SPDX-License-Identifier: GPL-2.0

//! The tasks that have a robust list registered, by mm.
//!
//! `cleanup_robust_list(2)` has to look at every task that may hold a `list_op_pending` pointing
//! into the caller's range: the tasks whose mm maps that memory. A task without a robust list
//! head has no pending operation, so it is enough to know, for each mm, the tasks using it that
//! registered a head (native or compat). Finding them by walking every thread of the system made
//! the call cost O(threads on the machine); this index makes it O(tasks that share the mm).
//!
//! The index is kept up to date by:
//!
//! - `set_robust_list(2)`, native and compat, through the `robust_list_set` operation: a task is
//!   indexed under its mm while it has a head, and removed once it has none;
//! - the robust unlock of the merged fix, where it drops a head whose `list_op_pending` it cannot
//!   clear: the same operation;
//! - the exit walks, at exit and at exec (under the task's `futex.exit_mutex`, before its mm goes
//!   away or is replaced): the task is removed after its last walk, the compat one if it has
//!   both heads, so that a call made between the two walks still finds it;
//! - [`populate`], once the operations are registered, for the tasks that registered a head before
//!   the module was loaded.
//!
//! A task's mm only changes at exec, after its exit walk removed it, so an entry is always filed
//! under the mm the task uses. Tasks created after a `cleanup_robust_list()` call collected its
//! candidates are not seen by that call, and need not be: a new task starts without a robust
//! list, so any pending operation it has was started after the call, not before the destroy it
//! protects.
//!
//! # Structure and cost
//!
//! The mms are spread over [`SHARDS`] shards by a hash of their address, each shard a mutex over
//! a red-black tree of the shard's mms, each mm a tree of its tasks (to find a task's entry)
//! and a dense array of their heads, one element per task (what a call copies out, with a
//! plain loop). Filing or removing a task costs O(log) in the mms of its shard and the tasks of
//! its mm, under the mutex of its mm's shard only: `set_robust_list()` and exits of unrelated
//! processes rarely meet, and never on a global lock. The array's room doubles when it is full
//! (made before the mutex is taken) and is halved when it is a quarter full (made after a
//! removal released it, without reclaim), so that it stays within four times the mm's tasks
//! while memory is at hand. A group holds a reference on its mm (`mmgrab()`), so that its
//! address, the key, cannot be reused while it is filed; entries hold a reference on their
//! task, so that an entry never dangles. Everything is dropped with the index.
//!
//! # Completeness
//!
//! The index is incomplete from its creation until [`populate`] has filed the tasks that
//! registered before the load, and again for good if an entry cannot be allocated: meanwhile
//! `cleanup_robust_list()` walks every thread instead: slower, never wrong.
//!
//! # Locking
//!
//! A shard's mutex guards nothing but its trees and the groups' records: under it no user memory is
//! accessed, nothing is allocated (the room for an entry or a record is made before it is taken)
//! and no other lock is taken, but for a file reference dropped with a record taken out of the
//! index when more were taken at once than the caller had slots for (`fput()` defers the release,
//! at most queueing work), so a `set_robust_list()` or an exit never waits behind anything a user
//! controls, and it is held for at most [`BATCH`] tasks of an mm at a time, but when an mm's
//! array of heads doubles or is halved: it then copies the array's elements into the new room
//! (once per doubling or halving, so one element per filing or removal on average).
//! [`TaskIndex::for_each_head`] copies heads' addresses and tasks' keys out, and
//! `cleanup_robust_list()` reads the candidates' heads after releasing it, taking a reference on
//! a task only for a slot to clear ([`TaskIndex::task`]). Lock orders: a task's
//! `futex.exit_mutex`, then a shard's mutex; an mm's `mmap_lock`, then a shard's mutex (records
//! are filed under the `mmap_lock` of the mm that unmapped the memory, [`crate::unmap`]). Context
//! of every function here: process context, may sleep.

use crate::futex::{self, ExitGuard};
use crate::robust_list::Head;
use crate::unmap::{Record, Span};
use core::{ops::ControlFlow, pin::Pin, ptr};
use kernel::{
    bindings,
    mm::Mm,
    new_mutex,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{
        aref::ARef,
        atomic::{Acquire, Atomic, Relaxed, Release},
        rcu, Mutex, MutexGuard,
    },
    task::{self, Task},
};

/// Tasks currently indexed (shown in debugfs).
pub(crate) static INDEXED: Atomic<u64> = Atomic::new(0);
/// 1 while the index is incomplete (being populated, or an entry could not be allocated):
/// calls walk every thread instead (debugfs).
pub(crate) static INCOMPLETE: Atomic<u64> = Atomic::new(1);

/// The number of shards the mms are spread over.
pub(crate) const SHARDS: usize = 64;

/// The most records an mm keeps ([`crate::unmap`]): what a process can make the module hold
/// (file references, allocations) by unmapping shared memory its lists point into, and what
/// a lookup scans.
pub(crate) const MAX_RECORDS: usize = 64;

/// The key of an mm, or of a task, in a tree: its address, compared, never dereferenced. The
/// object is kept allocated while it is a key (by [`MmTasks::mm`], or the entry's reference).
fn key<T>(p: *const T) -> usize {
    p as usize
}

/// The tasks filed under one mm.
struct MmTasks {
    /// Keeps the mm allocated, so that its address, the group's key, is not reused while filed.
    _mm: ARef<Mm>,
    /// The tasks, by address.
    tasks: RBTree<usize, Entry>,
    /// Their heads, one element per task, dense: what a call copies out
    /// ([`TaskIndex::task_heads`]) with a plain loop over memory, where a walk of `tasks` costs
    /// a call per node. A removal moves the last element into the freed place
    /// ([`MmTasks::vacate`]); a copy in batches goes from the last element down, so that no move
    /// makes it skip a task (see [`Batch::From`]). The room is made without the shard's mutex:
    /// it doubles when full ([`TaskIndex::update`]), and is halved when a quarter full
    /// ([`TaskIndex::remove`]), so that it stays within four times the tasks filed (and four),
    /// while memory is at hand.
    dense: KVVec<TaskHeads>,
    /// Shared memory a task of the mm unmapped while robust list entries may still point there
    /// ([`crate::unmap`]), at most [`MAX_RECORDS`]. The room is kept once made, so that
    /// filing a record does not allocate. Dropped with the group, when the mm's last task has
    /// walked its lists.
    records: KVVec<Record>,
}

/// A task filed under its mm.
struct Entry {
    task: ARef<Task>,
    /// The place of its heads in its group's [`MmTasks::dense`].
    at: usize,
}

/// A filed task's robust list heads, in its group's [`MmTasks::dense`].
#[derive(Clone, Copy)]
struct TaskHeads {
    /// The task's key in `tasks`.
    task: usize,
    /// Its robust list heads (native, compat) as they were when it last registered one, read
    /// under the shard's mutex by [`TaskIndex::update`]: what a call copies out, without
    /// touching the task. The task's own may differ only while a `set_robust_list()` of the
    /// task itself is between its store and its update here (it has no pending operation on
    /// the new list yet, and none that its exit would walk on the old one), or between its two
    /// exit walks (under its `futex.exit_mutex`); a clear checks the task's own heads under
    /// that mutex (`ExitGuard::heads`).
    heads: [Option<Head>; 2],
}

/// The least room [`MmTasks::dense`] is halved to.
const DENSE_MIN: usize = 4;

impl MmTasks {
    /// Frees the place `i`, whose task was taken out of `tasks`: the last element moves there,
    /// and its task's entry is told.
    fn vacate(&mut self, i: usize) {
        let Some(last) = self.dense.pop() else {
            return;
        };
        if let Some(freed) = self.dense.get_mut(i) {
            *freed = last;
            if let Some(moved) = self.tasks.get_mut(&last.task) {
                moved.at = i;
            }
        }
    }

    /// Makes sure that `dense` has room for one more, with the room `spare` brings if it is
    /// larger and at most twice the tasks ([`MmTasks::move_into`]: room made for more tasks
    /// than are left, after some of them left, is not taken). Returns the room to make, before
    /// the mutex is taken, if neither has it.
    fn room_for_one(&mut self, spare: &mut KVVec<TaskHeads>) -> Option<usize> {
        let len = self.dense.len();
        if len < self.dense.capacity() {
            return None;
        }
        let want = (2 * len).max(DENSE_MIN);
        if spare.capacity() <= len || spare.capacity() > want {
            return Some(want);
        }
        self.move_into(spare);
        None
    }

    /// The room `dense` should be halved to, if it is a quarter full or less.
    fn shrink_to(&self) -> Option<usize> {
        let (len, cap) = (self.dense.len(), self.dense.capacity());
        (cap > DENSE_MIN && len <= cap / 4).then(|| (cap / 2).max(DENSE_MIN))
    }

    /// Moves `dense` into the room `room` (with room for it: the caller checked), in order, so
    /// that every task keeps its place; the old room is left in `room`, to be freed after the
    /// shard's mutex is released. A copy of every element under the mutex, once per doubling
    /// or halving: a filing or removal pays for one element's copy on average.
    fn move_into(&mut self, room: &mut KVVec<TaskHeads>) {
        room.clear();
        core::mem::swap(&mut self.dense, room);
        for h in room.iter() {
            // Within the room checked by the caller: no allocation under the mutex.
            let _ = self.dense.push_within_capacity(*h);
        }
    }
}

/// The room for filing a task, made before the shard's mutex is taken
/// ([`TaskIndex::insert_locked`]): what is not used is freed (a `kfree()` under the mutex at
/// most).
struct Room<'a> {
    /// The entry's node.
    entry: RBTreeNodeReservation<usize, Entry>,
    /// The node of its mm's group, in case the mm has none yet.
    group: RBTreeNodeReservation<usize, MmTasks>,
    /// Room for the group's [`MmTasks::dense`] ([`TaskIndex::dense_room`]): a new group takes
    /// it.
    dense: &'a mut KVVec<TaskHeads>,
}

/// The groups of the mms that hash to one shard, by mm address.
type Shard = RBTree<usize, MmTasks>;

/// What [`TaskIndex::add_record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddRecord {
    /// The record is filed.
    Filed,
    /// No task of the mm has a robust list: nothing to keep.
    NoGroup,
    /// The mm has [`MAX_RECORDS`] records already.
    Full,
    /// The mm's room for records is full: make room for this many and call again.
    NeedRoom(usize),
}

/// What [`TaskIndex::copy_spans`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spans {
    /// The mm has no group, or the index is incomplete (some of its tasks may be missing).
    Nothing,
    /// The spans of the mm's records are copied.
    Copied,
    /// They did not fit: make room for this many, and call again.
    NeedRoom(usize),
}

/// The most tasks of an mm one hold of a shard's mutex goes through: a process of many threads
/// does not make the tasks of the other mms that hash to its shard (their `set_robust_list()`,
/// thread creation and exit) wait for all of its threads, only for this many.
pub(crate) const BATCH: usize = 64;

/// Where a copy of the tasks of an mm, in batches of at most [`BATCH`], starts: from the last
/// task's heads (see [`Batch::From`]).
pub(crate) const FROM_THE_END: usize = usize::MAX;

/// Where a copy of the tasks of an mm, in batches of at most [`BATCH`], stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// The index is incomplete: some tasks may be missing.
    Incomplete,
    /// Every task of the mm below the place the copy was asked to start from was copied (or
    /// the mm has none).
    Done,
    /// Copy again from here: the tasks whose heads are below this place in the mm's
    /// [`MmTasks::dense`], from the last down. A removal moves the last element into the freed
    /// place, and a growth or a shrink keeps every place: an element not copied yet is below
    /// the place, and only ever moves lower; one copied already may move below it and be
    /// copied again, which does no harm. A task filed meanwhile goes at the end: it is copied
    /// if its place is, or a removal moves it, below the place. The batches together see every
    /// task that stays filed from the first to the last.
    From(usize),
}

/// A robust list head of a filed task, and the task's key in the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TaskHead {
    pub(crate) task: usize,
    pub(crate) head: Head,
}

/// Room for values copied out of the index under a shard's mutex: `N` of them in place (on
/// the caller's stack), more in an allocation made, outside the mutex, when they do not fit.
pub(crate) struct Stash<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: KVVec<T>,
}

impl<T: Copy, const N: usize> Stash<T, N> {
    /// Empty room for `N` values; `fill` fills what is not used.
    pub(crate) fn new(fill: T) -> Self {
        Stash {
            inline: [fill; N],
            len: 0,
            heap: KVVec::new(),
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.heap.clear();
    }

    /// Stores `v`; returns false, storing nothing, if there is no room.
    fn push(&mut self, v: T) -> bool {
        if self.heap.capacity() > 0 {
            return self.heap.push_within_capacity(v).is_ok();
        }
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = v;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// How many more values fit.
    fn room(&self) -> usize {
        if self.heap.capacity() > 0 {
            self.heap.capacity() - self.heap.len()
        } else {
            N - self.len
        }
    }

    /// The values stored.
    pub(crate) fn as_slice(&self) -> &[T] {
        if self.heap.capacity() > 0 {
            &self.heap
        } else {
            &self.inline[..self.len]
        }
    }

    /// Makes room for `n` values: an allocation if more than `N`, charged to the caller's
    /// memory cgroup (it grows with the caller's threads).
    pub(crate) fn reserve(&mut self, n: usize) -> Result {
        if n > N && self.heap.capacity() < n {
            self.heap = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        }
        Ok(())
    }
}

/// Takes the records `take` selects out of `records`, into the free slots of `stale` for the
/// caller to drop after the shard's mutex is released; one that finds no free slot is dropped
/// here (`fput()` defers the file's release: that does not sleep or wait under the mutex).
fn take_out(
    records: &mut KVVec<Record>,
    mut take: impl FnMut(&Record) -> bool,
    stale: &mut [Option<Record>],
) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < records.len() {
        if !take(&records[i]) {
            i += 1;
            continue;
        }
        if let Ok(r) = records.remove(i) {
            n += 1;
            if let Some(slot) = stale.iter_mut().find(|s| s.is_none()) {
                *slot = Some(r);
            }
        }
    }
    n
}

/// Tasks with a robust list, grouped by mm, the groups sharded by mm.
pub(crate) struct TaskIndex {
    shards: KVec<Pin<KBox<Mutex<Shard>>>>,
    /// Tasks filed.
    len: Atomic<u64>,
    /// Every task that registered before the module was loaded has been filed ([`populate`]).
    populated: Atomic<bool>,
    /// An entry could not be allocated: some task may be missing, for good.
    lost: Atomic<bool>,
}

impl TaskIndex {
    /// An empty index, incomplete until [`TaskIndex::mark_populated`].
    ///
    /// Context: process context, may sleep.
    pub(crate) fn new() -> Result<Self> {
        let mut shards = KVec::with_capacity(SHARDS, GFP_KERNEL)?;
        for _ in 0..SHARDS {
            shards.push(
                KBox::pin_init(new_mutex!(RBTree::new(), "robust_futex_index"), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        Ok(TaskIndex {
            shards,
            len: Atomic::new(0),
            populated: Atomic::new(false),
            lost: Atomic::new(false),
        })
    }

    fn shard(&self, mm: usize) -> &Mutex<Shard> {
        // `mm_struct`s are slab objects about 1 KiB apart: fold the bits above that, then
        // Fibonacci hashing.
        let h = ((mm >> 10) ^ (mm >> 20)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> (usize::BITS - SHARDS.trailing_zeros());
        &self.shards[h]
    }

    /// Records that the tasks that registered before the load are filed ([`populate`]).
    pub(crate) fn mark_populated(&self) {
        self.populated.store(true, Release);
        self.publish();
    }

    /// Whether every task with a robust list is filed.
    fn complete(&self) -> bool {
        self.populated.load(Acquire) && !self.lost.load(Acquire)
    }

    /// Gives up on completeness for good: an entry could not be allocated.
    fn lose(&self) {
        self.lost.store(true, Release);
        self.publish();
    }

    /// Whether this is the module's index (not one of the KUnit tests').
    fn registered(&self) -> bool {
        ptr::eq(INDEX.load(Acquire), self)
    }

    /// Updates debugfs `index_incomplete`, if this is the module's index: a racy snapshot, for
    /// tests that read it once things settled.
    fn publish(&self) {
        if self.registered() {
            INCOMPLETE.store(u64::from(!self.complete()), Relaxed);
        }
    }

    /// Counts a task filed (`true`) or removed, here and, if this is the module's index, in
    /// debugfs `index_tasks` (by the same atomic steps, so that it never settles on a stale
    /// value).
    fn count(&self, filed: bool) {
        let registered = self.registered();
        if filed {
            self.len.add(1, Relaxed);
            if registered {
                INDEXED.add(1, Relaxed);
            }
        } else {
            self.len.fetch_sub(1, Relaxed);
            if registered {
                INDEXED.fetch_sub(1, Relaxed);
            }
        }
    }

    /// Files `task` under `mm` if it has a robust list head (and is a user task), or refreshes
    /// the heads its place keeps if it is filed already; removes it otherwise. The heads are
    /// read under the shard's mutex, so that of two concurrent updates of one task the later
    /// one decides. Gives up on completeness if there is no memory for the entry or its place.
    ///
    /// `task` must be the current task or have its `futex.exit_mutex` held by the caller, so
    /// that `mm` is its mm.
    pub(crate) fn update(&self, mm: &Mm, task: &Task) {
        self.file(
            mm,
            task,
            key(task.as_ptr()),
            || futex::heads(task),
            || futex::heads(task).iter().any(Option::is_some) && futex::is_user_task(task),
        )
    }

    /// [`TaskIndex::update`] for the entry keyed `task_key`, holding a reference on `task`,
    /// with the heads `heads` returns, filed if `filed` says so (both also called under the
    /// shard's mutex).
    fn file(
        &self,
        mm: &Mm,
        task: &Task,
        task_key: usize,
        heads: impl Fn() -> [Option<Head>; 2],
        filed: impl Fn() -> bool,
    ) {
        // Room for the group's `dense`, made when it is full and swapped in under the mutex;
        // what it then holds (the old room) is freed when it is dropped, after the mutex is
        // released (it is declared before the guard).
        let mut spare = KVVec::new();
        let mm_key = key(mm.as_raw());
        loop {
            // Room for the entry and, in case the mm has no group yet, for the group, made
            // before the shard's mutex is taken (what is not used is freed, a `kfree()` under
            // it at most); none to remove one, so that removal cannot fail. Not charged to a
            // memory cgroup: a charge that failed at its limit would make the index incomplete
            // for every user of the machine (`lose`); what the index holds is bounded by the
            // tasks alive, each charged far more for its own `task_struct` and stack.
            let room = if filed() {
                match (
                    RBTreeNodeReservation::new(GFP_KERNEL),
                    RBTreeNodeReservation::new(GFP_KERNEL),
                ) {
                    (Ok(entry), Ok(group)) => Some((entry, group)),
                    _ => return self.lose(),
                }
            } else {
                None
            };
            let mut shard = self.shard(mm_key).lock();
            if !filed() {
                self.remove_and_unlock(shard, mm_key, task_key);
                return;
            }
            let Some((entry, group)) = room else {
                continue; // registered since: make room, and look again
            };
            if let Some(n) = Self::dense_room(&mut shard, mm_key, task_key, &mut spare) {
                drop(shard);
                match KVVec::with_capacity(n, GFP_KERNEL) {
                    Ok(room) => spare = room,
                    Err(_) => return self.lose(),
                }
                continue;
            }
            let room = Room {
                entry,
                group,
                dense: &mut spare,
            };
            return self.insert_locked(&mut shard, mm, task, task_key, heads(), room);
        }
    }

    /// Makes sure that filing the task of `task_key` under the mm of `mm_key` in `shard`
    /// (locked) has a place, with the room `spare` brings if need be; returns the room to make,
    /// without the mutex, if it does not. A new group takes `spare` as its room.
    fn dense_room(
        shard: &mut Shard,
        mm_key: usize,
        task_key: usize,
        spare: &mut KVVec<TaskHeads>,
    ) -> Option<usize> {
        match shard.get_mut(&mm_key) {
            // A new group: room for a few (not the room made for a group that has gone since).
            None => (spare.capacity() == 0 || spare.capacity() > DENSE_MIN).then_some(DENSE_MIN),
            // Filed already: its place is refreshed.
            Some(g) if g.tasks.get(&task_key).is_some() => None,
            Some(g) => g.room_for_one(spare),
        }
    }

    /// Files the entry keyed `task_key`, holding a reference on `task`, under `mm` in `shard`,
    /// its mm's shard (locked), with `heads`, in the room made before the mutex was taken; if
    /// it is already there, refreshes the heads its place keeps.
    fn insert_locked(
        &self,
        shard: &mut Shard,
        mm: &Mm,
        task: &Task,
        task_key: usize,
        heads: [Option<Head>; 2],
        room: Room<'_>,
    ) {
        let mm_key = key(mm.as_raw());
        if shard.get(&mm_key).is_none() {
            let tasks = MmTasks {
                _mm: mm.into(),
                tasks: RBTree::new(),
                dense: core::mem::replace(room.dense, KVVec::new()),
                records: KVVec::new(),
            };
            shard.insert(room.group.into_node(mm_key, tasks));
        }
        let Some(g) = shard.get_mut(&mm_key) else {
            return;
        };
        if let Some(filed) = g.tasks.get(&task_key) {
            if let Some(place) = g.dense.get_mut(filed.at) {
                place.heads = heads;
            }
        } else if g
            .dense
            .push_within_capacity(TaskHeads {
                task: task_key,
                heads,
            })
            .is_ok()
        {
            let at = g.dense.len() - 1;
            let task = task.into();
            g.tasks
                .insert(room.entry.into_node(task_key, Entry { task, at }));
            self.count(true);
        } else {
            // No room for its place, which `dense_room()` made: not reached, but never wrong.
            self.lose();
        }
    }

    /// Files `task` under `mm` whatever its heads, for the KUnit tests (a kernel thread has
    /// none).
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn insert_for_test(&self, mm: &Mm, task: &Task) -> Result {
        self.file_for_test(mm, task, key(task.as_ptr()), futex::heads(task))
    }

    /// Files a stand-in entry under `mm` (or refreshes it), keyed `task_key` (not `task`'s
    /// own: one task can stand for several), with `heads`, for the KUnit tests.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn file_for_test(
        &self,
        mm: &Mm,
        task: &Task,
        task_key: usize,
        heads: [Option<Head>; 2],
    ) -> Result {
        self.file(mm, task, task_key, || heads, || true);
        if self.lost.load(Acquire) {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Removes the entry keyed `task_key` from under `mm`, for the KUnit tests; returns whether
    /// it was there.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn remove_key_for_test(&self, mm: &Mm, task_key: usize) -> bool {
        let mm_key = key(mm.as_raw());
        self.remove_and_unlock(self.shard(mm_key).lock(), mm_key, task_key)
    }

    /// Whether the places of the tasks of `mm` and their entries agree (one place per entry,
    /// each entry knowing its place), and the room of its [`MmTasks::dense`], for the KUnit
    /// tests.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn dense_consistent(&self, mm: &Mm) -> (bool, usize) {
        let mm_key = key(mm.as_raw());
        let shard = self.shard(mm_key).lock();
        let Some(g) = shard.get(&mm_key) else {
            return (true, 0);
        };
        let agree = g.dense.len() == g.tasks.iter().count()
            && g.dense
                .iter()
                .enumerate()
                .all(|(i, h)| g.tasks.get(&h.task).is_some_and(|e| e.at == i));
        (agree, g.dense.capacity())
    }

    /// Takes the entry of `task_key` out of the group of `mm_key` in `shard`, its locked shard,
    /// and the group if that was its last task; releases the mutex, then drops them (their
    /// references), and halves the group's room if it is a quarter full (the room made after
    /// the mutex is released, without reclaim; if there is no memory at hand for it, the room
    /// stays as it is). Returns whether the entry was there.
    ///
    /// Context: process context, may sleep (the mutex).
    fn remove_and_unlock(
        &self,
        mut shard: MutexGuard<'_, Shard>,
        mm_key: usize,
        task_key: usize,
    ) -> bool {
        let Some(g) = shard.get_mut(&mm_key) else {
            return false;
        };
        let entry = g.tasks.remove(&task_key);
        let Some(e) = entry else {
            return false;
        };
        g.vacate(e.at);
        let group = if g.tasks.is_empty() {
            shard.remove(&mm_key)
        } else {
            None
        };
        let shrink = shard.get(&mm_key).and_then(MmTasks::shrink_to);
        drop(shard);
        drop((e, group));
        self.count(false);
        if let Some(n) = shrink {
            // Without reclaim: the halving only gives memory back, and must not make an exit
            // reclaim or call the OOM killer for it (7.3's kernel crate has no
            // `__GFP_NORETRY`). If there is no memory at hand, each later removal from the mm
            // tries again. Not charged to a memory cgroup, as no room of the index is (see
            // `file`). The old room is freed when `room` is dropped, after the mutex is
            // released.
            let Ok(mut room) = KVVec::with_capacity(n, GFP_NOWAIT | __GFP_NOWARN) else {
                return true;
            };
            let mut shard = self.shard(mm_key).lock();
            if let Some(g) = shard.get_mut(&mm_key) {
                // Unless tasks came or went meanwhile so that it need not be halved to `n`.
                if g.shrink_to() == Some(n) {
                    g.move_into(&mut room);
                }
            }
        }
        true
    }

    /// Removes `task` from under `mm`; returns whether it was there.
    ///
    /// Context: process context, may sleep.
    pub(crate) fn remove(&self, mm: &Mm, task: &Task) -> bool {
        let mm_key = key(mm.as_raw());
        self.remove_and_unlock(self.shard(mm_key).lock(), mm_key, key(task.as_ptr()))
    }

    /// Moves references on the tasks filed under `mm` whose heads are below the place `from`
    /// (see [`TaskIndex::task_heads`]) into `out`, within its capacity (at least one), at most
    /// [`BATCH`].
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn copy_tasks(
        &self,
        mm: *const bindings::mm_struct,
        from: usize,
        out: &mut KVVec<ARef<Task>>,
    ) -> Batch {
        out.clear();
        if out.capacity() == 0 {
            // No room even for one: the batch could not move on. Taken as incomplete, so that
            // the caller falls back to its scan, slower but never wrong.
            return Batch::Incomplete;
        }
        self.dense_batch(mm, from, |g, h| {
            // Cloned only if it fits.
            if out.len() >= out.capacity() {
                return false;
            }
            if let Some(e) = g.tasks.get(&h.task) {
                let _ = out.push_within_capacity(e.task.clone());
            }
            true
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed) as usize
    }

    /// Files `*record` (taking it) under `mm`, if `mm` has a group (a task with a robust list)
    /// with fewer than [`MAX_RECORDS`] records once those it overlaps are taken out into
    /// `stale` (see [`take_out`]): they describe what was mapped there before. If the group's
    /// room is full, moves its records into `spare` if that is larger (the old room is left in
    /// `spare`, to be freed after the mutex is released), or asks for a larger one.
    pub(crate) fn add_record(
        &self,
        mm: *const bindings::mm_struct,
        record: &mut Option<Record>,
        spare: &mut KVVec<Record>,
        stale: &mut [Option<Record>],
    ) -> AddRecord {
        let mm_key = key(mm);
        let mut shard = self.shard(mm_key).lock();
        let Some(g) = shard.get_mut(&mm_key) else {
            return AddRecord::NoGroup;
        };
        let Some(new) = record.as_ref() else {
            return AddRecord::Filed;
        };
        take_out(&mut g.records, |r| r.overlaps(new), stale);
        let len = g.records.len();
        if len >= MAX_RECORDS {
            return AddRecord::Full;
        }
        if len == g.records.capacity() {
            if spare.capacity() <= len {
                return AddRecord::NeedRoom((2 * len).clamp(4, MAX_RECORDS));
            }
            core::mem::swap(&mut g.records, spare);
            for r in spare.drain_all() {
                let _ = g.records.push_within_capacity(r);
            }
        }
        if let Some(r) = record.take() {
            let _ = g.records.push_within_capacity(r);
        }
        AddRecord::Filed
    }

    /// Whether the index is complete (every task with a robust list filed).
    pub(crate) fn is_complete(&self) -> bool {
        self.complete()
    }

    /// Copies the records filed under `mm` into `out` (new file references), within its
    /// capacity; returns how many did not fit.
    pub(crate) fn copy_records(
        &self,
        mm: *const bindings::mm_struct,
        out: &mut KVVec<Record>,
    ) -> usize {
        let mm_key = key(mm);
        let shard = self.shard(mm_key).lock();
        let mut more = 0;
        if let Some(g) = shard.get(&mm_key) {
            for r in g.records.iter() {
                // Cloned only if it fits: a clone dropped here would put a file reference.
                if out.len() < out.capacity() {
                    let _ = out.push_within_capacity(r.clone());
                } else {
                    more += 1;
                }
            }
        }
        more
    }

    /// Takes the records of `mm` that overlap `[start, end)` out of the index, into `stale`
    /// (see [`take_out`]): memory unmapped there that is not recorded (not writable, not shmem,
    /// no room) was mapped over them. Returns whether `mm` has a group.
    pub(crate) fn take_overlapping(
        &self,
        mm: *const bindings::mm_struct,
        start: usize,
        end: usize,
        stale: &mut [Option<Record>],
    ) -> bool {
        let mm_key = key(mm);
        let mut shard = self.shard(mm_key).lock();
        let Some(g) = shard.get_mut(&mm_key) else {
            return false;
        };
        take_out(&mut g.records, |r| r.touches(start, end - start), stale);
        true
    }

    /// Calls `take` with the heads of each task filed under `mm` below the place `from` in its
    /// [`MmTasks::dense`] (any place at or above the number of tasks, as [`FROM_THE_END`]: all
    /// of them), from the last down, for at most [`BATCH`] tasks in one hold of the shard's
    /// mutex, until `take` returns `false` (no room for that task: the batch stops before it).
    #[inline]
    fn dense_batch(
        &self,
        mm: *const bindings::mm_struct,
        from: usize,
        mut take: impl FnMut(&MmTasks, &TaskHeads) -> bool,
    ) -> Batch {
        if !self.complete() {
            return Batch::Incomplete;
        }
        let mm_key = key(mm);
        let shard = self.shard(mm_key).lock();
        let Some(g) = shard.get(&mm_key) else {
            return Batch::Done;
        };
        // From the last down: see `Batch::From`.
        let mut at = from.min(g.dense.len());
        for _ in 0..BATCH {
            let Some(h) = at.checked_sub(1).and_then(|i| g.dense.get(i)) else {
                return Batch::Done;
            };
            if !take(g, h) {
                return Batch::From(at);
            }
            at -= 1;
        }
        if at == 0 {
            Batch::Done
        } else {
            Batch::From(at)
        }
    }

    /// Copies the robust list heads of the tasks of `mm` below the place `from` (see
    /// [`TaskIndex::dense_batch`]) into `heads` (room for at least two: a task has up to two
    /// heads, copied together), each with its task's key (for [`TaskIndex::task`]), as many
    /// tasks as fit and at most [`BATCH`]: no reference is taken.
    pub(crate) fn task_heads<const H: usize>(
        &self,
        mm: *const bindings::mm_struct,
        from: usize,
        heads: &mut Stash<TaskHead, H>,
    ) -> Batch {
        // Room for a task's two heads, so that every batch moves on.
        const { assert!(H >= 2) };
        heads.clear();
        self.dense_batch(mm, from, |_, h| {
            // Once per task, under the shard's mutex: no iterator adapter here, whose `next()`
            // was an out-of-line call per head (half of the copy's cost, measured).
            let (task, [native, compat]) = (h.task, h.heads);
            if heads.room() < usize::from(native.is_some()) + usize::from(compat.is_some()) {
                return false;
            }
            if let Some(head) = native {
                heads.push(TaskHead { task, head });
            }
            if let Some(head) = compat {
                heads.push(TaskHead { task, head });
            }
            true
        })
    }

    /// Calls `f` with each robust list head of the tasks filed under `mm`, with no lock held:
    /// the heads are copied out 16 at a time onto the stack ([`TaskIndex::task_heads`], one
    /// hold of the shard's mutex each), until `f` breaks. Returns `None` if the index is
    /// incomplete (some tasks may be missing), else how `f` ended.
    ///
    /// Context: process context; `f` may sleep.
    pub(crate) fn for_each_head<B>(
        &self,
        mm: *const bindings::mm_struct,
        mut f: impl FnMut(TaskHead) -> ControlFlow<B>,
    ) -> Option<ControlFlow<B>> {
        let mut heads = Stash::<TaskHead, 16>::new(TaskHead {
            task: 0,
            head: Head {
                addr: 0,
                abi: crate::robust_list::Abi::Native,
            },
        });
        let mut from = FROM_THE_END;
        loop {
            let batch = self.task_heads(mm, from, &mut heads);
            if batch == Batch::Incomplete {
                return None;
            }
            for &th in heads.as_slice() {
                if let ControlFlow::Break(b) = f(th) {
                    return Some(ControlFlow::Break(b));
                }
            }
            match batch {
                Batch::From(next) => from = next,
                _ => return Some(ControlFlow::Continue(())),
            }
        }
    }

    /// A reference on the task of `mm` whose key is `task`, if it is still filed (a task that
    /// left the index has walked its lists).
    pub(crate) fn task(&self, mm: *const bindings::mm_struct, task: usize) -> Option<ARef<Task>> {
        let mm_key = key(mm);
        let shard = self.shard(mm_key).lock();
        shard.get(&mm_key)?.tasks.get(&task).map(|e| e.task.clone())
    }

    /// Copies the spans of the records of `mm` into `spans` (no reference is taken).
    pub(crate) fn copy_spans<const S: usize>(
        &self,
        mm: *const bindings::mm_struct,
        spans: &mut Stash<Span, S>,
    ) -> Spans {
        if !self.complete() {
            return Spans::Nothing;
        }
        let mm_key = key(mm);
        let shard = self.shard(mm_key).lock();
        let Some(g) = shard.get(&mm_key) else {
            return Spans::Nothing;
        };
        spans.clear();
        let mut fits = true;
        for r in g.records.iter() {
            fits &= spans.push(r.span());
        }
        if fits {
            Spans::Copied
        } else {
            Spans::NeedRoom(g.records.len())
        }
    }

    /// Takes the records of `mm` that `keep` does not keep (by their order) out of the index,
    /// into `stale` (see [`take_out`]). Returns how many.
    pub(crate) fn take_records(
        &self,
        mm: *const bindings::mm_struct,
        keep: impl Fn(u64) -> bool,
        stale: &mut [Option<Record>],
    ) -> usize {
        let mm_key = key(mm);
        let mut shard = self.shard(mm_key).lock();
        let Some(g) = shard.get_mut(&mm_key) else {
            return 0;
        };
        take_out(&mut g.records, |r| !keep(r.seq), stale)
    }
}

/// The module's index, reachable from the operations the futex core calls.
static INDEX: Atomic<*mut TaskIndex> = Atomic::new(ptr::null_mut());

/// Owns the module's index; installs it on creation, removes it on drop.
///
/// It must be created before the operations that use it are registered, and dropped after they
/// are unregistered: the futex core runs every call in an SRCU read-side section that
/// unregistering waits for, so every call through [`index`] then finds it alive.
pub(crate) struct IndexRegistration {
    /// Owned here, used through `INDEX`.
    index: KBox<TaskIndex>,
}

impl IndexRegistration {
    pub(crate) fn new() -> Result<Self> {
        let index = KBox::new(TaskIndex::new()?, GFP_KERNEL)?;
        let p: *const TaskIndex = &*index;
        INDEX.store(p.cast_mut(), Release);
        index.publish();
        Ok(Self { index })
    }

    /// Gives up on completeness for good, as an entry that could not be allocated does, so
    /// that every call walks every thread (testing: the module's `inject_index_lost`).
    pub(crate) fn lose(&self) {
        self.index.lose();
    }
}

impl Drop for IndexRegistration {
    fn drop(&mut self) {
        INDEX.store(ptr::null_mut(), Release);
        INDEXED.store(0, Relaxed);
        INCOMPLETE.store(1, Relaxed);
    }
}

/// The module's index; `None` if it has none (being loaded or unloaded).
fn index() -> Option<&'static TaskIndex> {
    let p = INDEX.load(Acquire);
    // SAFETY: the index is installed before the operations are registered and removed after they
    // are unregistered (`IndexRegistration`); callers run in those operations, or in the module's
    // init, so it is alive while they use it.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The module's index, if it has one (being loaded or unloaded it has none).
pub(crate) fn get() -> Option<&'static TaskIndex> {
    index()
}

/// References on the records of `mm`: `None` if it has none (the common case, no allocation).
///
/// Context: process context, may sleep.
pub(crate) fn records_of(mm: *const bindings::mm_struct) -> Result<Option<KVVec<Record>>> {
    let Some(index) = index() else {
        return Ok(None);
    };
    let mut room = 0;
    loop {
        let mut out = KVVec::with_capacity(room, GFP_KERNEL_ACCOUNT)?;
        match index.copy_records(mm, &mut out) {
            0 if out.is_empty() => return Ok(None),
            0 => return Ok(Some(out)),
            more => room = out.len() + more * 2,
        }
    }
}

/// `futex_robust_ops::robust_list_set`: `task` (current) just recorded a robust list head, or
/// dropped one (a NULL head).
///
/// # Safety
///
/// Called by the futex core from `set_robust_list(2)` and the robust unlock, in process context,
/// with `task == current`.
pub(crate) unsafe extern "C" fn robust_list_set(task: *mut kernel::bindings::task_struct) {
    // SAFETY: `task` is the valid current task.
    let task = unsafe { futex::task(task) };
    let current = kernel::current!();
    if let (Some(index), Some(mm)) = (index(), current.mm()) {
        index.update(mm, task);
    }
}

/// Removes `task`, whose robust lists its exit (or exec) walk has just handled.
///
/// Context: the exit walk, `task == current` with its `futex.exit_mutex` held.
pub(crate) fn forget(task: &Task) {
    // `task` is current, whose `mm` is stable.
    let current = kernel::current!();
    if let (Some(index), Some(mm)) = (index(), current.mm()) {
        index.remove(mm, task);
    }
}

/// References on the user tasks of the system (not kernel threads) that `keep` selects.
///
/// They are collected under RCU into room made outside of it (`kvmalloc()`ed: a machine with
/// half a million threads needs no large contiguous allocation): nothing is allocated under
/// RCU, and the room grows only with the tasks that are there. If tasks were created since the room
/// was made, it is made again, until the caller is killed.
///
/// Context: process context, may sleep.
pub(crate) fn collect_user_tasks(mut keep: impl FnMut(&Task) -> bool) -> Result<KVVec<ARef<Task>>> {
    let mut room = 0;
    loop {
        let mut out = KVVec::with_capacity(room, GFP_KERNEL_ACCOUNT)?;
        let mut more = 0usize;
        {
            let rcu = rcu::read_lock();
            let _ = task::for_each_process_thread(&rcu, |t| {
                if futex::is_user_task(t) && keep(t) && out.push_within_capacity(t.into()).is_err()
                {
                    more += 1;
                }
                ControlFlow::<()>::Continue(())
            });
        }
        if more == 0 {
            return Ok(out);
        }
        crate::cleanup::killable()?;
        room = out.len() + more * 2 + 16;
    }
}

/// Files every task that registered a robust list before the module was loaded, then marks the
/// index complete: until then `cleanup_robust_list()` walks every thread.
///
/// Call it after the operations are registered: `futex_robust_ops_register()` waited for every
/// `set_robust_list()` that did not see them, so their heads are visible here; every later one
/// reaches [`robust_list_set`]. A task whose heads read as NULL here needs nothing: if it
/// registers one meanwhile, that call files it. Each other task is looked at under its
/// `futex.exit_mutex`, its heads read again under the index's lock, so neither a concurrent
/// `set_robust_list()` nor an exit can leave a stale entry behind. Killable: `insmod` fails with
/// `EINTR` if it is killed while it waits for a task's exit walk.
///
/// Context: process context, may sleep.
pub(crate) fn populate() -> Result {
    let index = index().ok_or(EINVAL)?;
    let tasks = collect_user_tasks(|t| futex::heads(t).iter().any(Option::is_some))?;
    for task in tasks.iter() {
        let guard = ExitGuard::lock_killable(task)?;
        if guard.exited() {
            continue;
        }
        // The task's `futex.exit_mutex` is held: its mm is the one it walks its lists in.
        if let Some(mm) = task.get_mm() {
            index.update(&mm, task);
        }
    }
    index.mark_populated();
    Ok(())
}
