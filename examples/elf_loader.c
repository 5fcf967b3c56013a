/* SPDX-License-Identifier: MIT */
/* elf_loader.c — a test runner on the SDK's Einit path: each ELF image goes through KnElfCreateVmSegEx, EntityInitFromSegEx, EntityRun and EntityWait, and its result is checked. */
#include <coresrv/elf/elf_api.h>
#include <coresrv/entity/entity_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_EXPECT 256

/* What an image should end with: an exit code, or KOSVMM_ENTITY_KILLED(signal). */
struct expect {
    char name[NAME_MAX + 1];
    rtl_uint32_t code;
};

static struct expect expects[MAX_EXPECT];
static int nexpects;
static rtl_uint32_t timeout_ms = 10000;
static int passed, failed;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: elf_loader [OPTION]... DIR|IMAGE...\n"
            "Runs each static ELF image as a process through the KasperskyOS SDK calls (KnElfCreateVmSegEx,\n"
            "EntityInitFromSegEx, EntityRun, EntityWait) and checks how it ends. A directory stands for every\n"
            "ELF image in it, in name order; its file 'expected' may give results (lines 'NAME RESULT').\n"
            "RESULT is an exit code (0..255) or a signal name (SIGSEGV); an image without one is expected to exit 0.\n"
            "\n"
            "  -s, --stub PATH        the entity stub program (default: $KOSVMM_ENTITY_STUB, else the installed one)\n"
            "  -e, --expect NAME=RESULT  expected result of image NAME (overrides the directory's file)\n"
            "  -t, --timeout MS       how long each image may run before it is killed (default 10000)\n"
            "  -h, --help             this text\n"
            "\n"
            "Exit status: 0 when every image ended as expected, 1 when one did not, 2 on a usage error.\n");
}

static int parse_result(const char *s, rtl_uint32_t *code)
{
    char *end;
    if (strncmp(s, "SIG", 3) == 0) {
        for (int sig = 1; sig < NSIG; sig++) {
            const char *abbrev = sigabbrev_np(sig);
            if (abbrev && strcmp(abbrev, s + 3) == 0) {
                *code = KOSVMM_ENTITY_KILLED(sig);
                return 0;
            }
        }
        return -1;
    }
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 255)
        return -1;
    *code = (rtl_uint32_t)v;
    return 0;
}

static int add_expect(const char *name, size_t len, const char *result, int replace)
{
    rtl_uint32_t code;
    if (len == 0 || len > NAME_MAX || parse_result(result, &code) != 0)
        return -1;
    for (int i = 0; i < nexpects; i++)
        if (strlen(expects[i].name) == len && memcmp(expects[i].name, name, len) == 0) {
            if (replace)
                expects[i].code = code;
            return 0;
        }
    if (nexpects == MAX_EXPECT)
        return -1;
    memcpy(expects[nexpects].name, name, len);
    expects[nexpects].name[len] = '\0';
    expects[nexpects++].code = code;
    return 0;
}

/* The directory's 'expected' file; command-line expectations win over it. */
static void read_expected(const char *dir)
{
    char path[PATH_MAX], line[512];
    snprintf(path, sizeof path, "%s/expected", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char name[NAME_MAX + 1], result[64];
        if (line[0] == '#' || sscanf(line, "%255s %63s", name, result) != 2)
            continue;
        if (add_expect(name, strlen(name), result, 0) != 0)
            fprintf(stderr, "elf_loader: %s: bad line: %s", path, line);
    }
    fclose(f);
}

static rtl_uint32_t expected_for(const char *name)
{
    for (int i = 0; i < nexpects; i++)
        if (strcmp(expects[i].name, name) == 0)
            return expects[i].code;
    return 0;
}

static void describe(rtl_uint32_t code, char *out, size_t n)
{
    if (KOSVMM_ENTITY_IS_KILLED(code)) {
        const char *abbrev = sigabbrev_np((int)KOSVMM_ENTITY_SIGNAL(code));
        snprintf(out, n, "killed by SIG%s", abbrev ? abbrev : "?");
    } else {
        snprintf(out, n, "exit %u", (unsigned)code);
    }
}

static unsigned char *read_image(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    unsigned char *data = NULL;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (data = malloc((size_t)st.st_size + 1))) {
        size_t got = 0;
        ssize_t r = 1;
        while (got < (size_t)st.st_size && (r = read(fd, data + got, (size_t)st.st_size - got)) > 0)
            got += (size_t)r;
        *size = got;
    }
    if (fd >= 0)
        close(fd);
    return data;
}

