/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * cleanup_robust_list(2): userspace interface of the experimental system call.
 *
 * long cleanup_robust_list(void *addr, size_t len, unsigned int flags);
 *
 * Clears, in every task that maps the memory backing [addr, addr + len),
 * the robust list heads' list_op_pending slots whose futex word falls in
 * that range. Called by pthread_mutex_destroy() of robust mutexes before
 * the memory can be reused. See Documentation/robust-futex/ and
 * Documentation/robust-futex/cleanup_robust_list.2.
 */
#ifndef _UAPI_LINUX_ROBUST_CLEANUP_H
#define _UAPI_LINUX_ROBUST_CLEANUP_H

/* The same number in the x86_64 and the i386 system call tables. */
#ifndef __NR_cleanup_robust_list
#if defined(__x86_64__) || defined(__i386__)
#define __NR_cleanup_robust_list 500
#endif
#endif

/*
 * Only the tasks of the caller's address space: for a caller whose mapping
 * of the range goes away (munmap(), mmap(MAP_FIXED), shmdt()) while the
 * memory, and the locks in it, may live on in other processes. Also in the
 * patched <linux/futex.h>.
 */
#ifndef CLEANUP_ROBUST_LIST_MM_ONLY
#define CLEANUP_ROBUST_LIST_MM_ONLY 0x00000001
#endif
#define CLEANUP_ROBUST_LIST_FLAGS_MASK CLEANUP_ROBUST_LIST_MM_ONLY

#endif /* _UAPI_LINUX_ROBUST_CLEANUP_H */
