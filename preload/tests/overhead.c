// SPDX-License-Identifier: GPL-2.0
/*
 * What librobust_cleanup.so adds to the calls it interposes, for make bench:
 * the mean cost, in TSC ticks, of K calls of each operation, only the call
 * itself timed (its setup is not). Run once under LD_PRELOAD and once
 * without, in alternation; the bench takes ratios within each pair.
 *
 *   overhead K     prints "OP TICKS" per operation
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <x86intrin.h>

#define PAGE 4096

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

static double munmaps(int k, int flags)
{
	unsigned long long sum = 0, t;
	int i;

	for (i = 0; i < k; i++) {
		void *p = map(flags);

		t = __rdtsc();
		if (munmap(p, PAGE)) {
			perror("munmap");
			exit(1);
		}
		sum += __rdtsc() - t;
	}
	return (double)sum / k;
}

static double destroys(int k, int robust)
{
	unsigned long long sum = 0, t;
	pthread_mutexattr_t a;
	pthread_mutex_t m;
	int i;

	pthread_mutexattr_init(&a);
	if (robust)
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	for (i = 0; i < k; i++) {
		if (pthread_mutex_init(&m, &a) || pthread_mutex_lock(&m) ||
		    pthread_mutex_unlock(&m)) {
			fprintf(stderr, "mutex\n");
			exit(1);
		}
		t = __rdtsc();
		if (pthread_mutex_destroy(&m)) {
			fprintf(stderr, "destroy\n");
			exit(1);
		}
		sum += __rdtsc() - t;
	}
	pthread_mutexattr_destroy(&a);
	return (double)sum / k;
}

int main(int argc, char **argv)
{
	int k = argc > 1 ? atoi(argv[1]) : 1000;
	void *shared;

	printf("munmap_private %.1f\n", munmaps(k, MAP_PRIVATE));
	printf("munmap_shared %.1f\n", munmaps(k, MAP_SHARED));
	printf("destroy_normal %.1f\n", destroys(k, 0));
	printf("destroy_robust %.1f\n", destroys(k, 1));
	/* With one shared mapping recorded, private munmap() looks it up. */
	shared = map(MAP_SHARED);
	printf("munmap_private_beside_shared %.1f\n", munmaps(k, MAP_PRIVATE));
	munmap(shared, PAGE);
	return 0;
}
