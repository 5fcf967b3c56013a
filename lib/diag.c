/* SPDX-License-Identifier: MIT */
/* lib/diag.c — what kosvmm tells the user on stderr: warnings, KOSVMM_VERBOSE, KOSVMM_SHOW_STATS. */
#include "diag.h"

#include <kosvmm/kosvmm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "os.h"

#ifndef KVMM_VERSION
#error "KVMM_VERSION must be defined by the build (meson.build passes the project version)"
#endif

static void vformat(char *buf, size_t size, const char *fmt, va_list ap)
{
    if (vsnprintf(buf, size, fmt, ap) < 0 && size)
        buf[0] = '\0';
}

void kvmm_format(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vformat(buf, size, fmt, ap);
    va_end(ap);
}

static void write_all(const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return; /* stderr closed or full: a diagnostic must never fail the caller */
        s += w;
        n -= (size_t)w;
    }
}

void kvmm_message(const char *fmt, ...)
{
    char line[512] = "kosvmm: ";
    size_t p = strlen(line);
    va_list ap;
    va_start(ap, fmt);
    vformat(line + p, sizeof line - p - 1, fmt, ap);
    va_end(ap);
    p = strlen(line);
    line[p++] = '\n';
    write_all(line, p);
}

static bool verbose, show_stats;

static void read_switches(void)
{
    kvmm_env_bool("KOSVMM_VERBOSE", &verbose);
    kvmm_env_bool("KOSVMM_SHOW_STATS", &show_stats);
}

static pthread_once_t switches_once = PTHREAD_ONCE_INIT;

bool kvmm_verbose(void)
{
    pthread_once(&switches_once, read_switches);
    return verbose;
}

static const char *size_text(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    kvmm_format(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

/* Guard pages are installed at their first use; the report tries one on a page of its own so it can say
 * which mechanism the process will get. */
static void report_guard(void)
{
    uintptr_t page;
    size_t ps = kvmm_os_page_size();
    if (kvmm_os_reserve(0, ps, &page) != 0) {
        kvmm_message("guard pages: not probed (no address space for a probe page)");
        return;
    }
    int rc = kvmm_os_install_guard(page, ps);
    kvmm_os_release(page, ps);
    if (rc == 0)
        kvmm_message("guard pages: MADV_GUARD_INSTALL markers (robust to mprotect)");
    else
        kvmm_message("guard pages: PROT_NONE pages of the reservation (MADV_GUARD_INSTALL refused: %s; "
                     "it needs Linux 6.13+)", strerror(-rc));
}

/* KOSVMM_SHOW_STATS, at exit or unload. The counters are what the program left; which engine new lazy
 * commits would get is not shown, since the engine may already have stopped for exit (it then reports
 * the kernel engine). */
__attribute__((destructor)) static void print_stats(void)
{
    if (!show_stats)
        return;
    kosvmm_stats s;
    kosvmm_usage u;
    memset(&s, 0, sizeof s);
    memset(&u, 0, sizeof u);
    s.size = sizeof s;
    u.size = sizeof u;
    if (RC_FAILED(kosvmm_get_stats(&s)) || RC_FAILED(kosvmm_get_usage(&u)))
        return;
    char a[32], b[32], c[32], d[32], e[32], f[32];
    kvmm_message("statistics of pid %d at exit (KOSVMM_SHOW_STATS):", (int)getpid());
    kvmm_message("  regions %llu, reserved %s, committed %s (lazy %s, fully %s, pinned %s)",
                 (unsigned long long)s.regions, size_text(s.reserved_bytes, a, sizeof a),
                 size_text(s.committed_bytes, b, sizeof b), size_text(s.lazy_bytes, c, sizeof c),
                 size_text(s.locked_bytes, d, sizeof d), size_text(s.pinned_bytes, e, sizeof e));
    kvmm_message("  userfaultfd engine: faults %llu, pages filled %llu (%llu ahead, %llu zero pages for reads), "
                 "fill time %.3f s, last window %u pages, unbacked faults %llu", (unsigned long long)s.uffd_faults,
                 (unsigned long long)s.uffd_pages_filled, (unsigned long long)s.uffd_readahead_pages,
                 (unsigned long long)s.uffd_zero_pages,
                 (double)s.uffd_fill_ns / 1e9, (unsigned)s.lazy_window, (unsigned long long)s.uffd_overcommits);
    kvmm_message("  huge-page advised %s; pin refusals %llu; kernel refusals %llu", size_text(s.thp_bytes, f, sizeof f),
                 (unsigned long long)s.pin_refusals, (unsigned long long)s.kernel_refusals);
    kvmm_message("  policy: MDL buffers %llu (%s), handles %llu, quota refusals %llu, denials %llu",
                 (unsigned long long)u.mdl_buffers, size_text(u.mdl_bytes, a, sizeof a),
                 (unsigned long long)u.handles, (unsigned long long)u.quota_refusals,
                 (unsigned long long)u.denials);
}

void kvmm_diag_start(const char *policy_source)
{
    char why[256] = "";
    bool v = kvmm_verbose();
    /* Only verbose mode or an explicit KOSVMM_ENGINE needs the engine's answer at load: asking
     * takes the lazy configuration, which installs kosvmm's fork handlers, and a process that never
     * uses lazy memory should not have them (ThreadSanitizer reports every later fork's child
     * re-initialising a lock the parent's handler took). */
    if (!v && !secure_getenv("KOSVMM_ENGINE"))
        return;
    uint32_t engine = kvmm_lazy_explain(v, why, sizeof why);
    if (v) {
        kvmm_message("kosvmm %s, pid %d (KOSVMM_VERBOSE)", KVMM_VERSION, (int)getpid());
        kvmm_message("lazy engine: %s (%s)", engine == KOSVMM_ENGINE_UFFD ? "uffd" : "kernel demand paging", why);
        report_guard();
        kvmm_message("policy: %s", policy_source);
    }
}
