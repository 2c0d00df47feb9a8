/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_FUTEX_ROBUST_H
#define _LINUX_FUTEX_ROBUST_H

#include <linux/types.h>

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
};

int futex_robust_ops_register(const struct futex_robust_ops *ops);
void futex_robust_ops_unregister(const struct futex_robust_ops *ops);

int futex_wake_robust(u32 __user *uaddr);
int futex_robust_cmpxchg(u32 *curval, u32 __user *uaddr, u32 uval,
			 u32 newval);

#endif /* _LINUX_FUTEX_ROBUST_H */
