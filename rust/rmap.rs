// SPDX-License-Identifier: GPL-2.0

//! Where memory is mapped, and access to another address space's memory.
//!
//! The `kernel` crate of 7.3 has VMAs found under an `mmap_lock` ([`VmaRef`]) but not the two
//! fields that identify what a shared mapping maps (`vm_pgoff`, `vm_file`), nor a mapping's
//! reverse map (its `i_mmap` tree), nor page pinning in another mm. This file wraps exactly
//! what `cleanup_robust_list(2)` uses of those, each with its calling context; every raw call
//! into them is here.

use kernel::{
    bindings,
    error::code::{EFAULT, EINVAL},
    fs::File,
    mm::{virt::VmaRef, Mm, MmWithUser},
    page::{PAGE_MASK, PAGE_SIZE},
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Full},
    },
    task::Task,
};

// bindgen's layout of the fields read here must be C's; see `futex.rs`.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<bindings::vm_area_struct>() == bindings::VM_AREA_STRUCT_SIZE);
    assert!(offset_of!(bindings::vm_area_struct, vm_pgoff) == bindings::VM_AREA_STRUCT_VM_PGOFF);
    assert!(offset_of!(bindings::vm_area_struct, vm_file) == bindings::VM_AREA_STRUCT_VM_FILE);
    assert!(offset_of!(bindings::file, f_mapping) == bindings::FILE_F_MAPPING);
};

/// The fields of a VMA this module uses, copied while the VMA is stable.
#[derive(Clone, Copy)]
pub(crate) struct VmaInfo {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) flags: usize,
    /// Offset of `start` in the mapped file, in pages.
    pub(crate) pgoff: usize,
}

impl VmaInfo {
    /// Copies the fields of `vma` (under its `mmap_lock`: [`VmaRef`]'s invariant).
    pub(crate) fn of(vma: &VmaRef) -> Self {
        // SAFETY: `vm_pgoff` is stable under the `mmap_lock` a `VmaRef` is found under.
        let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff };
        Self {
            start: vma.start(),
            end: vma.end(),
            flags: vma.flags(),
            pgoff,
        }
    }

    /// The file `vma` maps, with a reference, if any.
    pub(crate) fn file(vma: &VmaRef) -> Option<ARef<File>> {
        // SAFETY: `vm_file` is stable under the `mmap_lock` a `VmaRef` is found under, and a
        // mapped file stays open while it is mapped.
        let file = unsafe { (*vma.as_ptr()).vm_file };
        if file.is_null() {
            return None;
        }
        // SAFETY: `file` is a valid file (above); taking a reference is allowed in any context.
        Some(unsafe { File::from_raw_file(file) }.into())
    }
}

/// The page cache of `file`, the identity of its shared mappings (`f_mapping`, set at open).
fn mapping(file: &File) -> *mut bindings::address_space {
    // SAFETY: the file is valid while referenced; `f_mapping` does not change after open.
    unsafe { (*file.as_ptr()).f_mapping }
}

/// A VMA on a mapping's reverse map, as [`for_each_mapping_vma`] hands it out.
pub(crate) struct MappedVma<'a> {
    pub(crate) info: VmaInfo,
    /// The VMA's mm: allocated, but maybe past its last user (being torn down).
    pub(crate) mm: &'a Mm,
}

