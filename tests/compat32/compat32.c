// SPDX-License-Identifier: GPL-2.0
/*
 * 32-bit helper of the robust futex harness: exercises the compat robust
 * list walk and the i386 entry of cleanup_robust_list(). Built with
 * gcc -m32 -static; run by the 64-bit harness.
 *
 *   compat32 list     a child registers a compat robust list and dies
 *   compat32 syscall c|rust  the i386 system call: validation, then ENOSYS
 *                    without the module (c) or dispatch to it (rust)
 *   compat32 cleanup  a 32-bit child holds a stale list_op_pending in shared
 *                    memory; cleanup_robust_list() through the i386 entry
 *                    clears it
 *   compat32 fuzz-server FD  the 32-bit side of the harness's fuzzer: its
 *                    threads register the generated lists and die
 *   compat32 glibc    32-bit glibc robust mutexes (threads, processes, shared
 *                    memory, PI, waiters): every owner's death is seen
 *   compat32 unmap c|rust  a 32-bit child owns three locks, the second in a
 *                    memfd it unmaps before it dies: the built-in walk (c)
 *                    marks the first only, the module's (rust) all three
 *
 * Prints one line per failed check; exits 0 if all passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../include/futex_sleep.h"

#include "../../include/uapi/linux/robust_cleanup.h"

/* A TID no task has: the next forked child would likely get getpid() + 1. */
#define OTHER_TID 0x3ffffffeu

static int failures;

#define CHECK(cond, ...)						\
	do {								\
		if (!(cond)) {						\
			printf("%s:%d: ", __func__, __LINE__);		\
			printf(__VA_ARGS__);				\
			printf("\n");					\
			failures++;					\
		}							\
	} while (0)

struct head32 {
	uint32_t next;
	int32_t futex_offset;
	uint32_t pending;
};

static void link32(char *mem, uint32_t *e, int n, int32_t off, uint32_t pending)
{
	struct head32 *h = (struct head32 *)mem;
	int i;

	h->next = n ? e[0] : (uint32_t)(uintptr_t)h;
	h->futex_offset = off;
	h->pending = pending;
	for (i = 0; i < n; i++)
		*(uint32_t *)(uintptr_t)(e[i] & ~1u) =
			i + 1 < n ? e[i + 1] : (uint32_t)(uintptr_t)h;
}

static volatile uint32_t *word(uint32_t entry, int32_t off)
{
	return (volatile uint32_t *)(uintptr_t)((entry & ~1u) + (uint32_t)off);
}

static int test_list(void)
{
	char *mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint32_t base = (uint32_t)(uintptr_t)mem, e[4], pending;
	int32_t off = -16;
	int status, i;
	pid_t pid;

	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	if (mem == MAP_FAILED)
		return 1;
	for (i = 0; i < 4; i++)
		e[i] = base + 0x100 + 0x40 * i;
	e[1] |= 1;			/* a PI entry */
	pending = base + 0x400;
	*word(e[3], off) = OTHER_TID;	/* another owner */
	link32(mem, e, 4, off, pending);

	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		uint32_t tid = syscall(SYS_gettid);

		if (syscall(SYS_set_robust_list, mem, sizeof(struct head32)))
			_exit(2);
		*word(e[0], off) = tid;
		*word(e[1], off) = tid;
		*word(e[2], off) = tid | FUTEX_WAITERS;
		*word(pending, off) = tid;
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x", status);
	CHECK(*word(e[0], off) == FUTEX_OWNER_DIED, "e0 %#x", *word(e[0], off));
	CHECK(*word(e[1], off) == FUTEX_OWNER_DIED, "e1 (PI) %#x", *word(e[1], off));
	CHECK(*word(e[2], off) == (FUTEX_OWNER_DIED | FUTEX_WAITERS),
	      "e2 %#x", *word(e[2], off));
	CHECK(*word(e[3], off) == OTHER_TID, "e3 (other owner) %#x",
	      *word(e[3], off));
	CHECK(*word(pending, off) == FUTEX_OWNER_DIED, "pending %#x",
	      *word(pending, off));
	return 0;
}

