/* tests/testutil.c — helpers shared by the Check suites: residency (mincore), /proc/self/maps, the runner. */
#include "testutil.h"

#include <coresrv/vmm/vmm_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

size_t tu_page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

long tu_resident_pages(const void *addr, size_t len)
{
    size_t pages = (len + tu_page() - 1) / tu_page();
    unsigned char *vec = malloc(pages ? pages : 1);
    if (!vec)
        return -1;
    long count = -1;
    if (mincore((void *)addr, len, vec) == 0) {
        count = 0;
        for (size_t i = 0; i < pages; i++)
            count += vec[i] & 1;
    }
    free(vec);
    return count;
}

/* Reads /proc/self/maps with a stack buffer: no malloc, so no allocator (ASan's included) maps
 * anything between a kosvmm call and this look at what the kernel has. */
int tu_maps_perms(const void *addr, char perms[5])
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[16384];
    size_t have = 0;
    int found = -1;
    unsigned long a = (unsigned long)addr;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            unsigned long lo, hi;
            char p[5];
            if (found < 0 && sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && a >= lo && a < hi) {
                memcpy(perms, p, 5);
                found = 0;
            }
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
    }
    close(fd);
    return found;
}

int tu_is_mapped(const void *addr)
{
    char perms[5];
    return tu_maps_perms(addr, perms) == 0;
}

void tu_start_lazy_engine(void)
{
    char *p = KnVmAllocate(RTL_NULL, tu_page(), VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ | VMM_FLAG_WRITE);
    ck_assert_ptr_nonnull(p);
    p[0] = 1;
    ck_assert_uint_eq(KnVmUnmap(p, tu_page()), rcOk);
}

int tu_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_set_fork_status(runner, CK_FORK);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
