// SPDX-License-Identifier: GPL-2.0
/*
 * librobust_cleanup.so under concurrency, signals, _Fork(), seccomp and
 * MREMAP_DONTUNMAP, seen from an unmodified glibc program. Each subcommand
 * prints one "ok"/"not ok" line per check and exits 1 if any failed; a hang
 * is a failure with a message (watchdogs), never a hang.
 *
 *   hardening window with|without
 *	munmap(), mremap() (move), shmdt() and mmap(MAP_FIXED) of a recorded
 *	shared mapping while another thread maps new shared memory at the very
 *	address that is freed (or replaced): the library must still know the
 *	new mapping afterwards (its munmap() makes a cleanup call). The other
 *	thread is started from inside the operation: this program defines
 *	pthread_mutex_lock() and pthread_mutex_unlock() (exported: -rdynamic),
 *	which the library's calls reach first, and at the first one the
 *	operating thread makes once the old mapping is gone, the other thread
 *	maps and the operating thread waits for it (up to 200 ms: it cannot
 *	finish while the library holds its lock, which is the point).
 *   hardening signal
 *	a thread maps and unmaps shared memory in a loop while SIGUSR1 keeps
 *	interrupting it, and the handler maps and unmaps shared memory too.
 *   hardening fork
 *	a thread maps and unmaps shared memory in a loop while the main thread
 *	forks with _Fork() (no atfork handlers) and with fork(); each child
 *	maps and unmaps shared memory and exits.
 *	In both, the looping thread holds the library's lock 500 us longer
 *	each time (the unlock hook sleeps), as a slow call would: the signal,
 *	or the fork, most likely comes while it is held.
 *   hardening seccomp-exec
 *	a child installs a seccomp filter that kills the process on
 *	cleanup_robust_list() (500), then execs this program (seccomp-run)
 *	under the library: it must run to its end, with no call reaching the
 *	module, and the filter must still kill a child that makes the call.
 *	(The library says so once if ROBUST_CLEANUP_VERBOSE is set.) A filter
 *	installed after the library loaded is not tested: it is documented
 *	as not supported.
 *   hardening atfork
 *	an allocator's pthread_atfork() handlers take its lock around fork();
 *	they are registered from .preinit_array, before the library's, as an
 *	allocator linked into the program registers them from its constructor
 *	(which runs before a preloaded library's), so the library's prepare
 *	handler runs first. A thread that holds the allocator's lock unmaps
 *	private memory lying between two recorded shared mappings while the
 *	main thread forks: the library must not wait for its own lock (held by
 *	the forking thread, which waits for the allocator's) to unmap memory it
 *	does not record. A watchdog thread turns a deadlock into a failure.
 *   hardening dontunmap with|without
 *	mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP) of recorded shared memory:
 *	the old range stays mapped, so no cleanup call for it, and the library
 *	keeps knowing it.
 *
 * Calls are counted by the module (cleanup_calls in debugfs), as in calls.c.
 */
/* libs: -rdynamic */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#include "cleanup_calls.h"
#define NR_CLEANUP_ROBUST_LIST 500

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static int with = 1, failed;
static const char *watched = "";

static void check(int ok, const char *what, const char *detail)
{
	printf("%s %s%s%s\n", ok ? "ok" : "not ok", what, detail ? ": " : "",
	       detail ? detail : "");
	failed |= !ok;
}

static void checkf(int ok, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void checkf(int ok, const char *what, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	check(ok, what, buf);
}

/* Writes "not ok WHAT: MSG" and ends the process (from anywhere, a handler too). */
static void fatal(const char *what, const char *msg)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "not ok %s: %s\n", what, msg);

	if (write(1, buf, n) < 0)
		_exit(3);
	_exit(1);
}

static void watchdog_fired(int sig)
{
	(void)sig;
	fatal(watched, "timed out: a thread is stuck (deadlock in the library's lock?)");
}