static long cleanup(uint32_t addr, uint32_t len, uint32_t flags)
{
	long r = syscall(__NR_cleanup_robust_list, addr, len, flags);

	return r < 0 ? -errno : r;
}

/* A holder of a compat robust list head whose list_op_pending points at a word. */
struct slot_holder {
	struct head32 *h;
	volatile uint32_t *ready, *go;
};

static void hold(struct slot_holder *s)
{
	if (syscall(SYS_set_robust_list, s->h, sizeof(*s->h)))
		return;
	*s->ready = 1;
	while (!*s->go)
		if (syscall(SYS_futex, s->go, FUTEX_WAIT, 0, NULL, NULL, 0) &&
		    errno != EAGAIN && errno != EINTR)
			return;
}

static void *hold_thread(void *arg)
{
	hold(arg);
	return NULL;
}

static void prepare(struct head32 *h, uint32_t word)
{
	h->next = (uint32_t)(uintptr_t)h;
	h->futex_offset = -0x20;
	h->pending = word + 0x20;
}

/*
 * The i386 entry's bad input, one class per row, with the module (rust) or
 * without (c): the errno of each, and no list_op_pending changed anywhere
 * (a holder process and a holder thread point into memory the rows name).
 */
static int test_syscall(int module)
{
	const uint32_t page = 4096;
	char *ctl = mmap(NULL, page, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *mem = mmap(NULL, 8 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t base = (uint32_t)(uintptr_t)mem;
	struct slot_holder holders[2] = {
		{ (struct head32 *)ctl, (uint32_t *)(ctl + 2048), (uint32_t *)(ctl + 3072) },
		{ (struct head32 *)(ctl + 64), (uint32_t *)(ctl + 2052), (uint32_t *)(ctl + 3072) },
	};
	uint32_t before[2];
	pthread_t t;
	pid_t pid;
	int status, i;
	long r;

	CHECK(ctl != MAP_FAILED && mem != MAP_FAILED, "mmap: %s", strerror(errno));
	if (ctl == MAP_FAILED || mem == MAP_FAILED)
		return 1;
	/*
	 * [0] RW shared, [1] PROT_NONE, [2] read-only, [3] unmapped,
	 * [4] exec-only, [5] RW private, [6] RW shared, [7] unmapped.
	 */
	CHECK(mmap(mem, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
		   -1, 0) == mem, "mmap [0]");
	CHECK(!mprotect(mem + page, page, PROT_NONE), "mprotect [1]");
	CHECK(!mprotect(mem + 2 * page, page, PROT_READ), "mprotect [2]");
	CHECK(!munmap(mem + 3 * page, page), "munmap [3]");
	CHECK(!mprotect(mem + 4 * page, page, PROT_EXEC), "mprotect [4]");
	CHECK(mmap(mem + 6 * page, page, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == mem + 6 * page, "mmap [6]");
	CHECK(!munmap(mem + 7 * page, page), "munmap [7]");
#define AT(pg, off) (base + (pg) * page + (off))
	struct {
		const char *class;
		uint32_t addr, len, flags;
		int with, without;
	} rows[] = {
		{ "flags 2 (unknown)", AT(0, 0x100), 4, 2, EINVAL, EINVAL },
		{ "flags MM_ONLY | 2", AT(0, 0x100), 4, 3, EINVAL, EINVAL },
		{ "addr misaligned by 2", AT(0, 0x102), 4, 0, EINVAL, EINVAL },
		{ "addr misaligned by 1", AT(0, 0x101), 4, 0, EINVAL, EINVAL },
		{ "len 0", AT(0, 0x100), 0, 0, EINVAL, EINVAL },
		{ "len 2", AT(0, 0x100), 2, 0, EINVAL, EINVAL },
		{ "len 6", AT(0, 0x100), 6, 0, EINVAL, EINVAL },
		{ "wraps around 2^32", AT(0, 0x100), 0xfffffffc, 0, EFAULT, EFAULT },
		{ "wraps at the top", 0xfffff000, 0x2000, 0, EFAULT, EFAULT },
		{ "starts above user space", 0xffffe000, 4, 0, EFAULT, EFAULT },
		{ "ends above user space", 0xffffd000, 0x2000, 0, EFAULT, EFAULT },
		{ "NULL page", 0, 4, 0, EFAULT, ENOSYS },
		{ "PROT_NONE", AT(1, 0x100), 4, 0, EFAULT, ENOSYS },
		{ "read-only", AT(2, 0x100), 4, 0, EACCES, ENOSYS },
		{ "unmapped hole", AT(3, 0x100), 4, 0, EFAULT, ENOSYS },
		{ "exec-only", AT(4, 0x100), 4, 0, EACCES, ENOSYS },
		{ "mapping then PROT_NONE", AT(0, page - 4), 8, 0, EFAULT, ENOSYS },
		{ "read-only then hole", AT(2, page - 4), 8, 0, EFAULT, ENOSYS },
		{ "PROT_NONE then read-only", AT(1, page - 4), 8, 0, EFAULT, ENOSYS },
		{ "exec-only then writable", AT(4, page - 4), 8, 0, EACCES, ENOSYS },
		{ "two writable mappings then hole", AT(5, 0), 3 * page, 0, EFAULT, ENOSYS },
		{ "MM_ONLY, hole", AT(3, 0x100), 4, 1, EFAULT, ENOSYS },
	};
	int n = sizeof(rows) / sizeof(rows[0]);

	prepare(holders[0].h, AT(0, 0x100));
	prepare(holders[1].h, AT(5, 0x100));
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		hold(&holders[0]);
		_exit(0);
	}
	CHECK(!pthread_create(&t, NULL, hold_thread, &holders[1]), "pthread_create");
	for (i = 0; i < 20000 && !(*holders[0].ready && *holders[1].ready); i++)
		usleep(1000);
	CHECK(*holders[0].ready && *holders[1].ready, "holders never got ready");
	for (i = 0; i < 2; i++)
		before[i] = holders[i].h->pending;
	for (i = 0; i < n; i++) {
		int want = module ? rows[i].with : rows[i].without;

		r = cleanup(rows[i].addr, rows[i].len, rows[i].flags);
		CHECK(r == -want, "%s: %ld, want -%d", rows[i].class, r, want);
	}
	CHECK(n >= 15, "%d classes", n);
	for (i = 0; i < 2; i++)
		CHECK(holders[i].h->pending == before[i] && before[i],
		      "holder %d's slot %#x, was %#x", i, holders[i].h->pending, before[i]);
	/* Valid: over two mappings and a word nobody points at. */
	r = cleanup(AT(5, page - 4), 8, 0);
	CHECK(r == (module ? 0 : -ENOSYS), "valid, two mappings: %ld", r);
	*holders[0].go = 1;
	r = syscall(SYS_futex, holders[0].go, FUTEX_WAKE, 2, NULL, NULL, 0);
	CHECK(r >= 0, "FUTEX_WAKE: %s", strerror(errno));
	CHECK(!pthread_join(t, NULL), "pthread_join");
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "holder status %#x", status);
#undef AT
	return 0;
}

static int test_cleanup(void)
{
	char *ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct head32 *h = (struct head32 *)ctl;
	volatile uint32_t *ready = (uint32_t *)(ctl + 2048);
	volatile uint32_t *go = (uint32_t *)(ctl + 3072);
	uint32_t word = (uint32_t)(uintptr_t)mem + 0x80;
	int status, i;
	long r;
	pid_t pid;

	h->next = (uint32_t)(uintptr_t)h;
	h->futex_offset = -0x20;
	h->pending = word + 0x20;
	CHECK(ctl != MAP_FAILED && mem != MAP_FAILED, "mmap: %s", strerror(errno));
	if (ctl == MAP_FAILED || mem == MAP_FAILED)
		return 1;
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (syscall(SYS_set_robust_list, h, sizeof(*h)))
			_exit(2);
		*ready = 1;
		/* Sleep in the i386 futex call (time32: CONFIG_COMPAT_32BIT_TIME). */
		while (!*go)
			if (syscall(SYS_futex, go, FUTEX_WAIT, 0, NULL, NULL, 0) &&
			    errno != EAGAIN && errno != EINTR)
				_exit(3);
		_exit(0);
	}
	for (i = 0; i < 20000 && !*ready; i++)
		usleep(1000);
	CHECK(*ready, "holder never got ready");
	CHECK((r = cleanup(word + 4, 4, 0)) == 0, "next word: %ld", r);
	CHECK(h->pending == word + 0x20, "slot cleared for another word");
	CHECK((r = cleanup(word, 4, 0)) == 1, "cleanup: %ld", r);
	CHECK(h->pending == 0, "slot after cleanup: %#x", h->pending);
	*go = 1;
	r = syscall(SYS_futex, go, FUTEX_WAKE, 1, NULL, NULL, 0);
	CHECK(r >= 0, "FUTEX_WAKE: %s", strerror(errno));
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "holder status %#x", status);
	return 0;
}

