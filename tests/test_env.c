/* SPDX-License-Identifier: MIT */
/* tests/test_env.c — KOSVMM_* environment variables: warnings, independence, KOSVMM_VERBOSE, KOSVMM_SHOW_STATS, the fallback note. */
#include <check.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#ifndef KOSVMM_TEST_VERSION
#error "tests/meson.build passes the project version"
#endif

extern char **environ;

/* ---- the child: this program re-executed with a chosen environment ---- */

/* Prints the lazy configuration the library took from the environment; with "lazy N" makes N lazy
 * regions and touches each (so an engine fallback happens), with "keep" leaves one 16-page lazy region
 * with 3 pages touched mapped at exit (for KOSVMM_SHOW_STATS). */
static int child(int argc, char **argv)
{
    kosvmm_lazy_config c = {.size = sizeof c};
    if (kosvmm_get_lazy_config(&c) != rcOk)
        return 10;
    size_t pg = tu_page();
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "lazy") == 0 || strcmp(argv[i], "keep") == 0) {
            int n = strcmp(argv[i], "keep") == 0 ? 1 : 2;
            for (int k = 0; k < n; k++) {
                char *p = KnVmAllocate(RTL_NULL, 16 * pg, VMM_FLAG_RESERVE | VMM_FLAG_COMMIT | VMM_FLAG_READ |
                                                          VMM_FLAG_WRITE);
                if (!p)
                    return 11;
                p[0] = p[5 * pg] = p[9 * pg] = 1;
                if (strcmp(argv[i], "lazy") == 0 && KnVmUnmap(p, 16 * pg) != rcOk)
                    return 12;
            }
        }
    }
    printf("engine=%u min=%u max=%u readahead=%u user_mode_only=%u\n", c.engine, c.window_min, c.window_max,
           c.readahead, c.user_mode_only);
    return 0;
}

/* Runs the child with every inherited KOSVMM_* variable removed and the NULL-terminated "NAME=value"
 * list added; mode is "" or "block-uffd" (userfaultfd refused by seccomp, as a container may). */
static void run(const char *const *vars, const char *mode, const char *arg, char *out, size_t ocap, char *err,
                size_t ecap)
{
    int o[2], e[2];
    ck_assert_int_eq(pipe(o), 0);
    ck_assert_int_eq(pipe(e), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char *env[256];
        int n = 0;
        for (char **v = environ; *v && n < 200; v++)
            if (strncmp(*v, "KOSVMM_", 7) != 0)
                env[n++] = *v;
        for (const char *const *v = vars; *v && n < 255; v++)
            env[n++] = (char *)*v;
        env[n] = NULL;
        dup2(o[1], 1);
        dup2(e[1], 2);
        if (strcmp(mode, "block-uffd") == 0 && tu_block_userfaultfd() != 0)
            _exit(126);
        execle("/proc/self/exe", "test_env", "--child", arg, (char *)NULL, env);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ssize_t n = read(o[0], out, ocap - 1);
    out[n > 0 ? n : 0] = '\0';
    size_t got = 0;
    while (got < ecap - 1 && (n = read(e[0], err + got, ecap - 1 - got)) > 0)
        got += (size_t)n;
    err[got] = '\0';
    close(o[0]);
    close(e[0]);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x, stderr: %s", status, err);
}

static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static int lines(const char *s)
{
    return count_lines(s, "\n");
}


/* ---- invalid values: one warning each, ignored alone ---- */

START_TEST(window_min_above_max_is_ignored_alone)
{
    char out[256], err[2048];
    /* The value of the issue: 600 pages against the default maximum of 512. */
    const char *vars[] = {"KOSVMM_WINDOW_MIN=600", "KOSVMM_READAHEAD=0", "KOSVMM_ENGINE=kernel", NULL};
    run(vars, "", "", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "engine=0 min=1 max=512 readahead=0 user_mode_only=0\n");
    ck_assert_str_eq(err, "kosvmm: KOSVMM_WINDOW_MIN=600 ignored: expected window_min <= window_max (here 600 > 512)\n");
}
END_TEST

START_TEST(each_bad_variable_is_warned_and_the_good_ones_apply)
{
    char out[256], err[4096];
    const char *vars[] = {"KOSVMM_WINDOW_MIN=abc",   "KOSVMM_WINDOW_MAX=64", "KOSVMM_READAHEAD=maybe",
                          "KOSVMM_UFFD_USER_MODE_ONLY=Yes", "KOSVMM_ENGINE=turbo", "KOSVMM_VERBOSE=2",
                          "KOSVMM_SHOW_STATS=-1", "KOSVMM_NO_URING=sometimes", "KOSVMM_UFFD_MOVE=often", NULL};
    run(vars, "", "", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "engine=1 min=1 max=64 readahead=1 user_mode_only=1\n");
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_WINDOW_MIN=abc ignored: expected a number from 1 to 4096\n"), "%s", err);
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_READAHEAD=maybe ignored: expected 1, yes, true, on or 0, no, false, off\n"),
                  "%s", err);
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_ENGINE=turbo ignored: expected uffd or kernel (any case)\n"), "%s", err);
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_VERBOSE=2 ignored: expected 1, yes"), "%s", err);
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_SHOW_STATS=-1 ignored: expected 1, yes"), "%s", err);
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_NO_URING=sometimes ignored: expected 1, yes"), "%s", err);
    ck_assert_msg(strstr(err, "kosvmm: KOSVMM_UFFD_MOVE=often ignored: expected 1, yes"), "%s", err);
    /* One line per bad variable, nothing else: a bad KOSVMM_VERBOSE does not turn the report on. */
    ck_assert_int_eq(lines(err), 7);
}
END_TEST