/* A SIGALRM in @secs seconds ends the process with "not ok WHAT: timed out". */
static void watchdog(const char *what, unsigned int secs)
{
	struct sigaction sa = { .sa_handler = watchdog_fired };

	watched = what;
	if (sigaction(SIGALRM, &sa, NULL))
		fatal(what, "sigaction(SIGALRM) failed");
	alarm(secs);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static long calls(void)
{
	long n = read_cleanup_calls();

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
	long got = calls() - before;

	if (!with)
		expect = 0;
	checkf(got == expect, what, "%ld calls, want %ld", got, expect);
}

static void *map_at(void *at, size_t len, int flags)
{
	void *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       flags | MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);

	if (p == MAP_FAILED)
		fatal("mmap", strerror(errno));
	return p;
}

static void *map(size_t len, int flags)
{
	return map_at(NULL, len, flags);
}

static void unmap(void *p, size_t len)
{
	if (munmap(p, len))
		fatal("munmap", strerror(errno));
}

/* One shared, writable page mapped, written and unmapped (all checked). */
static void shared_cycle(const char *what)
{
	char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		fatal(what, "mmap(MAP_SHARED) failed");
	*(volatile char *)p = 1;
	if (munmap(p, PAGE))
		fatal(what, "munmap failed");
}

static void mutex_init(pthread_mutex_t *m, int pshared)
{
	pthread_mutexattr_t a;
	int r;

	if (pthread_mutexattr_init(&a) ||
	    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) ||
	    (pshared && pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)))
		fatal("mutex attributes", "failed");
	r = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	if (r)
		fatal("pthread_mutex_init", strerror(r));
}

/* A robust mutex's life: init, lock, unlock, destroy (all checked). */
static void mutex_cycle(pthread_mutex_t *m, int pshared)
{
	int r;

	mutex_init(m, pshared);
	if ((r = pthread_mutex_lock(m)) || (r = pthread_mutex_unlock(m)))
		fatal("robust lock/unlock", strerror(r));
	if ((r = pthread_mutex_destroy(m)))
		fatal("pthread_mutex_destroy", strerror(r));
}

/* Waits up to @secs seconds for @pid; returns its status, or -1 (killed) if it did not end. */
static int wait_child(pid_t pid, double secs)
{
	double end = now() + secs;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			fatal("waitpid", strerror(errno));
		if (now() > end) {
			/* ESRCH only if it ended meanwhile: reaped below either way. */
			if (kill(pid, SIGKILL) && errno != ESRCH)
				fatal("kill", strerror(errno));
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		usleep(1000);
	}
}

static void describe(char *buf, size_t len, int status)
{
	if (status == -1)
		snprintf(buf, len, "did not end (killed after the timeout)");
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
}

/*
 * window: the record's update is atomic with the call.
 */

static int (*real_lock)(pthread_mutex_t *);
static int (*real_unlock)(pthread_mutex_t *);

static __thread int armed;	/* this thread runs the operation under test */
static __thread int slow;	/* this thread holds each lock 500 us longer */
static int (*gone)(void);	/* the operation's old mapping is gone */
static char *at;		/* where the other thread maps */
static int replaced;		/* the other thread first unmaps what is at @at */
static atomic_int injected, injector_done, injector_failed;
static sem_t go, finished;
static int stopping;

static void resolve(void)
{
	if (!real_lock)
		real_lock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
	if (!real_unlock)
		real_unlock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_unlock");
	if (!real_lock || !real_unlock)
		fatal("window", "dlsym(RTLD_NEXT, pthread_mutex_lock/unlock) failed");
}

/* In the operating thread, at each lock or unlock: once the old mapping is gone, the other
 * thread maps new shared memory there, and this one gives it 200 ms. */
static void hook(void)
{
	struct timespec ts;
	int e = errno;

	if (!armed || atomic_load(&injected) || !gone()) {
		errno = e;
		return;
	}
	atomic_store(&injected, 1);
	if (sem_post(&go))
		fatal("window", "sem_post failed");
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 200 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (sem_timedwait(&finished, &ts) && errno == EINTR)
		;
	errno = e;
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
	resolve();
	hook();
	return real_lock(m);
}

