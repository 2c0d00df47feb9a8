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
 *
 * Prints one line per failed check; exits 0 if all passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

static int test_syscall(int module)
{
	char *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint32_t base = (uint32_t)(uintptr_t)mem;
	long r;

	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	if (mem == MAP_FAILED)
		return 1;
	CHECK((r = cleanup(base, 4, 2)) == -EINVAL, "flags: %ld", r);
	CHECK((r = cleanup(base + 1, 4, 0)) == -EINVAL, "unaligned: %ld", r);
	CHECK((r = cleanup(base, 0, 0)) == -EINVAL, "len 0: %ld", r);
	CHECK((r = cleanup(base, 2, 0)) == -EINVAL, "len 2: %ld", r);
	/* Ranges that wrap around 2^32, or end above a 32-bit task's space. */
	CHECK((r = cleanup(base, 0xfffffffc, 0)) == -EFAULT, "wraps: %ld", r);
	CHECK((r = cleanup(0xfffff000, 0x2000, 0)) == -EFAULT, "wraps at the top: %ld", r);
	CHECK((r = cleanup(0xffffe000, 4, 0)) == -EFAULT, "above user space: %ld", r);
	if (module)
		CHECK((r = cleanup(base, 4, 0)) == 0, "valid, nothing to clear: %ld", r);
	else
		CHECK((r = cleanup(base, 4, 0)) == -ENOSYS, "valid: %ld", r);
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

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "list"))
		test_list();
	else if (argc == 3 && !strcmp(argv[1], "syscall"))
		test_syscall(!strcmp(argv[2], "rust"));
	else if (argc == 2 && !strcmp(argv[1], "cleanup"))
		test_cleanup();
	else
		CHECK(0, "usage: compat32 list|syscall c|rust|cleanup");
	return failures ? 1 : 0;
}