START_TEST(numbers_are_strict)
{
    static const char *const bad[] = {"KOSVMM_WINDOW_MAX=0", "KOSVMM_WINDOW_MAX=4097", "KOSVMM_WINDOW_MAX=-1",
                                      "KOSVMM_WINDOW_MAX= 8", "KOSVMM_WINDOW_MAX=8k", "KOSVMM_WINDOW_MAX=0x10",
                                      "KOSVMM_WINDOW_MAX=99999999999999999999"};
    char out[256], err[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *vars[] = {bad[i], "KOSVMM_WINDOW_MIN=2", NULL};
        run(vars, "", "", out, sizeof out, err, sizeof err);
        ck_assert_str_eq(out, "engine=1 min=2 max=512 readahead=1 user_mode_only=0\n");
        ck_assert_msg(strstr(err, bad[i]) && lines(err) == 1, "%s: %s", bad[i], err);
    }
    /* Both bounds given and contradicting: neither can be trusted, both are ignored. */
    const char *vars[] = {"KOSVMM_WINDOW_MIN=64", "KOSVMM_WINDOW_MAX=8", "KOSVMM_READAHEAD=no", NULL};
    run(vars, "", "", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "engine=1 min=1 max=512 readahead=0 user_mode_only=0\n");
    ck_assert_int_eq(count_lines(err, " ignored: "), 2);
    ck_assert_int_eq(lines(err), 2);
}
END_TEST

START_TEST(words_in_any_case_are_accepted_silently)
{
    char out[256], err[1024];
    const char *vars[] = {"KOSVMM_ENGINE=Kernel", "KOSVMM_READAHEAD=OFF", "KOSVMM_UFFD_USER_MODE_ONLY=true",
                          "KOSVMM_WINDOW_MIN=4", "KOSVMM_WINDOW_MAX=4096", "KOSVMM_SHOW_STATS=0", "KOSVMM_VERBOSE=no",
                          "KOSVMM_NO_URING=0", "KOSVMM_POLICY=", NULL};
    run(vars, "", "", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "engine=0 min=4 max=4096 readahead=0 user_mode_only=1\n");
    ck_assert_str_eq(err, "");
    const char *uffd[] = {"KOSVMM_ENGINE=UFFD", NULL};
    run(uffd, "", "", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "engine=1 min=1 max=512 readahead=1 user_mode_only=0\n");
    ck_assert_str_eq(err, "");
}
END_TEST

