// SPDX-License-Identifier: GPL-2.0
/*
 * What librobust_cleanup.so interposes, seen from an unmodified glibc program:
 * for each operation, how many cleanup_robust_list() calls reached the module
 * (its debugfs counter), what the function returned, and that errno is the
 * libc's own.
 *
 *   calls with       run under LD_PRELOAD: the calls listed below are made
 *   calls without    run without it, or where the library must stay idle
 *   calls nomodule   module not loaded: only return values and errno
 *
 * Prints one "ok"/"not ok" line per check; exits 1 if any failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#define PAGE 4096
#include "cleanup_calls.h"

static int with, module = 1, failed;

static void check(int ok, const char *what, const char *detail)
{
	printf("%s %s%s%s\n", ok ? "ok" : "not ok", what, detail ? ": " : "",
	       detail ? detail : "");
	failed |= !ok;
}

static long calls(void)
{
	long n;

	if (!module)
		return 0;
	n = read_cleanup_calls();
	if (n < 0 && errno)
		check(0, "read " COUNTER, strerror(errno));
	return n;
}

static long before;

static void start(void)
{
	before = calls();
}

/* The operation made @expect calls with the library, none without it. */
static void done(const char *what, long expect)
{
	char buf[64];
	long got = calls() - before;

	if (!with)
		expect = 0;
	snprintf(buf, sizeof(buf), "%ld calls, want %ld", got, expect);
	check(got == expect, what, buf);
}

static void *map(void *at, size_t len, int flags)
{
	void *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       flags | (at ? MAP_FIXED : 0), -1, 0);

	if (p == MAP_FAILED) {
		check(0, "mmap", strerror(errno));
		exit(1);
	}
	return p;
}

static void mutex_init(pthread_mutex_t *m, int robust, int pshared, int pi)
{
	pthread_mutexattr_t a;
	int r;

	if (pthread_mutexattr_init(&a) ||
	    (robust && pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) ||
	    (pshared && pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) ||
	    (pi && pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT))) {
		check(0, "mutex attributes", NULL);
		exit(1);
	}
	r = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	if (r) {
		check(0, "pthread_mutex_init", strerror(r));
		exit(1);
	}
}

/* Destroys @m with errno preset; checks the result and errno. */
static void destroy(pthread_mutex_t *m, const char *what, long expect)
{
	char buf[64];
	int r, e;

	/* Lock and unlock first: the usual life of a mutex. */
	if (pthread_mutex_lock(m) || pthread_mutex_unlock(m))
		check(0, what, "lock/unlock failed");
	start();
	errno = 4242;
	r = pthread_mutex_destroy(m);
	e = errno;
	done(what, expect);
	snprintf(buf, sizeof(buf), "returns %d (want 0), errno %d (want 4242)", r, e);
	check(r == 0 && e == 4242, what, buf);
}

static void test_destroy(void)
{
	pthread_mutex_t local;
	pthread_mutex_t *shared = map(NULL, PAGE, MAP_SHARED | MAP_ANONYMOUS);

	mutex_init(&local, 1, 0, 0);
	destroy(&local, "destroy robust private", 1);
	mutex_init(&local, 0, 0, 0);
	destroy(&local, "destroy normal", 0);
	mutex_init(&local, 1, 0, 1);
	destroy(&local, "destroy robust PI", 1);
	mutex_init(shared, 1, 1, 0);
	destroy(shared, "destroy robust process-shared", 1);
	mutex_init(shared, 0, 1, 0);
	destroy(shared, "destroy normal process-shared", 0);
	munmap(shared, PAGE);
}