/// Calls `f` for every VMA on the `i_mmap` tree of `file`'s mapping that maps a page in
/// `[first_pgoff, last_pgoff]`, with `i_mmap_rwsem` held for reading.
///
/// Context: process context, may sleep. `f` runs under `i_mmap_rwsem`: it must not take an
/// `mmap_lock` or allocate with reclaim.
pub(crate) fn for_each_mapping_vma(
    file: &File,
    first_pgoff: usize,
    last_pgoff: usize,
    mut f: impl FnMut(&MappedVma<'_>) -> Result,
) -> Result {
    let mapping = mapping(file);
    // SAFETY: the caller's reference on `file` keeps its mapping alive.
    unsafe { bindings::i_mmap_lock_read(mapping) };
    // SAFETY: `i_mmap_rwsem` is held, so the tree and its VMAs are stable.
    let mut vma =
        unsafe { bindings::mapping_rmap_tree_iter_first(mapping, first_pgoff, last_pgoff) };
    let mut ret = Ok(());
    while !vma.is_null() {
        // SAFETY: `vma` is on the tree, stable under `i_mmap_rwsem`, and so is its `vm_mm`, which
        // stays allocated until the VMA is freed, after it leaves the tree. `Mm` is a
        // transparent wrapper around `struct mm_struct`.
        let (info, mm) = unsafe {
            let v = &*vma;
            (
                VmaInfo {
                    start: v.__bindgen_anon_1.__bindgen_anon_1.vm_start,
                    end: v.__bindgen_anon_1.__bindgen_anon_1.vm_end,
                    flags: v.__bindgen_anon_2.vm_flags,
                    pgoff: v.vm_pgoff,
                },
                Mm::from_raw(v.vm_mm),
            )
        };
        ret = f(&MappedVma { info, mm });
        if ret.is_err() {
            break;
        }
        // SAFETY: as above.
        vma = unsafe { bindings::mapping_rmap_tree_iter_next(vma, first_pgoff, last_pgoff) };
    }
    // SAFETY: locked above.
    unsafe { bindings::i_mmap_unlock_read(mapping) };
    ret
}

/// Atomically replaces the `size`-byte (4 or 8) naturally aligned word at `addr` in `mm` with 0
/// if it holds `old`. Returns whether it did.
///
/// The page is pinned with `get_user_pages_remote(FOLL_WRITE)` (which breaks copy-on-write for
/// `mm`, as a write by its owner would) and written through a kernel mapping.
///
/// Context: process context, may sleep; takes `mm`'s `mmap_lock` for reading.
pub(crate) fn compare_and_clear(
    mm: &MmWithUser,
    addr: usize,
    old: u64,
    size: usize,
) -> Result<bool> {
    if addr % size != 0 {
        return Err(EINVAL);
    }
    let mut page: *mut bindings::page = core::ptr::null_mut();
    let locked = mm.mmap_read_lock();
    // SAFETY: `mm` has users (`MmWithUser`) and its `mmap_lock` is held, as `locked == NULL`
    // requires; `page` receives one page.
    let n = unsafe {
        bindings::get_user_pages_remote(
            mm.as_raw(),
            addr & PAGE_MASK,
            1,
            bindings::FOLL_WRITE,
            &mut page,
            core::ptr::null_mut(),
        )
    };
    drop(locked);
    if n != 1 {
        return Err(EFAULT);
    }
    // SAFETY: `page` is pinned; the mapping is released below, in the same context.
    let base = unsafe { bindings::kmap_local_page(page) };
    // SAFETY: `addr` is `size`-aligned, so the word lies within this page; the kernel mapping
    // is valid until `kunmap_local()`. User space may access the word concurrently, with
    // atomic instructions on the same memory: these atomics are what make the clear safe.
    let cleared = unsafe {
        let p = base.cast::<u8>().add(addr & (PAGE_SIZE - 1));
        if size == 8 {
            Atomic::<u64>::from_ptr(p.cast())
                .cmpxchg(old, 0, Full)
                .is_ok()
        } else {
            Atomic::<u32>::from_ptr(p.cast())
                .cmpxchg(old as u32, 0, Full)
                .is_ok()
        }
    };
    // SAFETY: mapped above.
    unsafe { bindings::kunmap_local(base) };
    if cleared {
        // SAFETY: `page` is pinned.
        unsafe { bindings::set_page_dirty_lock(page) };
    }
    // SAFETY: pinned by `get_user_pages_remote()`.
    unsafe { bindings::put_page(page) };
    Ok(cleared)
}

/// Reads `buf.len()` bytes at `addr` of `task`'s memory (`access_process_vm()`).
///
/// Context: process context, may sleep; takes the task's `alloc_lock` and `mmap_lock`.
pub(crate) fn read_task_memory(task: &Task, addr: usize, buf: &mut [u8]) -> Result {
    let len = i32::try_from(buf.len()).map_err(|_| EINVAL)?;
    // SAFETY: `task` is valid; `buf` is valid for writes of its length.
    let n = unsafe {
        bindings::access_process_vm(task.as_ptr(), addr, buf.as_mut_ptr().cast(), len, 0)
    };
    if n == len {
        Ok(())
    } else {
        Err(EFAULT)
    }
}
