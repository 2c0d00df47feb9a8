// SPDX-License-Identifier: GPL-2.0
/*
 * LMDB, Debian's liblmdb0, as a real user of robust mutexes in shared memory:
 * its lock file holds a process-shared robust writer mutex and reader-table
 * mutex (on Linux it is built with MDB_USE_POSIX_MUTEX and MDB_USE_ROBUST),
 * mapped MAP_SHARED by every process that opens the environment.
 *
 *   lmdb DIR ROUNDS
 *   lmdb DIR unmapped SECONDS
 *
 * Each round opens the environment, writes, has a child writer killed inside
 * its write transaction (holding the writer mutex) and a child reader killed
 * holding a reader slot, recovers through LMDB's own API (the next write
 * transaction sees EOWNERDEAD and repairs; mdb_reader_check() frees the
 * slot), checks what is stored, and closes the environment, which unmaps the
 * lock file; the next round maps it again. Output depends only on what LMDB
 * did, so a run under LD_PRELOAD must print exactly what a run without it
 * prints.
 *
 * The second form is the holder that unmaps its lock memory (unmap.rst): a
 * child enters a write transaction and closes the environment inside it,
 * which unmaps the lock file with the writer mutex held, and is killed. The
 * parent, which keeps the environment open (so LMDB does not reset the lock
 * file), then writes: with the module's exit walk the mutex was marked and
 * LMDB recovers; with the built-in walk nothing marked it and the write waits
 * until the alarm after SECONDS says so (exit 3; any other failure exits
 * with another code).
 */
/* libs: -llmdb */
#define _GNU_SOURCE
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define E(expr) do {							\
	int rc_ = (expr);						\
	if (rc_) {							\
		printf("%s: %s\n", #expr, mdb_strerror(rc_));		\
		exit(1);						\
	}								\
} while (0)

static MDB_env *open_env(const char *dir)
{
	MDB_env *env;

	E(mdb_env_create(&env));
	E(mdb_env_set_mapsize(env, 1 << 20));
	E(mdb_env_set_maxreaders(env, 16));
	E(mdb_env_open(env, dir, 0, 0644));
	return env;
}

static MDB_val val(const char *s)
{
	MDB_val v = { strlen(s), (void *)s };

	return v;
}

static void put(MDB_env *env, const char *k, const char *v)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val kv = val(k), vv = val(v);
	int rc = mdb_txn_begin(env, NULL, 0, &txn);

	if (rc) {
		printf("put %s: begin: %s\n", k, mdb_strerror(rc));
		exit(1);
	}
	E(mdb_dbi_open(txn, NULL, 0, &dbi));
	E(mdb_put(txn, dbi, &kv, &vv, 0));
	E(mdb_txn_commit(txn));
}

static void show(MDB_env *env, const char *k)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val kv = val(k), vv;
	int rc;

	E(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
	E(mdb_dbi_open(txn, NULL, 0, &dbi));
	rc = mdb_get(txn, dbi, &kv, &vv);
	if (rc == MDB_NOTFOUND)
		printf("  %s: not found\n", k);
	else if (rc)
		printf("  %s: %s\n", k, mdb_strerror(rc));
	else
		printf("  %s = %.*s\n", k, (int)vv.mv_size, (char *)vv.mv_data);
	mdb_txn_abort(txn);
}

/*
 * A child that opens the environment, enters a write transaction (writer
 * mutex held) or a read transaction (reader slot taken), says so, and waits
 * to be killed.
 */