/*
 * 32-bit glibc robust mutexes, as a 32-bit program uses them: glibc registers
 * each thread's compat robust list; the kernel (built-in walker or module)
 * walks it when an owner dies.
 */
static void mutex_init32(pthread_mutex_t *m, int pshared, int pi)
{
	pthread_mutexattr_t a;
	int r;

	CHECK(!pthread_mutexattr_init(&a), "mutexattr_init");
	CHECK(!pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST), "setrobust");
	if (pshared)
		CHECK(!pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED), "setpshared");
	if (pi)
		CHECK(!pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT), "setprotocol");
	r = pthread_mutex_init(m, &a);
	CHECK(!r, "mutex_init: %s", strerror(r));
	pthread_mutexattr_destroy(&a);
}

/* Locks @m with a deadline: a lost wake fails instead of hanging. */
static int lock_within(pthread_mutex_t *m, int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	return pthread_mutex_timedlock(m, &ts);
}

/* The owner is gone: the next locker gets EOWNERDEAD, makes it consistent. */
static void expect_owner_died(pthread_mutex_t *m, const char *what)
{
	int r = lock_within(m, 20);

	CHECK(r == EOWNERDEAD, "%s: lock after the owner died: %s", what, strerror(r));
	if (r == EOWNERDEAD) {
		CHECK(!pthread_mutex_consistent(m), "%s: consistent", what);
		CHECK(!pthread_mutex_unlock(m), "%s: unlock", what);
	}
}