int pthread_mutex_unlock(pthread_mutex_t *m)
{
	resolve();
	hook();
	if (slow) {
		int e = errno;

		usleep(500);
		errno = e;
	}
	return real_unlock(m);
}

static void *injector(void *arg)
{
	(void)arg;
	for (;;) {
		while (sem_wait(&go) && errno == EINTR)
			;
		if (stopping)
			return NULL;
		if (replaced && munmap(at, PAGE))
			atomic_store(&injector_failed, 1);
		else if (mmap(at, PAGE, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != at)
			atomic_store(&injector_failed, 2);
		atomic_store(&injector_done, 1);
		if (sem_post(&finished))
			fatal("window", "sem_post failed");
	}
}

static int unmapped(void)
{
	return msync(at, PAGE, MS_ASYNC) == -1 && errno == ENOMEM;
}

static int marker_gone(void)
{
	return *(volatile char *)at != 0x5a;
}

static char *target;		/* mremap's destination */
static int shm_id;

static int op_munmap(void)
{
	return munmap(at, PAGE);
}

static int op_mremap(void)
{
	return mremap(at, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target) == target ? 0 : -1;
}

static int op_shmdt(void)
{
	return shmdt(at);
}

static int op_mmap_fixed(void)
{
	return map_at(at, PAGE, MAP_PRIVATE) == at ? 0 : -1;
}

static void window_case(const char *what, int (*op)(void), int (*is_gone)(void), int replace)
{
	char name[128];
	double end;
	int r;

	/* A post the operating thread did not wait for (it gave up after 200 ms). */
	while (sem_trywait(&finished) == 0)
		;
	gone = is_gone;
	replaced = replace;
	atomic_store(&injected, 0);
	atomic_store(&injector_done, 0);
	atomic_store(&injector_failed, 0);
	armed = 1;
	r = op();
	armed = 0;
	snprintf(name, sizeof(name), "%s of recorded shared memory", what);
	checkf(r == 0, name, "returns %d", r);
	if (atomic_load(&injected)) {
		end = now() + 10;
		while (!atomic_load(&injector_done) && now() < end)
			sleep_ms(1);
		snprintf(name, sizeof(name), "%s: the other thread mapped shared memory there", what);
		checkf(atomic_load(&injector_done) && !atomic_load(&injector_failed), name,
		       "done %d, failure %d", atomic_load(&injector_done),
		       atomic_load(&injector_failed));
	} else {
		snprintf(name, sizeof(name), "%s: the library's lock was seen after the change",
			 what);
		/* Without the library nothing takes a lock in there: map it here. */
		check(!with, name, with ? "never: the window could not be opened"
				      : "no (no library), mapped after");
		if (replace)
			unmap(at, PAGE);
		map_at(at, PAGE, MAP_SHARED);
	}
	/* The new shared mapping at @at must be known: its munmap makes one call. */
	snprintf(name, sizeof(name), "%s: munmap of the shared memory mapped meanwhile", what);
	start();
	unmap(at, PAGE);
	done(name, 1);
}

static int window(void)
{
	pthread_t t;
	int r;

	watchdog("window", 60);
	resolve();
	if (sem_init(&go, 0, 0) || sem_init(&finished, 0, 0))
		fatal("window", "sem_init failed");
	if ((r = pthread_create(&t, NULL, injector, NULL)))
		fatal("pthread_create", strerror(r));

	at = map(PAGE, MAP_SHARED);
	window_case("munmap", op_munmap, unmapped, 0);

	at = map(PAGE, MAP_SHARED);
	target = map(PAGE, MAP_PRIVATE);
	window_case("mremap move", op_mremap, unmapped, 0);
	start();
	unmap(target, PAGE);
	done("mremap move: munmap of the destination", 1);

	shm_id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
	if (shm_id < 0)
		fatal("shmget", strerror(errno));
	at = shmat(shm_id, NULL, 0);
	if (at == (void *)-1)
		fatal("shmat", strerror(errno));
	if (shmctl(shm_id, IPC_RMID, NULL))
		fatal("shmctl(IPC_RMID)", strerror(errno));
	window_case("shmdt", op_shmdt, unmapped, 0);

	at = map(PAGE, MAP_SHARED);
	*at = 0x5a;
	window_case("mmap MAP_FIXED", op_mmap_fixed, marker_gone, 1);

	stopping = 1;
	if (sem_post(&go))
		fatal("window", "sem_post failed");
	if ((r = pthread_join(t, NULL)))
		fatal("pthread_join", strerror(r));
	return failed;
}

/*
 * signal: a handler maps and unmaps shared memory.
 */

static atomic_long loops, handled;
static atomic_int stop;

static void on_usr1(int sig)
{
	int e = errno, was = slow;

	(void)sig;
	slow = 0;
	shared_cycle("signal handler");
	slow = was;
	atomic_fetch_add(&handled, 1);
	errno = e;
}

/*
 * Maps and unmaps shared memory in a loop, holding the library's lock (the only mutex it
 * unlocks) 500 us longer each time, as a slow cleanup_robust_list() call would: a signal or a
 * fork in the main thread most likely comes while it is held.
 */
static void *mapper(void *arg)
{
	(void)arg;
	slow = 1;
	while (!atomic_load(&stop)) {
		shared_cycle("mapping thread");
		atomic_fetch_add(&loops, 1);
	}
	return NULL;
}

static int signals(void)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	struct timespec ts;
	long last = -1, sent = 0;
	double end, progress;
	pthread_t t;
	int r;

	watchdog("signal", 60);
	if (sigaction(SIGUSR1, &sa, NULL))
		fatal("sigaction(SIGUSR1)", strerror(errno));
	if ((r = pthread_create(&t, NULL, mapper, NULL)))
		fatal("pthread_create", strerror(r));
	end = now() + 3;
	progress = now();
	while (now() < end || atomic_load(&handled) < 200 || atomic_load(&loops) < 200) {
		long l = atomic_load(&loops) + atomic_load(&handled);

		if ((r = pthread_kill(t, SIGUSR1)))
			fatal("pthread_kill", strerror(r));
		sent++;
		if (l != last) {
			last = l;
			progress = now();
		} else if (now() - progress > 15) {
			char buf[160];

			snprintf(buf, sizeof(buf),
				 "the mapping thread is stuck after %ld loops, %ld signals handled:"
				 " its handler waits for the lock the thread holds",
				 atomic_load(&loops), atomic_load(&handled));
			fatal("signal", buf);
		}
		/*
		 * A slow kernel (sanitizers, a loaded host) may not reach 200 of each in time:
		 * what matters is that both kept going (no deadlock), so stop there.
		 */
		if (now() > end + 20) {
			if (!atomic_load(&handled) || !atomic_load(&loops))
				fatal("signal", "no signal handled, or no loop made: nothing tested");
			break;
		}
		usleep(200);
	}
	atomic_store(&stop, 1);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	r = pthread_timedjoin_np(t, NULL, &ts);
	if (r == ETIMEDOUT)
		fatal("signal", "the mapping thread did not end: deadlock in a signal handler");
	if (r)
		fatal("pthread_timedjoin_np", strerror(r));
	checkf(1, "signal", "%ld signals sent, %ld handled, %ld map/unmap loops, no deadlock",
	       sent, atomic_load(&handled), atomic_load(&loops));
	return failed;
}