static void report(const char *name, const char *result, rtl_uint32_t want, int ok)
{
    char expect[64];
    describe(want, expect, sizeof expect);
    printf("%-12s %-38s %-20s %s\n", name, result, expect, ok ? "pass" : "FAIL");
    fflush(stdout);
    if (ok)
        passed++;
    else
        failed++;
}

static void report_error(const char *name, const char *what, Retcode rc)
{
    char result[96];
    snprintf(result, sizeof result, "%s: %s", what, rtl_retcode_name(rc));
    report(name, result, expected_for(name), 0);
}

/* The SDK's sequence, as an Einit-style program writes it. */
static void run_image(const char *path, const char *name)
{
    size_t size = 0;
    unsigned char *image = read_image(path, &size);
    if (!image) {
        report_error(name, "cannot read", rcResourceNotFound);
        return;
    }
    rtl_uintptr_t entry;
    VmSeg *segs;
    rtl_size_t segsCount, symSize, strSize, hdrSize;
    rtl_uint32_t symIndex, strIndex;
    void *hdrData;
    Retcode rc = KnElfCreateVmSegEx(image, size, &entry, &segs, &segsCount, &symIndex, &symSize, &strIndex,
                                    &strSize, &hdrData, &hdrSize);
    free(image); /* the segments hold their own copy */
    if (RC_FAILED(rc)) {
        report_error(name, "KnElfCreateVmSegEx", rc);
        return;
    }
    EntityInfo info = {.eiid = "elf_loader.Test"};
    Entity *entity = EntityInitFromSegEx(&info, name, RTL_NULL, segsCount, entry, segs, symIndex, symSize,
                                         strIndex, strSize, hdrData, hdrSize);
    KnElfFreeVmSeg(segs, segsCount); /* the new process holds its own handles */
    if (!entity) {
        report_error(name, "EntityInitFromSegEx", kosvmm_last_error());
        return;
    }
    rtl_uint32_t code = 0;
    if (RC_FAILED(rc = EntityRun(entity))) {
        report_error(name, "EntityRun", rc);
    } else if ((rc = EntityWait(entity, timeout_ms, &code)) == rcTimeout) {
        char result[64];
        snprintf(result, sizeof result, "timeout after %u ms", (unsigned)timeout_ms);
        report(name, result, expected_for(name), 0); /* EntityFree kills it */
    } else if (RC_FAILED(rc)) {
        report_error(name, "EntityWait", rc);
    } else {
        char result[64];
        describe(code, result, sizeof result);
        report(name, result, expected_for(name), code == expected_for(name));
    }
    EntityFree(entity);
}

static int is_elf(const char *path)
{
    unsigned char magic[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, magic, sizeof magic) : -1;
    if (fd >= 0)
        close(fd);
    return n == 4 && memcmp(magic, "\177ELF", 4) == 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int run_dir(const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, by_name);
    if (n < 0) {
        fprintf(stderr, "elf_loader: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    read_expected(dir);
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && is_elf(path))
            run_image(path, list[i]->d_name);
        free(list[i]);
    }
    free(list);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"stub", required_argument, NULL, 's'},    {"expect", required_argument, NULL, 'e'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "s:e:t:h", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            setenv("KOSVMM_ENTITY_STUB", optarg, 1);
            break;
        case 'e': {
            const char *eq = strchr(optarg, '=');
            if (!eq || add_expect(optarg, (size_t)(eq - optarg), eq + 1, 1) != 0) {
                fprintf(stderr, "elf_loader: --expect wants NAME=CODE or NAME=SIGNAME, not '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 't': {
            uint64_t v;
            if (cli_parse_uint(optarg, 0, INFINITE_TIMEOUT - 1, &v) != 0) {
                fprintf(stderr, "elf_loader: bad --timeout '%s'\n", optarg);
                return 2;
            }
            timeout_ms = (rtl_uint32_t)v;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind == argc) {
        usage(stderr);
        return 2;
    }
    printf("%-12s %-38s %-20s %s\n", "IMAGE", "RESULT", "EXPECTED", "VERDICT");
    for (int i = optind; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "elf_loader: %s: %s\n", argv[i], strerror(errno));
            failed++;
        } else if (S_ISDIR(st.st_mode)) {
            if (run_dir(argv[i]) != 0)
                failed++;
        } else {
            const char *slash = strrchr(argv[i], '/');
            run_image(argv[i], slash ? slash + 1 : argv[i]);
        }
    }
    printf("%d image(s): %d passed, %d failed\n", passed + failed, passed, failed);
    return failed ? 1 : 0;
}
