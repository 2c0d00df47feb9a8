/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_FUTEX_ROBUST_H
#define _LINUX_FUTEX_ROBUST_H

#include <linux/types.h>

struct module;
struct task_struct;

/**
 * struct futex_robust_ops - robust list operations provided by a module
 * @owner:			module providing the operations; pinned
 *				for the duration of every call
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
 * @robust_list_set:		called by set_robust_list(2), native and
 *				compat, after @tsk (== current) recorded its
 *				new head, which may be NULL. Process context;
 *				may sleep. Lets the module keep track of the
 *				tasks that have a robust list.
 *
 * At most one set of operations is registered at a time. Without one,
 * futex_cleanup() uses the built-in walkers of kernel/futex/core.c.
 */
struct futex_robust_ops {
	struct module *owner;
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