/*
 * atfork: an allocator's fork handlers, registered before the library's.
 */

static sem_t alloc_lock;	/* the allocator's lock (a semaphore: not hooked) */
static atomic_int alloc_armed;
static sem_t alloc_holding, alloc_in_prepare;
static char *alloc_hole;	/* private, between two recorded shared pages */
static int alloc_unmapped = -1, alloc_errno;

static void alloc_prepare(void)
{
	if (atomic_load(&alloc_armed)) {
		/* The library's prepare handler, registered later, ran already. */
		sem_post(&alloc_in_prepare);
		while (sem_wait(&alloc_lock) && errno == EINTR)
			;
	}
}

static void alloc_release(void)
{
	if (atomic_load(&alloc_armed))
		sem_post(&alloc_lock);
}

static void alloc_register(void)
{
	pthread_atfork(alloc_prepare, alloc_release, alloc_release);
}

/* Runs before any shared library's constructor, the library's included. */
__attribute__((section(".preinit_array"), used))
static void (*const alloc_preinit)(void) = alloc_register;

/*
 * The allocator: takes its lock, waits until the main thread's fork() ran the
 * library's prepare handler and waits in the allocator's, then unmaps.
 */
static void *alloc_thread(void *arg)
{
	(void)arg;
	while (sem_wait(&alloc_lock) && errno == EINTR)
		;
	sem_post(&alloc_holding);
	while (sem_wait(&alloc_in_prepare) && errno == EINTR)
		;
	alloc_unmapped = munmap(alloc_hole, PAGE);
	alloc_errno = errno;
	sem_post(&alloc_lock);
	return NULL;
}