/* ---- KOSVMM_VERBOSE ---- */

START_TEST(verbose_reports_version_engine_guards_and_policy)
{
    char out[256], err[4096];
    const char *vars[] = {"KOSVMM_VERBOSE=1", NULL};
    run(vars, "", "", out, sizeof out, err, sizeof err);
    ck_assert_msg(strstr(err, "kosvmm: kosvmm " KOSVMM_TEST_VERSION ", pid ") == err, "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm: lazy engine: uffd (userfaultfd usable through ") ||
                      strstr(err, "\nkosvmm: lazy engine: kernel demand paging (userfaultfd refused: ") ||
                      strstr(err, "\nkosvmm: lazy engine: kernel demand paging (no userfaultfd system call"),
                  "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm: guard pages: MADV_GUARD_INSTALL markers") ||
                      strstr(err, "\nkosvmm: guard pages: PROT_NONE pages of the reservation"), "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm: policy: the defaults (KOSVMM_POLICY not set)"), "%s", err);

    /* The engine asked for by name, and a policy file. */
    char path[] = "/tmp/kosvmm-env-policy-XXXXXX", var[64];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "max_handles = 9\n", 16), 16);
    close(fd);
    snprintf(var, sizeof var, "KOSVMM_POLICY=%s", path);
    const char *vars2[] = {"KOSVMM_VERBOSE=on", "KOSVMM_ENGINE=kernel", var, NULL};
    run(vars2, "", "", out, sizeof out, err, sizeof err);
    unlink(path);
    ck_assert_msg(strstr(err, "\nkosvmm: lazy engine: kernel demand paging (KOSVMM_ENGINE=kernel)\n"), "%s", err);
    char want[128];
    snprintf(want, sizeof want, "\nkosvmm: policy: KOSVMM_POLICY=%s\n", path);
    ck_assert_msg(strstr(err, want), "%s", err);
}
END_TEST

/* The huge-page streams' choices are said when the engine starts: hand-off and moves, each on, or
 * off and why. */
START_TEST(verbose_says_whether_streams_move_huge_pages)
{
    char out[256], err[4096];
    const char *vars[] = {"KOSVMM_VERBOSE=1", "KOSVMM_UFFD_MOVE=0", "KOSVMM_UFFD_HANDOFF=0", NULL};
    run(vars, "", "lazy", out, sizeof out, err, sizeof err);
    if (!strstr(err, "lazy engine: uffd"))
        return; /* no userfaultfd here: the engine never starts */
    ck_assert_msg(strstr(err, "\nkosvmm: userfaultfd huge-page streams moved: off (KOSVMM_UFFD_MOVE=0)\n"), "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm: userfaultfd huge-page streams handed to the kernel: off (KOSVMM_UFFD_HANDOFF=0)\n"),
                  "%s", err);
    const char *vars2[] = {"KOSVMM_VERBOSE=1", NULL};
    run(vars2, "", "lazy", out, sizeof out, err, sizeof err);
    ck_assert_msg(strstr(err, "\nkosvmm: userfaultfd huge-page streams moved: on (UFFDIO_MOVE") ||
                      strstr(err, "\nkosvmm: userfaultfd huge-page streams moved: off (the kernel has no UFFD_FEATURE_MOVE") ||
                      strstr(err, "\nkosvmm: userfaultfd huge-page streams moved: off (transparent huge pages are"),
                  "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm: userfaultfd huge-page streams handed to the kernel: on\n") ||
                      strstr(err, "\nkosvmm: userfaultfd huge-page streams handed to the kernel: off (transparent huge pages are"),
                  "%s", err);
}
END_TEST

/* With userfaultfd refused, the uffd engine falls back to kernel paging: said once when the user named
 * uffd, else only under KOSVMM_VERBOSE. */