static void *lock_and_exit(void *arg)
{
	if (pthread_mutex_lock(arg))
		return (void *)1;
	return NULL;		/* exits holding it */
}

/* Whether thread @tid sleeps in the futex system call (nr 240). */
static int blocked_in_futex(pid_t tid)
{
	return in_syscall(tid, 240);
}

struct waiter {
	pthread_mutex_t *m;
	volatile pid_t tid;
	int result;
};

static void *wait_for(void *arg)
{
	struct waiter *w = arg;

	w->tid = syscall(SYS_gettid);
	w->result = lock_within(w->m, 20);
	if (w->result == EOWNERDEAD) {
		pthread_mutex_consistent(w->m);
		pthread_mutex_unlock(w->m);
	}
	return NULL;
}

/*
 * A forked child locks @m (shared memory) and is killed holding it, while a
 * thread of ours waits for it (if @waiter): the waiter, or our next lock,
 * gets EOWNERDEAD.
 */
static void process_owner_killed(int pi, int waiter, const char *what)
{
	pthread_mutex_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	volatile int *locked = (int *)((char *)m + 2048);
	struct waiter w = { m, 0, -1 };
	pthread_t t;
	int status, i;
	pid_t pid;

	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	if (m == MAP_FAILED)
		return;
	mutex_init32(m, 1, pi);
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (pthread_mutex_lock(m))
			_exit(2);
		*locked = 1;
		for (;;)
			pause();
	}
	for (i = 0; i < 20000 && !*locked; i++)
		usleep(1000);
	CHECK(*locked, "%s: the owner never locked", what);
	if (waiter) {
		CHECK(!pthread_create(&t, NULL, wait_for, &w), "pthread_create");
		for (i = 0; i < 20000 && !(w.tid && blocked_in_futex(w.tid)); i++)
			usleep(1000);
		CHECK(w.tid && blocked_in_futex(w.tid), "%s: the waiter never slept", what);
	}
	CHECK(!kill(pid, SIGKILL), "kill: %s", strerror(errno));
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFSIGNALED(status), "%s: owner status %#x", what, status);
	if (waiter) {
		CHECK(!pthread_join(t, NULL), "pthread_join");
		CHECK(w.result == EOWNERDEAD, "%s: waiter got %s", what, strerror(w.result));
	} else {
		expect_owner_died(m, what);
	}
	munmap(m, 4096);
}

