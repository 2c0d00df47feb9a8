// SPDX-License-Identifier: GPL-2.0
/*
 * The glibc mutex layout librobust_cleanup.so relies on, checked against the
 * glibc this runs on: the futex word (__lock) first, __kind at byte 16 with
 * the robust bit (16) set for robust mutexes only, and -1 once destroyed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <gnu/libc-version.h>

static int failed;

#define CHECK(cond, ...) do { if (!(cond)) { printf("not ok: " __VA_ARGS__); failed = 1; } } while (0)

static int kind(pthread_mutex_t *m)
{
	int k;

	memcpy(&k, (char *)m + 16, sizeof(k));
	return k;
}

static void one(int robust, int pi, int pshared)
{
	pthread_mutexattr_t a;
	pthread_mutex_t m;
	unsigned int word;

	pthread_mutexattr_init(&a);
	if (robust)
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (pi)
		pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
	if (pshared)
		pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	CHECK(pthread_mutex_init(&m, &a) == 0, "init\n");
	pthread_mutexattr_destroy(&a);
	CHECK(!!(kind(&m) & 16) == robust, "robust %d pi %d pshared %d: kind %#x\n",
	      robust, pi, pshared, kind(&m));
	CHECK(pthread_mutex_lock(&m) == 0, "lock\n");
	memcpy(&word, &m, sizeof(word));
	/* Robust and PI futex words hold the owner's TID (normal ones 0, 1, 2). */
	CHECK(!(robust || pi) || (word & 0x3fffffff) == (unsigned int)gettid(),
	      "robust %d pi %d: futex word %#x, tid %d\n", robust, pi, word, gettid());
	CHECK(pthread_mutex_unlock(&m) == 0, "unlock\n");
	CHECK(pthread_mutex_destroy(&m) == 0, "destroy\n");
	CHECK(kind(&m) == -1, "destroyed: kind %#x\n", kind(&m));
}

int main(void)
{
	CHECK(offsetof(struct __pthread_mutex_s, __kind) == 16, "__kind at %zu\n",
	      offsetof(struct __pthread_mutex_s, __kind));
	for (int i = 0; i < 8; i++)
		one(i & 1, !!(i & 2), !!(i & 4));
	if (!failed)
		printf("glibc %s: the layout librobust_cleanup.so reads\n", gnu_get_libc_version());
	return failed;
}
