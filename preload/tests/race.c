// SPDX-License-Identifier: GPL-2.0
/*
 * The list_op_pending race in a plain glibc program: no system call of its
 * own, only POSIX threads, mutexes, cancellation and memory mappings.
 *
 *   race destroy ROUNDS   the mutex is destroyed and its memory reused in place
 *   race munmap ROUNDS    the memory is unmapped (no destroy) and new memory
 *                         mapped at the same address
 *
 * Each round: the main thread holds a robust mutex M in shared memory; a
 * thread T blocks in pthread_mutex_lock(M), so glibc has set T's
 * list_op_pending to M. T is cancelled (asynchronous cancellation); its
 * cleanup handler keeps it alive, list_op_pending still set, while the main
 * thread unlocks M and destroys it or unmaps it, and reuses the memory with
 * what a lock owned by T would hold (T's TID | FUTEX_WAITERS). Then T exits,
 * and the kernel walks its robust list. If the walk saw list_op_pending, it
 * set FUTEX_OWNER_DIED in the reused memory: corruption.
 *
 * Prints "corrupted N of ROUNDS"; exits 0 unless something failed to run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../tests/include/futex_sleep.h"

#define PAGE 4096
#define WAITERS 0x80000000u
#define OWNER_DIED 0x40000000u

struct round {
	pthread_mutex_t *m;
	sem_t in_handler, go;
	volatile pid_t tid;
};

#define FAIL(...) do { fprintf(stderr, "race: " __VA_ARGS__); exit(2); } while (0)

static void handler(void *arg)
{
	struct round *r = arg;

	/* Cancelled inside pthread_mutex_lock(): list_op_pending still points at M. */
	sem_post(&r->in_handler);
	while (sem_wait(&r->go) && errno == EINTR)
		;
}

static void *locker(void *arg)
{
	struct round *r = arg;
	int old;

	r->tid = gettid();
	pthread_cleanup_push(handler, r);
	pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &old);
	pthread_mutex_lock(r->m);	/* blocks: the main thread holds M */
	pthread_cleanup_pop(0);
	return NULL;
}

/* Whether thread @tid sleeps in the futex system call (nr 202). */
static int blocked_in_futex(pid_t tid)
{
	return in_syscall(tid, 202);
}

static int round_once(int munmap_mode)
{
	char *mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pthread_mutexattr_t a;
	struct round r = { 0 };
	pthread_t t;
	uint32_t *word, want;
	int i, e;

	if (mem == MAP_FAILED)
		FAIL("mmap: %s\n", strerror(errno));
	r.m = (pthread_mutex_t *)(mem + 0x100);
	word = (uint32_t *)r.m;	/* __lock, the futex word, comes first */
	if (pthread_mutexattr_init(&a) ||
	    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) ||
	    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) ||
	    pthread_mutex_init(r.m, &a))
		FAIL("mutex init\n");
	pthread_mutexattr_destroy(&a);
	if (sem_init(&r.in_handler, 0, 0) || sem_init(&r.go, 0, 0))
		FAIL("sem_init: %s\n", strerror(errno));
	if ((e = pthread_mutex_lock(r.m)))
		FAIL("lock: %s\n", strerror(e));
	if ((e = pthread_create(&t, NULL, locker, &r)))
		FAIL("pthread_create: %s\n", strerror(e));
	for (i = 0; !(r.tid && blocked_in_futex(r.tid)); i++) {
		if (i == 20000)
			FAIL("the locker never blocked\n");
		usleep(1000);
	}
	if ((e = pthread_cancel(t)))
		FAIL("pthread_cancel: %s\n", strerror(e));
	while (sem_wait(&r.in_handler))
		if (errno != EINTR)
			FAIL("sem_wait: %s\n", strerror(errno));
	if ((e = pthread_mutex_unlock(r.m)))
		FAIL("unlock: %s\n", strerror(e));
	if (munmap_mode) {
		if (munmap(mem, PAGE))
			FAIL("munmap: %s\n", strerror(errno));
		if (mmap(mem, PAGE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != mem)
			FAIL("mmap at the same address: %s\n", strerror(errno));
	} else {
		if ((e = pthread_mutex_destroy(r.m)))
			FAIL("destroy: %s\n", strerror(e));
	}
	/* The memory is reused: it now holds a lock owned by T, with waiters. */
	want = (uint32_t)r.tid | WAITERS;
	for (i = 0; i < PAGE / 4; i++)
		((uint32_t *)mem)[i] = want;
	sem_post(&r.go);
	if ((e = pthread_join(t, NULL)))
		FAIL("pthread_join: %s\n", strerror(e));
	e = *word != want;
	if (e)
		printf("round: reused word %#x became %#x\n", want, *word);
	sem_destroy(&r.in_handler);
	sem_destroy(&r.go);
	if (munmap(mem, PAGE))
		FAIL("munmap: %s\n", strerror(errno));
	return e;
}

int main(int argc, char **argv)
{
	int rounds, munmap_mode, corrupted = 0, i;

	if (argc != 3 || (strcmp(argv[1], "destroy") && strcmp(argv[1], "munmap")))
		FAIL("usage: race destroy|munmap ROUNDS\n");
	munmap_mode = !strcmp(argv[1], "munmap");
	rounds = atoi(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < rounds; i++)
		corrupted += round_once(munmap_mode);
	printf("corrupted %d of %d\n", corrupted, rounds);
	return 0;
}
