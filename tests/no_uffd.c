/* tests/no_uffd.c — runs a program with userfaultfd blocked by seccomp, as a container runtime may do. */
#include <stdio.h>
#include <unistd.h>

#include "testutil.h"

/* The filter is inherited by every process the program forks, so whole suites run without the
 * engine and must still pass on kosvmm's kernel-paging fallback. */
int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s program [args...]\n", argv[0]);
        return 2;
    }
    if (tu_block_userfaultfd() != 0) {
        perror("seccomp");
        return 2;
    }
    execv(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
