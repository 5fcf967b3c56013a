/* SPDX-License-Identifier: MIT */
/* lib/policy_file.c — reads a policy file (`key = value` lines) into a kosvmm_policy, with a reason for every refusal. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <kosvmm/kosvmm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"

#define MAX_FILE (64 * 1024) /* a policy is a few lines; anything larger is not one */
#define MAX_LINE 1024

struct parser {
    const char *path;
    int line;
    char *err;
    size_t err_size;
};

static int fail(struct parser *ps, int rc, const char *fmt, ...)
{
    int n = ps->line ? snprintf(ps->err, ps->err_size, "%s:%d: ", ps->path, ps->line)
                     : snprintf(ps->err, ps->err_size, "%s: ", ps->path);
    if (n >= 0 && (size_t)n < ps->err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err + n, ps->err_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static bool equals(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* <decimal>[K|M|G|T] or "unlimited" (sizes), or a plain count. */
static int parse_amount(struct parser *ps, const char *v, size_t len, bool size, uint64_t *out)
{
    if (equals(v, len, "unlimited")) {
        *out = KOSVMM_UNLIMITED;
        return 0;
    }
    uint64_t n = 0;
    size_t i = 0;
    for (; i < len && isdigit((unsigned char)v[i]); i++)
        if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, (uint64_t)(v[i] - '0'), &n))
            return fail(ps, -EINVAL, "number too large");
    if (i == 0)
        return fail(ps, -EINVAL, "expected a number or 'unlimited', got '%.*s'", (int)len, v);
    if (i < len) {
        static const char units[] = "KMGT";
        const char *u = size && i + 1 == len ? strchr(units, v[i]) : NULL;
        if (!u)
            return fail(ps, -EINVAL, "bad %s '%.*s'", size ? "size (use K, M, G or T)" : "count",
                        (int)len, v);
        unsigned shift = 10u * (unsigned)(u - units + 1);
        if (n > (KOSVMM_UNLIMITED >> shift))
            return fail(ps, -EINVAL, "number too large");
        n <<= shift;
    }
    if (n == KOSVMM_UNLIMITED)
        return fail(ps, -EINVAL, "number too large");
    *out = n;
    return 0;
}

static int parse_bool(struct parser *ps, const char *v, size_t len, uint32_t *out)
{
    if (equals(v, len, "yes")) {
        *out = 1;
        return 0;
    }
    if (equals(v, len, "no")) {
        *out = 0;
        return 0;
    }
    return fail(ps, -EINVAL, "expected 'yes' or 'no', got '%.*s'", (int)len, v);
}

/* Method names separated by commas and/or blanks. */
static int parse_deny(struct parser *ps, const char *v, size_t len, uint32_t *out)
{
    uint32_t bits = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && (v[i] == ',' || isblank((unsigned char)v[i])))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',' && !isblank((unsigned char)v[i]))
            i++;
        if (i == start)
            break;
        int m = kvmm_method_by_name(v + start, i - start);
        if (m < 0)
            return fail(ps, -EINVAL, "unknown method '%.*s'", (int)(i - start), v + start);
        bits |= 1u << m;
    }
    *out = bits;
    return 0;
}

static int parse_audit(struct parser *ps, const char *v, size_t len, int32_t *fd, int *file)
{
    if (equals(v, len, "off")) {
        *fd = -1;
        return 0;
    }
    if (equals(v, len, "stderr")) {
        *fd = STDERR_FILENO;
        return 0;
    }
    if (v[0] != '/')
        return fail(ps, -EINVAL, "audit must be off, stderr or an absolute path, got '%.*s'", (int)len, v);
    char path[MAX_LINE];
    memcpy(path, v, len);
    path[len] = '\0';
    int f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (f < 0)
        return fail(ps, -ENOENT, "cannot open audit file %s: %s", path, strerror(errno));
    *fd = *file = f;
    return 0;
}

static const char *const keys[] = {
    "max_reserved_bytes", "max_committed_bytes", "max_mdl_buffers", "max_mdl_bytes", "max_handles",
    "deny", "w_xor_x", "audit", "locked",
};
#define NKEYS (sizeof keys / sizeof keys[0])

static int parse_line(struct parser *ps, char *s, size_t len, kosvmm_policy *p, int *file, unsigned *seen)
{
    char *hash = memchr(s, '#', len);
    if (hash)
        len = (size_t)(hash - s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    size_t i = 0;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (i == len)
        return 0;
    size_t k = i;
    while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_'))
        i++;
    size_t klen = i - k;
    while (i < len && isblank((unsigned char)s[i]))
        i++;
    if (klen == 0 || i == len || s[i] != '=')
        return fail(ps, -EINVAL, "expected 'key = value'");
    i++;
    while (i < len && isblank((unsigned char)s[i]))
        i++;
    const char *v = s + i;
    size_t vlen = len - i;
    unsigned key = 0;
    while (key < NKEYS && !equals(s + k, klen, keys[key]))
        key++;
    if (key == NKEYS)
        return fail(ps, -EINVAL, "unknown key '%.*s'", (int)klen, s + k);
    if (*seen & (1u << key))
        return fail(ps, -EINVAL, "'%s' given twice", keys[key]);
    *seen |= 1u << key;
    if (vlen == 0)
        return fail(ps, -EINVAL, "'%s' has no value", keys[key]);
    switch (key) {
    case 0: return parse_amount(ps, v, vlen, true, &p->max_reserved_bytes);
    case 1: return parse_amount(ps, v, vlen, true, &p->max_committed_bytes);
    case 2: return parse_amount(ps, v, vlen, false, &p->max_mdl_buffers);
    case 3: return parse_amount(ps, v, vlen, true, &p->max_mdl_bytes);
    case 4: return parse_amount(ps, v, vlen, false, &p->max_handles);
    case 5: return parse_deny(ps, v, vlen, &p->deny);
    case 6: return parse_bool(ps, v, vlen, &p->w_xor_x);
    case 7: return parse_audit(ps, v, vlen, &p->audit_fd, file);
    default: return parse_bool(ps, v, vlen, &p->locked);
    }
}

static int read_file(struct parser *ps, char *buf, size_t cap, size_t *len)
{
    int fd = open(ps->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(ps, -ENOENT, "cannot open: %s", strerror(errno));
    size_t n = 0;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = fail(ps, -ENOENT, "cannot read: %s", strerror(errno));
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            rc = fail(ps, -EINVAL, "larger than %d bytes: not a policy file", MAX_FILE - 1);
            break;
        }
    }
    close(fd);
    *len = n;
    return rc;
}

int kvmm_policy_parse_file(const char *path, kosvmm_policy *p, int *audit_file, char *err, size_t err_size)
{
    struct parser ps = {path, 0, err, err_size};
    char *buf = malloc(MAX_FILE);
    if (!buf)
        return fail(&ps, -ENOMEM, "out of memory");
    size_t len = 0;
    int rc = read_file(&ps, buf, MAX_FILE, &len);
    if (rc == 0 && memchr(buf, '\0', len))
        rc = fail(&ps, -EINVAL, "contains a NUL byte: not a text file");
    int file = -1;
    unsigned seen = 0;
    for (size_t pos = 0; pos < len && rc == 0;) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        ps.line++;
        if (end - pos >= MAX_LINE)
            rc = fail(&ps, -EINVAL, "line longer than %d bytes", MAX_LINE - 1);
        else
            rc = parse_line(&ps, buf + pos, end - pos, p, &file, &seen);
        pos = end + 1;
    }
    free(buf);
    if (rc && file >= 0)
        close(file);
    if (rc == 0)
        *audit_file = file;
    return rc;
}
