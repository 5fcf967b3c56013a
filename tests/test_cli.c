/* SPDX-License-Identifier: MIT */
/* tests/test_cli.c — the size and count parser every example and benchmark shares (cli/cli.h). */
#include <check.h>
#include <stdint.h>

#include "cli.h"
#include "testutil.h"

#define UNTOUCHED 0x5a5a5a5a5a5a5a5aull

static const struct {
    const char *s;
    uint64_t v;
} good[] = {
    {"0", 0}, {"1", 1}, {"4096", 4096}, {"007", 7}, {"1K", 1024}, {"1k", 1024}, {"2M", 2u << 20}, {"2m", 2u << 20},
    {"3G", 3ull << 30}, {"3g", 3ull << 30}, {"1T", 1ull << 40}, {"1t", 1ull << 40}, {"256M", 256u << 20},
    {"16777215T", 16777215ull << 40}, {"18446744073709551615", UINT64_MAX},
    {"17179869183G", 17179869183ull << 30},
};

static const char *const bad[] = {
    "",                      /* empty */
    "-1", "-0", "+1",        /* signs */
    " 1", "1 ", "1\n",       /* spaces */
    "1X", "1KB", "1KiB", "1Kk", "1KM", "K", "M1", "1.5G", "1e3", "0x10", "1,000", /* junk */
    "18446744073709551616",  /* UINT64_MAX + 1 */
    "99999999999999999999999",
    "16777216T",             /* 2^64 exactly */
    "17179869184G",          /* 2^64 exactly */
    "18014398509481984K",    /* 2^64 exactly */
};

START_TEST(sizes_accepted)
{
    uint64_t v = UNTOUCHED;
    ck_assert_msg(cli_parse_size(good[_i].s, &v) == 0, "'%s' refused", good[_i].s);
    ck_assert_uint_eq(v, good[_i].v);
}
END_TEST

START_TEST(sizes_refused_and_nothing_written)
{
    uint64_t v = UNTOUCHED;
    ck_assert_msg(cli_parse_size(bad[_i], &v) == -1, "'%s' accepted", bad[_i]);
    ck_assert_uint_eq(v, UNTOUCHED);
}
END_TEST

START_TEST(null_is_refused)
{
    uint64_t v = UNTOUCHED;
    ck_assert_int_eq(cli_parse_size(NULL, &v), -1);
    ck_assert_int_eq(cli_parse_uint(NULL, 0, 10, &v), -1);
    ck_assert_uint_eq(v, UNTOUCHED);
}
END_TEST

START_TEST(counts)
{
    uint64_t v = UNTOUCHED;
    ck_assert_int_eq(cli_parse_uint("1", 1, 51, &v), 0);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(cli_parse_uint("51", 1, 51, &v), 0);
    ck_assert_uint_eq(v, 51);
    ck_assert_int_eq(cli_parse_uint("18446744073709551615", 0, UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    v = UNTOUCHED;
    static const char *const refused[] = {"0", "52", "", "-1", "+3", "3K", "3 ", "abc", "18446744073709551616"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        ck_assert_msg(cli_parse_uint(refused[i], 1, 51, &v) == -1 && v == UNTOUCHED, "'%s' accepted", refused[i]);
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("parse");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, sizes_accepted, 0, (int)(sizeof good / sizeof good[0]));
    tcase_add_loop_test(tc, sizes_refused_and_nothing_written, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, null_is_refused);
    tcase_add_test(tc, counts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(cli_suite());
}