static void test_munmap(void)
{
	char *p = map(NULL, 3 * PAGE, MAP_PRIVATE | MAP_ANONYMOUS);
	char *q;
	int r, e;

	start();
	r = munmap(p + 2 * PAGE, PAGE);
	done("munmap private", 0);
	check(r == 0, "munmap private returns 0", NULL);

	/* [private][shared][shared]: one call for the two shared pages. */
	map(p + PAGE, PAGE, MAP_SHARED | MAP_ANONYMOUS);
	map(p + 2 * PAGE, PAGE, MAP_SHARED | MAP_ANONYMOUS);
	start();
	errno = 4242;
	r = munmap(p, 3 * PAGE);
	e = errno;
	done("munmap private+shared+shared", 1);
	check(r == 0 && e == 4242, "munmap returns 0, errno untouched", NULL);

	start();
	r = munmap(p, 3 * PAGE);
	done("munmap of nothing", 0);
	check(r == 0, "munmap of nothing returns 0", NULL);

	/* The call fails (EACCES: read-only now); munmap() is not affected. */
	q = map(NULL, PAGE, MAP_SHARED | MAP_ANONYMOUS);
	if (mprotect(q, PAGE, PROT_READ))
		check(0, "mprotect", strerror(errno));
	start();
	errno = 4242;
	r = munmap(q, PAGE);
	e = errno;
	done("munmap read-only shared", 1);
	check(r == 0 && e == 4242, "munmap read-only shared: returns 0, errno untouched", NULL);

	q = map(NULL, PAGE, MAP_SHARED | MAP_ANONYMOUS);
	start();
	r = munmap(q + 1, PAGE);
	e = errno;
	done("munmap unaligned", 0);
	check(r == -1 && e == EINVAL, "munmap unaligned fails with EINVAL", NULL);
	start();
	r = munmap(q, PAGE);
	done("munmap shared", 1);
	check(r == 0, "munmap shared returns 0", NULL);
}

static void test_mmap_fixed(void)
{
	char *p = map(NULL, 2 * PAGE, MAP_SHARED | MAP_ANONYMOUS);

	start();
	map(p, PAGE, MAP_PRIVATE | MAP_ANONYMOUS);
	done("mmap MAP_FIXED over shared", 1);
	start();
	map(p, PAGE, MAP_PRIVATE | MAP_ANONYMOUS);
	done("mmap MAP_FIXED over private", 0);
	start();
	munmap(p, 2 * PAGE);
	done("munmap private+shared", 1);
}

static void test_mremap(void)
{
	char *p = map(NULL, 4 * PAGE, MAP_SHARED | MAP_ANONYMOUS);
	char *hole = map(NULL, 4 * PAGE, MAP_PRIVATE | MAP_ANONYMOUS);
	char *r;
	int e;

	start();
	r = mremap(p, 4 * PAGE, 2 * PAGE, 0);
	done("mremap shrink shared", 1);
	check(r == p, "mremap shrink", NULL);

	start();
	r = mremap(p, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, hole);
	done("mremap move shared", 1);
	check(r == hole, "mremap moves", NULL);

	start();
	munmap(p, 2 * PAGE);
	done("munmap where shared memory was moved from", 0);
	start();
	munmap(hole, 4 * PAGE);
	done("munmap where shared memory was moved to", 1);

	/*
	 * Growing a shared mapping that cannot grow in place: the library's
	 * in-place attempt fails, the move succeeds, errno is untouched.
	 */
	p = map(NULL, 2 * PAGE, MAP_SHARED | MAP_ANONYMOUS);
	map(p + PAGE, PAGE, MAP_PRIVATE | MAP_ANONYMOUS);
	start();
	errno = 4242;
	r = mremap(p, PAGE, 4 * PAGE, MREMAP_MAYMOVE);
	e = errno;
	done("mremap grow shared, moved", 1);
	check(r != MAP_FAILED && r != p && e == 4242, "mremap grow moves, errno untouched", NULL);
	if (r != MAP_FAILED)
		munmap(r, 4 * PAGE);
	munmap(p, 2 * PAGE);
}

static void test_shm(void)
{
	int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
	void *p;

	if (id < 0) {
		check(0, "shmget", strerror(errno));
		return;
	}
	p = shmat(id, NULL, 0);
	shmctl(id, IPC_RMID, NULL);
	if (p == (void *)-1) {
		check(0, "shmat", strerror(errno));
		return;
	}
	start();
	check(shmdt(p) == 0, "shmdt returns 0", NULL);
	done("shmdt", 1);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	with = !strcmp(mode, "with");
	module = strcmp(mode, "nomodule") != 0;
	if (!with && module && strcmp(mode, "without")) {
		fprintf(stderr, "usage: calls with|without|nomodule\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_destroy();
	test_munmap();
	test_mmap_fixed();
	test_mremap();
	test_shm();
	return failed;
}