/*
 * Ends the process with a message after @arg seconds: a deadlocked thread
 * of the library has every signal blocked, and so may the forking thread,
 * so an alarm could find no thread to run its handler.
 */
static void *watchdog_thread(void *arg)
{
	sleep_ms(1000L * (long)(size_t)arg);
	fatal("atfork", "timed out: the unmapping thread waits for the library's lock, "
	      "held by the forking thread, which waits for the allocator's lock");
	return NULL;
}

static int atfork(void)
{
	char *base = map(3 * PAGE, MAP_PRIVATE);
	pthread_t t, w;
	int r, status;
	pid_t pid;

	if ((r = pthread_create(&w, NULL, watchdog_thread, (void *)(size_t)30)))
		fatal("pthread_create", strerror(r));
	/* Shared pages at both ends: recorded; the private page between them is not. */
	map_at(base, PAGE, MAP_SHARED);
	map_at(base + 2 * PAGE, PAGE, MAP_SHARED);
	alloc_hole = base + PAGE;
	if (sem_init(&alloc_lock, 0, 1) || sem_init(&alloc_holding, 0, 0) ||
	    sem_init(&alloc_in_prepare, 0, 0))
		fatal("sem_init", strerror(errno));
	atomic_store(&alloc_armed, 1);
	if ((r = pthread_create(&t, NULL, alloc_thread, NULL)))
		fatal("pthread_create", strerror(r));
	while (sem_wait(&alloc_holding) && errno == EINTR)
		;
	pid = fork();
	if (pid < 0)
		fatal("fork", strerror(errno));
	if (pid == 0)
		_exit(0);
	status = wait_child(pid, 10);
	checkf(status == 0, "atfork: fork() while the allocator unmaps private memory",
	       "child status %#x", status);
	if ((r = pthread_join(t, NULL)))
		fatal("pthread_join", strerror(r));
	atomic_store(&alloc_armed, 0);
	checkf(alloc_unmapped == 0, "atfork: the allocator's munmap()", "%d (%s)",
	       alloc_unmapped, alloc_unmapped ? strerror(alloc_errno) : "no error");
	unmap(base, PAGE);
	unmap(base + 2 * PAGE, PAGE);
	return failed;
}

/*
 * fork: _Fork() and fork() while another thread holds the record's lock.
 */

static int forks(void)
{
	const int rounds = 200;
	pthread_t t;
	int r, i, which;

	watchdog("fork", 80);
	if ((r = pthread_create(&t, NULL, mapper, NULL)))
		fatal("pthread_create", strerror(r));
	while (atomic_load(&loops) < 10)
		sleep_ms(1);
	for (which = 0; which < 2; which++) {
		const char *name = which ? "fork" : "_Fork";
		int bad = 0;

		for (i = 0; i < rounds && !bad; i++) {
			pid_t pid = which ? fork() : _Fork();
			char buf[256], how[96];
			int status;

			if (pid < 0)
				fatal(name, strerror(errno));
			if (pid == 0) {
				/* The child's first shared mmap takes the library's lock. */
				char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
					       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

				if (p == MAP_FAILED || munmap(p, PAGE))
					_exit(2);
				_exit(0);
			}
			status = wait_child(pid, 10);
			if (status != 0) {
				describe(how, sizeof(how), status);
				snprintf(buf, sizeof(buf),
					 "child %d of %d %s: its shared mmap waits for a lock another"
					 " thread of its parent held", i + 1, rounds, how);
				check(0, name, buf);
				bad = 1;
			}
		}
		if (!bad)
			checkf(1, name, "%d children mapped and unmapped shared memory", rounds);
	}
	atomic_store(&stop, 1);
	if ((r = pthread_join(t, NULL)))
		fatal("pthread_join", strerror(r));
	return failed;
}

