/* SPDX-License-Identifier: MIT */
/* tests/testutil.h — helpers shared by the Check suites: residency (mincore), /proc/self/maps, the runner. */
#ifndef KOSVMM_TESTUTIL_H
#define KOSVMM_TESTUTIL_H

#include <check.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

/* 1 in an AddressSanitizer build, whose shadow memory, quarantine and limits some checks allow for. */
#ifdef __SANITIZE_ADDRESS__
#define TU_SANITIZED 1
#else
#define TU_SANITIZED 0
#endif

/* The system page size. */
size_t tu_page(void);

/* Number of resident pages in [addr, addr + len) as mincore(2) reports them; -1 if not mapped. */
long tu_resident_pages(const void *addr, size_t len);

/* Pages of [addr, addr + len) that have memory of their own: present in /proc/self/pagemap and
 * mapped by this process alone (PM_MMAP_EXCLUSIVE). mincore(2) also counts a page that maps the
 * shared zero page, which a read of untouched anonymous memory leaves; this does not. Meaningful
 * only before the process forks (a fork shares every page). -1 if pagemap cannot be read. */
long tu_backed_pages(const void *addr, size_t len);

/* The "rwxp" permission field of the /proc/self/maps line containing addr, copied into perms[5].
 * Returns 0, or -1 when no mapping contains addr. */
int tu_maps_perms(const void *addr, char perms[5]);

/* 1 if any mapping of this process contains addr, else 0 (from /proc/self/maps). */
int tu_is_mapped(const void *addr);

/* KnVmQuery of va, asserted to succeed (the record is poisoned first, so nothing stale passes). */
VmQueryInfo tu_query(const void *va);

/* kosvmm_get_stats, asserted to succeed. */
kosvmm_stats tu_stats(void);

/* The /proc/self/maps permissions ("rw-p", "---p", ...) a page with this KnVmQuery state and
 * protection must have: kosvmm's one rule, committed pages get their protection, others none. */
const char *tu_expected_perms(rtl_uint32_t state, rtl_uint32_t prot);

/* Asserts that the kernel maps p with the permission field want ("r--p", ...). */
void tu_assert_perms(const void *p, const char *want);

/* VmLck of this process in kB, from /proc/self/status: how much mlock really pinned. */
long tu_vmlck_kb(void);

/* File descriptors open in this process (from /proc/self/fd, its own descriptor not counted). */
int tu_fd_count(void);

/* Starts kosvmm's userfaultfd engine now (a lazily committed page, touched and freed), so the
 * mappings it makes once (thread stack, ring, buffers) cannot land in an address-space hole a
 * test frees next to place a region at a fixed address. */
void tu_start_lazy_engine(void);

/* Blocks userfaultfd(2) and the /dev/userfaultfd ioctl with EPERM in this process and every
 * process it forks or execs (seccomp), as a container runtime may. 0, or -1 with errno set. */
int tu_block_userfaultfd(void);

/* Checks in a forked child: Check's assertions belong to the test process, so a child reports a
 * failed condition on stderr and exits 1 (tu_wait_child_ok then fails the test). */
#define TU_CHILD_CHECK(cond)                                                                 \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "child: line %d: %s (errno %d)\n", __LINE__, #cond, errno);     \
            _exit(1);                                                                        \
        }                                                                                    \
    } while (0)

/* Runs fn(arg) in a new thread, waits for it and returns its result; asserts that the thread
 * starts and is joined. For what depends on the calling thread: per-thread heaps, thread exit. */
void *tu_in_thread(void *(*fn)(void *), void *arg);

/* Sends one datagram on a channel's socket exactly as given, with nfds (at most 32) descriptors as
 * SCM_RIGHTS: the forger's view of the wire, bypassing every check of kosvmm's sending side. */
void tu_raw_send(int sock, const void *data, size_t len, const int *fds, int nfds);

/* Reaps pid and asserts it exited with status 0. */
void tu_wait_child_ok(pid_t pid);

/* Waits up to timeout_ms for pid and returns its wait status; a child still running then is
 * killed (SIGKILL) and reaped, and -1 returned: a test that forks a child which may hang fails
 * instead of hanging. */
int tu_wait_child_for(pid_t pid, int timeout_ms);

/* Fork-peer fixture: a channel pair and a forked child, each process keeping one end (the other
 * end is closed in it). Returns the child's pid in the parent, which keeps *parent_end, and 0 in
 * the child, which keeps *child_end. Asserts that the pair and the fork succeed. */
pid_t tu_fork_peer(kosvmm_channel **parent_end, kosvmm_channel **child_end);

/* Lines and bytes of this process's mappings in /proc/self/maps, [heap] and [stack] left out
 * (the allocator and the stack move them on their own). */
void tu_maps_totals(long *lines, unsigned long *bytes);

/* CLOCK_MONOTONIC in seconds. */
double tu_now(void);

/* Runs one suite in fork mode (CK_FORK), prints Check's summary, returns the process exit code. */
int tu_run(Suite *suite);

/* Number of mappings of this process (lines of /proc/self/maps), read without malloc so the
 * count is not disturbed by the allocator mapping something while it is taken. */
long tu_maps_lines(void);

/* The number a file such as a sysctl holds (/proc/sys/vm/max_map_count); fails the test when it
 * cannot be read. */
long tu_read_long(const char *path);

/* A "Field:   123 kB" line of /proc/self/status (field given with its colon, "VmRSS:"), in kB,
 * read without malloc; -1 when the field is absent. */
long tu_status_kb(const char *field);

/* Blocks io_uring (io_uring_setup, io_uring_enter, io_uring_register fail with err: EPERM as
 * Docker's default seccomp profile and hardened runtimes answer, ENOSYS as kernels without it) in
 * this process and every process it forks or execs. 0, or -1 with errno set. */
int tu_block_io_uring(int err);

/* 1 if this process may set up an io_uring (probed with a one-entry ring), else 0: io_uring
 * blocked by seccomp, kernel.io_uring_disabled, or a kernel without it. */
int tu_io_uring_usable(void);

/* For tests of kosvmm_channel_server_wait, which needs io_uring by definition: when this process
 * cannot set up a ring, asserts the documented rcUnimplemented from srv (a fresh server: the ring
 * starts at its first wait) and returns 1, and the test stops there; otherwise returns 0. */
int tu_server_wait_unimplemented(kosvmm_channel_server *srv);

#endif