static void killed_inside(const char *dir, int writer, int unmap,
			  const char *key)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p)) {
		printf("pipe: %s\n", strerror(errno));
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		printf("fork: %s\n", strerror(errno));
		exit(1);
	}
	if (pid == 0) {
		MDB_env *env = open_env(dir);
		MDB_txn *txn;
		MDB_dbi dbi;
		MDB_val kv = val(key), vv = val("child");

		if (mdb_txn_begin(env, NULL, writer ? 0 : MDB_RDONLY, &txn))
			_exit(3);
		if (writer && (mdb_dbi_open(txn, NULL, 0, &dbi) ||
			      mdb_put(txn, dbi, &kv, &vv, 0)))
			_exit(4);
		/* The bug: the lock file goes away with the mutex held. */
		if (unmap)
			mdb_env_close(env);
		if (write(p[1], "x", 1) != 1)
			_exit(5);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1) {
		printf("child %s did not get inside\n", key);
		exit(1);
	}
	close(p[0]);
	if (kill(pid, SIGKILL) || waitpid(pid, NULL, 0) != pid) {
		printf("kill/waitpid: %s\n", strerror(errno));
		exit(1);
	}
}

/* How far the program got: what the alarm says (exit 3 only for the lock). */
static volatile sig_atomic_t waiting_for_lock;

static void stuck(int sig)
{
	static const char early[] =
		"  timed out before the holder was inside its transaction\n";
	static const char held[] =
		"  the writer mutex is still held: its dead owner was never marked\n";
	int ok;

	(void)sig;
	if (waiting_for_lock)
		ok = write(1, held, sizeof(held) - 1) >= 0;
	else
		ok = write(1, early, sizeof(early) - 1) >= 0;
	_exit(!ok ? 5 : waiting_for_lock ? 3 : 4);
}

static int unmapped(const char *dir, int seconds)
{
	MDB_env *env;

	if (seconds <= 0) {
		fprintf(stderr, "lmdb: SECONDS must be positive\n");
		return 2;
	}
	/* Nothing below may wait longer than that, whatever goes wrong. */
	if (signal(SIGALRM, stuck) == SIG_ERR) {
		printf("signal: %s\n", strerror(errno));
		return 1;
	}
	alarm(seconds);
	/*
	 * The parent keeps the environment open throughout: alone, the next
	 * opener would get LMDB's exclusive lock and initialise the lock file
	 * again (and the child's mdb_env_close() would destroy the mutex).
	 */
	env = open_env(dir);
	put(env, "before-unmapped", "parent");
	killed_inside(dir, 1, 1, "unmapped-writer");
	printf("holder unmapped the lock file inside a write transaction, killed\n");
	waiting_for_lock = 1;
	alarm(seconds);
	put(env, "after-unmapped", "parent");
	alarm(0);
	printf("  the next writer recovered\n");
	show(env, "before-unmapped");
	show(env, "unmapped-writer");
	show(env, "after-unmapped");
	mdb_env_close(env);
	return 0;
}

int main(int argc, char **argv)
{
	char k[32];
	int rounds, r, dead;

	if (argc != 3 && !(argc == 4 && !strcmp(argv[2], "unmapped"))) {
		fprintf(stderr, "usage: lmdb DIR ROUNDS | lmdb DIR unmapped SECONDS\n");
		return 2;
	}
	if (mkdir(argv[1], 0755) && errno != EEXIST) {
		printf("mkdir: %s\n", strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4)
		return unmapped(argv[1], atoi(argv[3]));
	rounds = atoi(argv[2]);
	for (r = 0; r < rounds; r++) {
		MDB_env *env = open_env(argv[1]);

		printf("round %d\n", r);
		snprintf(k, sizeof(k), "before-%d", r);
		put(env, k, "parent");
		snprintf(k, sizeof(k), "killed-writer-%d", r);
		killed_inside(argv[1], 1, 0, k);
		/* The writer mutex's owner died: LMDB recovers in mdb_txn_begin(). */
		snprintf(k, sizeof(k), "after-%d", r);
		put(env, k, "parent");
		killed_inside(argv[1], 0, 0, "reader");
		E(mdb_reader_check(env, &dead));
		printf("  dead readers freed: %d\n", dead);
		snprintf(k, sizeof(k), "before-%d", r);
		show(env, k);
		snprintf(k, sizeof(k), "killed-writer-%d", r);
		show(env, k);
		snprintf(k, sizeof(k), "after-%d", r);
		show(env, k);
		mdb_env_close(env);
	}
	return 0;
}