/*
 * seccomp: a filter that kills the process on cleanup_robust_list().
 */

static struct sock_filter kill_500[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_CLEANUP_ROBUST_LIST, 0, 1),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

static struct sock_fprog filter = {
	.len = sizeof(kill_500) / sizeof(kill_500[0]),
	.filter = kill_500,
};

#define NO_SECCOMP 3

/* Exits NO_SECCOMP if the kernel has no seccomp filters. */
static void no_new_privs(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		fatal("prctl(PR_SET_NO_NEW_PRIVS)", strerror(errno));
}

static void installed(int r, const char *how)
{
	if (r == -1 && errno == EINVAL)
		_exit(NO_SECCOMP);
	if (r != 0) {
		char buf[128];

		snprintf(buf, sizeof(buf), "returns %d: %s", r, strerror(errno));
		fatal(how, buf);
	}
}

/* The filter is in force: a child that makes the call is killed by SIGSYS. */
static void filter_kills(void)
{
	char how[96];
	pid_t pid = fork();
	int status;

	if (pid < 0)
		fatal("fork", strerror(errno));
	if (pid == 0) {
		struct rlimit none = { 0, 0 };

		/* No core file of the kill. */
		if (setrlimit(RLIMIT_CORE, &none))
			_exit(2);
		syscall(NR_CLEANUP_ROBUST_LIST, 0L, 4L, 0L);
		_exit(0);
	}
	status = wait_child(pid, 10);
	describe(how, sizeof(how), status);
	check(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS,
	      "the filter kills a process that calls cleanup_robust_list()", how);
}

/* What the library interposes, under the filter: none of it may reach the module. */
static void interposed_calls(void)
{
	pthread_mutex_t local, *shared = map(2 * PAGE, MAP_SHARED);
	char *p, *q;
	void *s;
	int id;

	start();
	mutex_cycle(&local, 0);
	mutex_cycle(shared, 1);
	p = mremap(shared, 2 * PAGE, PAGE, 0);
	if (p != (char *)shared)
		fatal("mremap shrink", strerror(errno));
	q = map(PAGE, MAP_PRIVATE);
	if (mremap(p, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, q) != q)
		fatal("mremap move", strerror(errno));
	map_at(q, PAGE, MAP_PRIVATE);
	unmap(q, PAGE);
	shared_cycle("mmap/munmap shared");
	id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
	if (id < 0)
		fatal("shmget", strerror(errno));
	s = shmat(id, NULL, 0);
	if (s == (void *)-1 || shmctl(id, IPC_RMID, NULL) || shmdt(s))
		fatal("shmat/shmdt", strerror(errno));
	{
		long got = calls() - before;

		checkf(got == 0, "under the filter: no call reached the module", "%ld calls", got);
	}
	check(1, "robust mutexes destroyed, shared memory unmapped, moved and replaced", NULL);
}

/* After exec, under the filter installed before it. */
static int seccomp_run(void)
{
	int mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);

	watchdog("seccomp-run", 30);
	checkf(mode == 2, "after exec: a seccomp filter is installed", "PR_GET_SECCOMP: %d", mode);
	interposed_calls();
	filter_kills();
	return failed;
}

static const char *no_seccomp =
	"this kernel has no seccomp filters (CONFIG_SECCOMP, CONFIG_SECCOMP_FILTER): not tested";

