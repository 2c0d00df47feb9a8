// SPDX-License-Identifier: GPL-2.0
/*
 * What librobust_cleanup.so adds to the calls it interposes, for make bench.
 * Run under LD_PRELOAD: each operation is timed (the call only, in TSC ticks)
 * alternately through the interposed function and through glibc's own, looked
 * up in libc.so.6 itself, so that both conditions share one process and one
 * moment and host noise cancels. For each of ROUNDS rounds of K calls each it
 * prints "OP WITH WITHOUT" (mean ticks per call).
 *
 *   overhead ROUNDS K
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <x86intrin.h>

#define PAGE 4096

static int (*libc_munmap)(void *, size_t);
static int (*libc_destroy)(pthread_mutex_t *);

static void *map(int flags)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	*(volatile char *)p = 1;
	return p;
}

static unsigned long long unmap_once(int flags, int (*fn)(void *, size_t))
{
	void *p = map(flags);
	unsigned long long t = __rdtsc();

	if (fn(p, PAGE)) {
		perror("munmap");
		exit(1);
	}
	return __rdtsc() - t;
}

static unsigned long long destroy_once(pthread_mutexattr_t *a,
				       int (*fn)(pthread_mutex_t *))
{
	pthread_mutex_t m;
	unsigned long long t;

	if (pthread_mutex_init(&m, a) || pthread_mutex_lock(&m) ||
	    pthread_mutex_unlock(&m)) {
		fprintf(stderr, "mutex\n");
		exit(1);
	}
	t = __rdtsc();
	if (fn(&m)) {
		fprintf(stderr, "destroy\n");
		exit(1);
	}
	return __rdtsc() - t;
}

/* K calls each way, alternating which goes first. */
static void munmaps(const char *op, int k, int flags)
{
	unsigned long long with = 0, without = 0;
	int i;

	for (i = 0; i < k; i++) {
		if (i & 1) {
			with += unmap_once(flags, munmap);
			without += unmap_once(flags, libc_munmap);
		} else {
			without += unmap_once(flags, libc_munmap);
			with += unmap_once(flags, munmap);
		}
	}
	printf("%s %.1f %.1f\n", op, (double)with / k, (double)without / k);
}

static void destroys(const char *op, int k, int robust)
{
	unsigned long long with = 0, without = 0;
	pthread_mutexattr_t a;
	int i;

	pthread_mutexattr_init(&a);
	if (robust)
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	for (i = 0; i < k; i++) {
		if (i & 1) {
			with += destroy_once(&a, pthread_mutex_destroy);
			without += destroy_once(&a, libc_destroy);
		} else {
			without += destroy_once(&a, libc_destroy);
			with += destroy_once(&a, pthread_mutex_destroy);
		}
	}
	pthread_mutexattr_destroy(&a);
	printf("%s %.1f %.1f\n", op, (double)with / k, (double)without / k);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 21;
	int k = argc > 2 ? atoi(argv[2]) : 1000;
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	void *shared;
	int r;

	if (!libc || !(libc_munmap = dlsym(libc, "munmap")) ||
	    !(libc_destroy = dlsym(libc, "pthread_mutex_destroy"))) {
		fprintf(stderr, "libc.so.6: %s\n", dlerror());
		return 1;
	}
	if ((void *)libc_munmap == (void *)munmap) {
		fprintf(stderr, "munmap is not interposed: run under LD_PRELOAD\n");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (r = 0; r < rounds; r++) {
		munmaps("munmap_private", k, MAP_PRIVATE);
		munmaps("munmap_shared", k, MAP_SHARED);
		destroys("destroy_normal", k, 0);
		destroys("destroy_robust", k, 1);
		/* With one shared mapping recorded, private munmap() looks it up. */
		shared = map(MAP_SHARED);
		munmaps("munmap_private_beside_shared", k, MAP_PRIVATE);
		munmap(shared, PAGE);
	}
	return 0;
}