static int test_glibc(void)
{
	pthread_mutex_t m;
	pthread_t t;
	void *ret;

	/* A thread exits holding a private robust mutex. */
	mutex_init32(&m, 0, 0);
	CHECK(!pthread_create(&t, NULL, lock_and_exit, &m), "pthread_create");
	CHECK(!pthread_join(t, &ret) && !ret, "thread");
	expect_owner_died(&m, "thread owner exits");
	CHECK(!pthread_mutex_destroy(&m), "destroy");

	/* The same with priority inheritance. */
	mutex_init32(&m, 0, 1);
	CHECK(!pthread_create(&t, NULL, lock_and_exit, &m), "pthread_create");
	CHECK(!pthread_join(t, &ret) && !ret, "thread");
	expect_owner_died(&m, "PI thread owner exits");
	CHECK(!pthread_mutex_destroy(&m), "destroy");

	process_owner_killed(0, 0, "process owner killed");
	process_owner_killed(0, 1, "process owner killed, waiter");
	process_owner_killed(1, 0, "PI process owner killed");
	process_owner_killed(1, 1, "PI process owner killed, waiter");
	return 0;
}

/*
 * The 32-bit side of the harness's differential fuzzer (tests/harness/src/
 * fuzz.rs, which lays out the memfd and the control page after it). For each
 * case the harness requests, the server maps the list memory at 0x50000000
 * (which also undoes the last case's page modes) and starts a thread that
 * stores its TID in the owned words, sets the page modes, registers the head,
 * and waits for the go, then unmaps the pages of mode 4; that thread's exit
 * is the walk under test. The server
 * reports when the thread has been joined (the walk precedes the clearing of
 * the thread's TID that pthread_join() waits for).
 */
#define FUZZ_FIX 0x50000000u
#define FUZZ_PAGES 8
#define FUZZ_LEN (FUZZ_PAGES * 4096)
#define FUZZ_SEQ (4080 / 4)
#define FUZZ_DONE (4084 / 4)
#define FUZZ_STATUS (4088 / 4)
#define FUZZ_QUIT 0xffffffffu

static void *fuzz_death(void *arg)
{
	volatile uint32_t *c = arg;
	char *list = (char *)FUZZ_FIX;
	uint32_t tid = syscall(SYS_gettid), i, n = c[64 / 4];

	for (i = 0; i < n; i++)
		*(uint32_t *)(list + c[(68 + 8 * i) / 4]) = tid | c[(68 + 8 * i + 4) / 4];
	for (i = 0; i < FUZZ_PAGES; i++) {
		char *at = list + 4096 * i;
		int r = 0;

		switch (c[(16 + 4 * i) / 4]) {
		case 1:
			r = mprotect(at, 4096, PROT_READ);
			break;
		case 2:
			r = mprotect(at, 4096, PROT_NONE);
			break;
		case 3:
			r = munmap(at, 4096);
			break;
		}
		if (r)
			return (void *)3;
	}
	if (syscall(SYS_set_robust_list, list + c[8 / 4], sizeof(struct head32)))
		return (void *)4;
	c[0] = tid;
	if (syscall(SYS_futex, &c[0], FUTEX_WAKE, 1, NULL, NULL, 0) < 0)
		return (void *)5;
	while (!c[1])
		if (syscall(SYS_futex, &c[1], FUTEX_WAIT, 0, NULL, NULL, 0) &&
		    errno != EAGAIN && errno != EINTR)
			return (void *)5;
	/* Mode 4: unmapped with the list registered, just before the death. */
	for (i = 0; i < FUZZ_PAGES; i++)
		if (c[(16 + 4 * i) / 4] == 4 && munmap(list + 4096 * i, 4096))
			return (void *)6;
	return NULL;
}