START_TEST(fallback_is_said_once_when_uffd_was_asked_for)
{
    char out[256], err[4096];
    const char *named[] = {"KOSVMM_ENGINE=uffd", NULL};
    run(named, "block-uffd", "lazy", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(out, "engine=1 min=1 max=512 readahead=1 user_mode_only=0\n");
    ck_assert_int_eq(count_lines(err, "kosvmm: lazy commits fall back to kernel demand paging"), 1);
    ck_assert_msg(strstr(err, "userfaultfd refused: Operation not permitted"), "%s", err);
    ck_assert_int_eq(lines(err), 1);

    const char *none[] = {NULL};
    run(none, "block-uffd", "lazy", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(err, "");

    const char *verbose[] = {"KOSVMM_VERBOSE=1", NULL};
    run(verbose, "block-uffd", "lazy", out, sizeof out, err, sizeof err);
    ck_assert_int_eq(count_lines(err, "kosvmm: lazy commits fall back to kernel demand paging"), 1);
    ck_assert_msg(strstr(err, "kosvmm: lazy engine: kernel demand paging (userfaultfd refused: "), "%s", err);
}
END_TEST

/* KOSVMM_NO_URING is reported under KOSVMM_VERBOSE when the handler starts, which needs userfaultfd. */
START_TEST(no_uring_is_reported_when_the_handler_starts)
{
    char out[256], err[4096];
    const char *vars[] = {"KOSVMM_VERBOSE=1", "KOSVMM_NO_URING=1", NULL};
    run(vars, "", "lazy", out, sizeof out, err, sizeof err);
    if (strstr(err, "lazy engine: uffd"))
        ck_assert_msg(strstr(err, "kosvmm: userfaultfd handler waits with poll(2) (KOSVMM_NO_URING)\n"), "%s", err);
    else
        ck_assert_msg(!strstr(err, "handler waits"), "%s", err);
}
END_TEST

/* ---- KOSVMM_SHOW_STATS ---- */

START_TEST(show_stats_prints_the_statistics_at_exit)
{
    char out[256], err[4096];
    const char *vars[] = {"KOSVMM_SHOW_STATS=1", NULL};
    run(vars, "", "keep", out, sizeof out, err, sizeof err);
    ck_assert_msg(strstr(err, "kosvmm: statistics of pid ") == err, "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm:   regions 1, reserved 64.0 KiB, committed 64.0 KiB (lazy 64.0 KiB, fully 0 B, "
                              "pinned 0 B)\n"), "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm:   userfaultfd engine: faults "), "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm:   policy: MDL buffers 0 (0 B), handles 0, quota refusals 0, denials 0\n"),
                  "%s", err);
    ck_assert_msg(strstr(err, "\nkosvmm:   huge-page streams: 0 extents of 2 MiB moved in, 0 pages staged ahead\n"),
                  "%s", err);
    ck_assert_int_eq(lines(err), 6);
    /* Off by default. */
    const char *none[] = {NULL};
    run(none, "", "keep", out, sizeof out, err, sizeof err);
    ck_assert_str_eq(err, "");
}
END_TEST

static Suite *env_suite(void)
{
    Suite *s = suite_create("env");
    TCase *tc = tcase_create("values");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, window_min_above_max_is_ignored_alone);
    tcase_add_test(tc, each_bad_variable_is_warned_and_the_good_ones_apply);
    tcase_add_test(tc, numbers_are_strict);
    tcase_add_test(tc, words_in_any_case_are_accepted_silently);
    suite_add_tcase(s, tc);

    tc = tcase_create("reports");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, verbose_reports_version_engine_guards_and_policy);
    tcase_add_test(tc, verbose_says_whether_streams_move_huge_pages);
    tcase_add_test(tc, fallback_is_said_once_when_uffd_was_asked_for);
    tcase_add_test(tc, no_uring_is_reported_when_the_handler_starts);
    tcase_add_test(tc, show_stats_prints_the_statistics_at_exit);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--child") == 0)
        return child(argc, argv);
    return tu_run(env_suite());
}
