/* SPDX-License-Identifier: GPL-2.0 */
/*
 * For the preload library's test programs: how many cleanup_robust_list()
 * calls reached the robust_futex module, from its debugfs counter.
 */
#ifndef ROBUST_FUTEX_PRELOAD_CLEANUP_CALLS_H
#define ROBUST_FUTEX_PRELOAD_CLEANUP_CALLS_H

#include <errno.h>
#include <stdio.h>

#define COUNTER "/sys/kernel/debug/robust_futex/cleanup_calls"

/* The counter, or -1 (errno set where it could not be opened, 0 if unparsable). */
static inline long read_cleanup_calls(void)
{
	FILE *f = fopen(COUNTER, "r");
	long n = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &n) != 1) {
		n = -1;
		errno = 0;
	}
	fclose(f);
	return n;
}

#endif
