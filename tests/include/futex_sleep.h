/* SPDX-License-Identifier: GPL-2.0 */
/*
 * For the C test programs: whether a thread of this process sleeps in a
 * system call, read from /proc/self/task/TID/syscall (its first field is the
 * number of the call the thread is in).
 */
#ifndef ROBUST_FUTEX_TESTS_FUTEX_SLEEP_H
#define ROBUST_FUTEX_TESTS_FUTEX_SLEEP_H

#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* Whether thread @tid is in system call @nr (the futex call: 202 on x86_64, 240 on i386). */
static inline int in_syscall(pid_t tid, int nr)
{
	char path[64], buf[32] = "", want[16];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	snprintf(want, sizeof(want), "%d ", nr);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return !strncmp(buf, want, strlen(want));
}

#endif