static int fuzz_server(int fd)
{
	volatile uint32_t *c = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
				    fd, FUZZ_LEN);
	uint32_t seq = 0;

	if (c == MAP_FAILED)
		return 2;
	for (;;) {
		void *status = (void *)2;
		pthread_t t;

		while (c[FUZZ_SEQ] == seq)
			if (syscall(SYS_futex, &c[FUZZ_SEQ], FUTEX_WAIT, seq, NULL,
				    NULL, 0) && errno != EAGAIN && errno != EINTR)
				return 6;
		seq = c[FUZZ_SEQ];
		if (seq == FUZZ_QUIT)
			return 0;
		if (mmap((void *)FUZZ_FIX, FUZZ_LEN, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, fd, 0) == (void *)FUZZ_FIX &&
		    (errno = pthread_create(&t, NULL, fuzz_death, (void *)c)) == 0 &&
		    (errno = pthread_join(t, &status)) != 0)
			status = (void *)7;
		c[FUZZ_STATUS] = (uintptr_t)status;
		c[FUZZ_DONE] = seq;
		if (syscall(SYS_futex, &c[FUZZ_DONE], FUTEX_WAKE, 1, NULL, NULL, 0) < 0)
			return 8;
	}
}

/*
 * The compat walk through shared memory its task unmapped: entries e0 and e2
 * and the head in shared anonymous memory, e1 in a memfd the child unmaps
 * while it owns all three. With the module every word is marked; with the
 * built-in walker the walk stops at e1.
 */
static int test_unmap(int module)
{
	char *mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fd = syscall(SYS_memfd_create, "compat32-unmap", 0);
	uint32_t e[3], want1;
	int32_t off = -16;
	char *shm;
	int status;
	pid_t pid;

	CHECK(mem != MAP_FAILED && fd >= 0 && !ftruncate(fd, 4096),
	      "mmap, memfd: %s", strerror(errno));
	if (mem == MAP_FAILED || fd < 0)
		return 1;
	shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(shm != MAP_FAILED, "mmap memfd: %s", strerror(errno));
	if (shm == MAP_FAILED)
		return 1;
	e[0] = (uint32_t)(uintptr_t)mem + 0x100;
	e[1] = (uint32_t)(uintptr_t)shm + 0x40;
	e[2] = (uint32_t)(uintptr_t)mem + 0x200;
	link32(mem, e, 3, off, 0);

	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		uint32_t tid = syscall(SYS_gettid);
		int i;

		if (syscall(SYS_set_robust_list, mem, sizeof(struct head32)))
			_exit(2);
		for (i = 0; i < 3; i++)
			*word(e[i], off) = tid;
		if (munmap(shm, 4096))
			_exit(3);
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x", status);
	want1 = module ? FUTEX_OWNER_DIED : (uint32_t)pid;
	CHECK(*word(e[0], off) == FUTEX_OWNER_DIED, "e0 %#x", *word(e[0], off));
	CHECK(*word(e[1], off) == want1, "e1 (unmapped) %#x, want %#x",
	      *word(e[1], off), want1);
	CHECK(*word(e[2], off) == (module ? FUTEX_OWNER_DIED : (uint32_t)pid),
	      "e2 (after the unmapped one) %#x", *word(e[2], off));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "list"))
		test_list();
	else if (argc == 3 && !strcmp(argv[1], "syscall"))
		test_syscall(!strcmp(argv[2], "rust"));
	else if (argc == 2 && !strcmp(argv[1], "cleanup"))
		test_cleanup();
	else if (argc == 2 && !strcmp(argv[1], "glibc"))
		test_glibc();
	else if (argc == 3 && !strcmp(argv[1], "unmap"))
		test_unmap(!strcmp(argv[2], "rust"));
	else if (argc == 3 && !strcmp(argv[1], "fuzz-server"))
		return fuzz_server(atoi(argv[2]));
	else
		CHECK(0, "usage: compat32 list|syscall c|rust|cleanup|glibc|unmap c|rust");
	return failures ? 1 : 0;
}
