/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_FUTEX_ROBUST_H
#define _LINUX_FUTEX_ROBUST_H

#include <linux/jump_label.h>
#include <linux/mm.h>
#include <linux/types.h>

struct file;
struct task_struct;

/**
 * struct futex_robust_ops - robust list operations provided by a module
 * @exit_robust_list:		walk @tsk->futex.robust_list at exit or exec.
 *				Called with @tsk == current and
 *				@tsk->futex.exit_mutex held; may sleep and
 *				fault. NULL: the built-in walker is used.
 * @compat_exit_robust_list:	the same for @tsk->futex.compat_robust_list.
 * @cleanup_robust_list:	implementation of cleanup_robust_list(2),
 *				called in process context with arguments
 *				already validated by the system call; may
 *				sleep. NULL: the system call fails with
 *				-ENOSYS.
 * @robust_list_set:		called after @tsk (== current) recorded a
 *				new native or compat head, possibly NULL:
 *				by set_robust_list(2), and where a robust
 *				unlock (FUTEX_ROBUST_UNLOCK) drops a head
 *				whose list_op_pending it cannot clear.
 *				Process context; may sleep. With the exit
 *				walks, which run at every exit and exec of a
 *				task that has a head, this lets the module
 *				keep track of the tasks that have one.
 * @unmap:			called where a VM_SHARED area leaves
 *				current->mm for good (munmap(2), mmap(2)
 *				MAP_FIXED over it, mremap(2), shmdt(2)),
 *				before it is freed, with the mmap lock held
 *				for writing; not at exit_mmap().
 *				May sleep and allocate; must not access user
 *				memory (a fault would take the mmap lock).
 *				Robust list entries may still point into the
 *				area: this lets the module keep what it needs
 *				to reach them, the file and the offsets.
 *				Returns true to have unmap_done() called.
 * @unmap_done:		called once current, after one or more unmap()
 *				calls that returned true, returns to user space (or exits, with
 *				no mm left), with no lock held: process
 *				context, may sleep and access user memory.
 *
 * At most one set of operations is registered at a time. Without one,
 * futex_cleanup() uses the built-in walkers of kernel/futex/core.c. Every
 * call runs in an SRCU read-side critical section that
 * futex_robust_ops_unregister() waits for, so a module unregisters its
 * operations before it frees anything they use, and can unload as soon as
 * that returns.
 */
struct futex_robust_ops {
	void (*exit_robust_list)(struct task_struct *tsk);
	void (*compat_exit_robust_list)(struct task_struct *tsk);
	long (*cleanup_robust_list)(unsigned long addr, size_t len,
				    unsigned int flags);
	void (*robust_list_set)(struct task_struct *tsk);
	bool (*unmap)(struct vm_area_struct *vma);
	void (*unmap_done)(void);
};

int futex_robust_ops_register(const struct futex_robust_ops *ops);
void futex_robust_ops_unregister(const struct futex_robust_ops *ops);

int futex_wake_robust(u32 __user *uaddr);
int futex_robust_file_read(struct file *file, loff_t pos, void *buf,
			   size_t len);
int futex_robust_file_cmpxchg(u32 *curval, struct file *file, loff_t pos,
			      u32 uval, u32 newval);
int futex_wake_robust_file(struct file *file, loff_t pos);

#ifdef CONFIG_FUTEX
DECLARE_STATIC_KEY_FALSE(futex_robust_unmap_key);
void __futex_robust_unmap(struct vm_area_struct *vma);

/* Whether registered operations want to hear of unmaps: a static branch. */
static inline bool futex_robust_unmap_wanted(void)
{
	return static_branch_unlikely(&futex_robust_unmap_key);
}

/*
 * @vma leaves current->mm for good: tell the registered operations if it is
 * shared memory. Call it only if futex_robust_unmap_wanted().
 */
static inline void futex_robust_unmap(struct vm_area_struct *vma)
{
	if (vma->vm_flags & VM_SHARED)
		__futex_robust_unmap(vma);
}
#else
static inline bool futex_robust_unmap_wanted(void)
{
	return false;
}

static inline void futex_robust_unmap(struct vm_area_struct *vma) { }
#endif

#endif /* _LINUX_FUTEX_ROBUST_H */
