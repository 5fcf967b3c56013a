/* SPDX-License-Identifier: MIT */
/* tests/hostile.c — runs a program in a hostile environment (userfaultfd and/or io_uring blocked by seccomp), as container runtimes may. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static int usage(const char *self)
{
    fprintf(stderr, "usage: %s [--no-uffd] [--no-uring[=eperm|enosys]] [--scale=PCT] program [args...]\n", self);
    return 2;
}

/*
 * The filters are inherited by every process the program forks or execs, so whole suites run
 * without what they block and must still pass:
 *   --no-uffd   userfaultfd(2) and /dev/userfaultfd fail with EPERM: lazy commits fall back to
 *               kernel demand paging;
 *   --no-uring  io_uring_setup/enter/register fail with EPERM (Docker's default profile), or
 *               ENOSYS with =enosys (a kernel without io_uring): the fault handler waits with
 *               poll(2), and kosvmm_channel_server_wait answers rcUnimplemented;
 *   --scale=PCT runs the long randomized suites at PCT percent of the length they would have
 *               (KOSVMM_STRESS_SECONDS, default 8; KOSVMM_MODEL_SCALE, default 100): a hostile run
 *               is about the environment, every kind of operation still runs, not about volume.
 */

/* Sets name to its value (or dflt when unset) times pct / 100, at least min. */
static void scale_env(const char *name, double dflt, double min, long pct)
{
    const char *v = getenv(name);
    double x = (v && *v ? strtod(v, NULL) : dflt) * (double)pct / 100.0;
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", x < min ? min : x);
    setenv(name, buf, 1);
}

int main(int argc, char **argv)
{
    int i = 1, no_uffd = 0, no_uring = 0;
    long scale = 100;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--no-uffd") == 0)
            no_uffd = 1;
        else if (strcmp(argv[i], "--no-uring") == 0 || strcmp(argv[i], "--no-uring=eperm") == 0)
            no_uring = EPERM;
        else if (strcmp(argv[i], "--no-uring=enosys") == 0)
            no_uring = ENOSYS;
        else if (strncmp(argv[i], "--scale=", 8) == 0 && (scale = strtol(argv[i] + 8, NULL, 10)) > 0)
            continue;
        else
            return usage(argv[0]);
    }
    if (i >= argc || (!no_uffd && !no_uring))
        return usage(argv[0]);
    if (scale != 100) {
        scale_env("KOSVMM_STRESS_SECONDS", 8, 0.5, scale);
        scale_env("KOSVMM_MODEL_SCALE", 100, 1, scale);
    }
    if (no_uffd && tu_block_userfaultfd() != 0) {
        perror("seccomp (userfaultfd)");
        return 2;
    }
    if (no_uring && tu_block_io_uring(no_uring) != 0) {
        perror("seccomp (io_uring)");
        return 2;
    }
    execv(argv[i], argv + i);
    perror(argv[i]);
    return 127;
}