static int seccomp_exec(const char *self)
{
	char how[96];
	pid_t pid;
	int status;

	watchdog("seccomp-exec", 60);
	pid = fork();
	if (pid < 0)
		fatal("fork", strerror(errno));
	if (pid == 0) {
		no_new_privs();
		installed(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0),
			  "prctl(PR_SET_SECCOMP)");
		execl(self, self, "seccomp-run", (char *)NULL);
		fatal("execl", strerror(errno));
	}
	status = wait_child(pid, 40);
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == NO_SECCOMP) {
		check(0, "seccomp-exec", no_seccomp);
		return 1;
	}
	describe(how, sizeof(how), status);
	check(status == 0, "seccomp-exec: the program ran to its end under the filter", how);
	return failed;
}

/*
 * dontunmap: the old range of MREMAP_DONTUNMAP stays mapped.
 */

static int dontunmap(void)
{
	char *p = map(2 * PAGE, MAP_SHARED), *q, *r, *d;
	int e;

	watchdog("dontunmap", 60);
	p[0] = 0x5a;
	start();
	q = mremap(p, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
	e = errno;
	if (q == MAP_FAILED && e == EINVAL) {
		printf("# this kernel refuses MREMAP_DONTUNMAP on shared memory (EINVAL):"
		       " a failed call, then a private mapping\n");
		done("failed mremap DONTUNMAP of shared memory", 0);
		start();
		unmap(p, 2 * PAGE);
		done("munmap after a failed mremap DONTUNMAP: the record was kept", 1);
		r = map(2 * PAGE, MAP_PRIVATE);
		start();
		q = mremap(r, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
		if (q == MAP_FAILED)
			fatal("mremap DONTUNMAP of private memory", strerror(errno));
		done("mremap DONTUNMAP of private memory", 0);
		start();
		unmap(r, 2 * PAGE);
		unmap(q, 2 * PAGE);
		done("munmap of both private ranges", 0);
		return failed;
	}
	if (q == MAP_FAILED)
		fatal("mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP) of shared memory", strerror(e));
	done("mremap DONTUNMAP of shared memory: no call for the old range, which stays", 0);
	q[PAGE] = 0x33;
	checkf(q != p && q[0] == 0x5a && p[0] == 0x5a && p[PAGE] == 0x33,
	       "the old and the new range map the same shared memory", "%p -> %p", p, q);
	start();
	unmap(p, 2 * PAGE);
	done("munmap of the old range: still known as shared memory", 1);
	start();
	unmap(q, 2 * PAGE);
	done("munmap of the new range: known as shared memory", 1);

	/* With MREMAP_FIXED onto recorded shared memory: only what it replaces goes away. */
	p = map(PAGE, MAP_SHARED);
	d = map(PAGE, MAP_SHARED);
	start();
	q = mremap(p, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, d);
	if (q != d)
		fatal("mremap(MREMAP_FIXED | MREMAP_DONTUNMAP) onto shared memory", strerror(errno));
	done("mremap FIXED DONTUNMAP onto shared memory: one call, for what it replaces", 1);
	start();
	unmap(p, PAGE);
	done("munmap of the old range", 1);
	start();
	unmap(d, PAGE);
	done("munmap of the new range", 1);
	return failed;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	const char *mode = argc > 2 ? argv[2] : "with";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "with") && strcmp(mode, "without"))
		cmd = "";
	with = !strcmp(mode, "with");
	if (!strcmp(cmd, "window"))
		return window();
	if (!strcmp(cmd, "signal"))
		return signals();
	if (!strcmp(cmd, "fork"))
		return forks();
	if (!strcmp(cmd, "seccomp-exec"))
		return seccomp_exec("/proc/self/exe");
	if (!strcmp(cmd, "seccomp-run"))
		return seccomp_run();
	if (!strcmp(cmd, "dontunmap"))
		return dontunmap();
	if (!strcmp(cmd, "atfork"))
		return atfork();
	fprintf(stderr, "usage: hardening window|dontunmap [with|without]\n"
			"       hardening signal|fork|atfork|seccomp-exec\n");
	return 2;
}
