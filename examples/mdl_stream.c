/* SPDX-License-Identifier: MIT */
/* mdl_stream.c — two processes stream data through an MDL ring buffer: the producer sends the consumer a read-only handle over a channel; throughput and handle round trips against memcpy and raw SCM_RIGHTS. */
#include <coresrv/handle/handle_api.h>
#include <coresrv/vmm/vmm_api.h>
#include <kosvmm/kosvmm.h>
#include <rtl/retcode_hr.h>

#include "cli.h"
#include "fdpass.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (128u << 10)      /* bytes per ring slot */
#define SLOTS 8u                /* ring = 1 MiB: small enough to stay in cache between the two cores */
#define RING (CHUNK * SLOTS)
#define RT_BATCH 100            /* round trips per batch; kosvmm and raw batches alternate */
#define RT_BATCHES 10
#define SPINS 100               /* polls, then yields, before sleeping on the futex: with more */
#define YIELDS 4                /* runnable threads than CPUs a long spin only delays the other side */
#define SEED 0x9e3779b97f4a7c15ull

/* The control page both processes map read-write: the ring's indices, in chunks (wrapping). */
struct control {
    _Alignas(64) uint32_t head;        /* chunks published by the producer */
    uint32_t consumer_waiting;
    _Alignas(64) uint32_t tail;        /* chunks the consumer is done with */
    uint32_t producer_waiting;
};

/* Producer -> consumer, payload-only messages after the two handles. */
enum { CMD_RT_KOSVMM = 1, CMD_RT_RAW, CMD_DONE };
struct params { uint64_t bytes; uint32_t chunk, slots; };
struct report { uint64_t chunks_ok, checksum; int32_t map_rw_rc, mprotect_errno, raw_mmap_errno; };

static void must(Retcode rc, const char *what)
{
    if (RC_FAILED(rc)) {
        fprintf(stderr, "mdl_stream: %s failed: " RETCODE_HR_FMT "\n", what, RETCODE_HR_PARAMS(rc));
        exit(1);
    }
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- waiting on the shared indices: spin a little, then a futex (shared: no FUTEX_PRIVATE_FLAG) ---- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void await_change(uint32_t *word, uint32_t seen, uint32_t *waiting)
{
    for (int i = 0; i < SPINS; i++) {
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != seen)
            return;
        cpu_relax();
    }
    for (int i = 0; i < YIELDS; i++) {
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != seen)
            return;
        sched_yield();
    }
    /* Announce, re-check, sleep: the publisher stores, then reads the flag, so one side sees the other. */
    __atomic_store_n(waiting, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == seen)
        syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0);
    __atomic_store_n(waiting, 0, __ATOMIC_RELAXED);
}

static void publish(uint32_t *word, uint32_t value, uint32_t *waiting)
{
    __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(waiting, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- the data: a pseudo-random source chunk, each copy stamped with its sequence number ---- */

static void fill_source(uint64_t *w, size_t n)
{
    uint64_t x = SEED;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        w[i] = x;
    }
}

/* A Fletcher-style pair over 64-bit words: s1 = sum, s2 = sum of prefix sums (position-sensitive). */
static void fletcher(const uint64_t *w, size_t n, uint64_t *s1, uint64_t *s2)
{
    uint64_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        a += w[i];
        b += a;
    }
    *s1 = a;
    *s2 = b;
}

/* ---- the consumer (a separate process: this program re-executed with --consumer) ---- */

/* A raw mapping attempt that bypasses kosvmm: the memfd behind the ring, found in /proc/self/fd. */
static int raw_writable_mmap(uint64_t ring_size)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int err = ENOENT;
    while (d && (e = readdir(d))) {
        char path[300], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        struct stat st;
        int fd = atoi(e->d_name);
        if (n <= 0 || (link[n] = '\0', strncmp(link, "/memfd:", 7) != 0) || fstat(fd, &st) != 0 ||
            (uint64_t)st.st_size != ring_size)
            continue;
        void *p = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        err = p == MAP_FAILED ? errno : 0;
        if (p != MAP_FAILED)
            munmap(p, ring_size);
        break;
    }
    if (d)
        closedir(d);
    return err;
}

static int consumer(int channel_fd, int raw_fd)
{
    kosvmm_channel *ch;
    must(kosvmm_channel_from_fd(channel_fd, &ch), "kosvmm_channel_from_fd");
    Handle hctl, hring;
    struct params p;
    rtl_size_t n;
    must(kosvmm_channel_recv(ch, &hctl, &p, sizeof p, &n), "receive the control page");
    must(kosvmm_channel_recv(ch, &hring, RTL_NULL, 0, RTL_NULL), "receive the ring");
    if (hctl == INVALID_HANDLE || hring == INVALID_HANDLE || n != sizeof p || p.chunk != CHUNK || p.slots != SLOTS)
        return 1;

    void *ctl_va, *ring_va;
    must(KnPmmMdlMap(hctl, 0, (rtl_size_t)sysconf(_SC_PAGESIZE), RTL_NULL, VMM_FLAG_READ | VMM_FLAG_WRITE, &ctl_va),
         "KnPmmMdlMap(control)");
    must(KnPmmMdlMap(hring, 0, RING, RTL_NULL, VMM_FLAG_READ, &ring_va), "KnPmmMdlMap(ring, READ)");
    struct control *ctl = ctl_va;
    const unsigned char *ring = ring_va;

    /* The handle is read-only: kosvmm refuses a writable mapping, and so does the kernel when asked
     * directly, since the descriptor behind the handle is a read-only one. */
    struct report r = {0};
    void *rw;
    r.map_rw_rc = (int32_t)KnPmmMdlMap(hring, 0, RING, RTL_NULL, VMM_FLAG_READ | VMM_FLAG_WRITE, &rw);
    r.mprotect_errno = mprotect(ring_va, RING, PROT_READ | PROT_WRITE) == 0 ? 0 : errno;
    r.raw_mmap_errno = raw_writable_mmap(RING);

    uint64_t *src = malloc(CHUNK);
    fill_source(src, CHUNK / 8);
    uint64_t a1, a2, n_words = CHUNK / 8;
    fletcher(src + 1, n_words - 1, &a1, &a2); /* word 0 is the sequence number; the rest never changes */
    free(src);
    must(kosvmm_channel_send(ch, "ready", 5), "send ready");

    uint64_t chunks = p.bytes / CHUNK;
    for (uint64_t k = 0; k < chunks; k++) {
        uint32_t seq = (uint32_t)k;
        while (__atomic_load_n(&ctl->head, __ATOMIC_ACQUIRE) == seq)
            await_change(&ctl->head, seq, &ctl->consumer_waiting);
        const uint64_t *w = (const uint64_t *)(ring + (k % SLOTS) * CHUNK);
        uint64_t s1, s2;
        fletcher(w, n_words, &s1, &s2);
        /* word 0 = k contributes k to s1 and n*k to s2 */
        if (w[0] == k && s1 == k + a1 && s2 == n_words * k + a2)
            r.chunks_ok++;
        r.checksum = (r.checksum ^ s1) * 0x100000001b3ull + s2;
        publish(&ctl->tail, seq + 1, &ctl->producer_waiting);
    }
    must(kosvmm_channel_send(ch, &r, sizeof r), "send the report");

    /* Round trips, as the producer asks: receive, close, acknowledge. */
    for (;;) {
        uint32_t cmd[2];
        must(kosvmm_channel_recv(ch, RTL_NULL, cmd, sizeof cmd, &n), "receive a command");
        if (cmd[0] == CMD_DONE)
            break;
        for (uint32_t i = 0; i < cmd[1]; i++) {
            if (cmd[0] == CMD_RT_KOSVMM) {
                Handle h;
                must(kosvmm_channel_recv(ch, &h, RTL_NULL, 0, RTL_NULL), "receive a handle");
                must(KnHandleClose(h), "KnHandleClose");
                must(kosvmm_channel_send(ch, RTL_NULL, 0), "acknowledge");
            } else if (cli_fd_serve_one(raw_fd) != 0) { /* the same without kosvmm: SCM_RIGHTS */
                return 1;
            }
        }
    }
    KnVmUnmap(ring_va, RING);
    KnVmUnmap(ctl_va, (rtl_size_t)sysconf(_SC_PAGESIZE));
    KnHandleClose(hring);
    KnHandleClose(hctl);
    kosvmm_channel_close(ch);
    return r.chunks_ok == chunks ? 0 : 1;
}

/* ---- the producer ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    return (double)v[n / 2] / 1000.0;
}

static pid_t start_consumer(kosvmm_channel *theirs, int raw_theirs)
{
    pid_t pid = fork();
    if (pid == 0) {
        char a[16], b[16];
        int fd = kosvmm_channel_fd(theirs);
        fcntl(fd, F_SETFD, 0); /* both ends are close-on-exec; these two must survive exec */
        fcntl(raw_theirs, F_SETFD, 0);
        snprintf(a, sizeof a, "%d", fd);
        snprintf(b, sizeof b, "%d", raw_theirs);
        execl("/proc/self/exe", "mdl_stream", "--consumer", a, b, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stream(kosvmm_channel *ch, struct control *ctl, unsigned char *ring, uint64_t bytes)
{
    uint64_t *src = malloc(CHUNK);
    fill_source(src, CHUNK / 8);
    unsigned char *dst = malloc(RING);
    char ready[8];
    must(kosvmm_channel_recv(ch, RTL_NULL, ready, sizeof ready, RTL_NULL), "receive ready");

    uint64_t chunks = bytes / CHUNK, t0 = now_ns();
    for (uint64_t k = 0; k < chunks; k++) {
        uint32_t seq = (uint32_t)k;
        uint32_t tail;
        while ((uint32_t)(seq - (tail = __atomic_load_n(&ctl->tail, __ATOMIC_ACQUIRE))) >= SLOTS)
            await_change(&ctl->tail, tail, &ctl->producer_waiting); /* ring full */
        unsigned char *slot = ring + (k % SLOTS) * CHUNK;
        memcpy(slot, src, CHUNK);
        memcpy(slot, &k, sizeof k);
        publish(&ctl->head, seq + 1, &ctl->consumer_waiting);
    }
    struct report r;
    must(kosvmm_channel_recv(ch, RTL_NULL, &r, sizeof r, RTL_NULL), "receive the report");
    double t_stream = (double)(now_ns() - t0) / 1e9;

    /* The baseline, in this process right after: memcpy of the same bytes through a same-size ring. */
    memset(dst, 0, RING);
    t0 = now_ns();
    for (uint64_t k = 0; k < chunks; k++) {
        unsigned char *slot = dst + (k % SLOTS) * CHUNK;
        memcpy(slot, src, CHUNK);
        memcpy(slot, &k, sizeof k);
        __asm__ volatile("" : : "r"(slot) : "memory"); /* the copies must happen */
    }
    double t_copy = (double)(now_ns() - t0) / 1e9;
    free(src);
    free(dst);

    double gib = (double)(chunks * CHUNK) / (double)(1u << 30);
    printf("consumer: KnPmmMdlMap(ring, READ|WRITE) -> " RETCODE_HR_FMT "\n", RETCODE_HR_PARAMS((Retcode)r.map_rw_rc));
    printf("consumer: mprotect(ring, PROT_WRITE) -> %s; raw mmap(PROT_WRITE, MAP_SHARED) of the memfd -> %s\n",
           r.mprotect_errno ? strerror(r.mprotect_errno) : "allowed (!)",
           r.raw_mmap_errno ? strerror(r.raw_mmap_errno) : "allowed (!)");
    printf("consumer: %llu of %llu chunks verified, checksum %016llx\n", (unsigned long long)r.chunks_ok,
           (unsigned long long)chunks, (unsigned long long)r.checksum);
    printf("stream   %6.2f GiB in %6.3f s = %6.2f GiB/s  (producer memcpy in, consumer checksums, 2 processes)\n",
           gib, t_stream, gib / t_stream);
    printf("memcpy   %6.2f GiB in %6.3f s = %6.2f GiB/s  (one process, same chunks)\n", gib, t_copy, gib / t_copy);
    printf("         stream / memcpy throughput = %.2fx\n", t_copy / t_stream);
    if (r.chunks_ok != chunks || r.map_rw_rc != (int32_t)rcNoCapability || !r.mprotect_errno || !r.raw_mmap_errno) {
        fprintf(stderr, "mdl_stream: the consumer's checks failed\n");
        exit(1);
    }
}

/* Send a handle + receive + close + acknowledge, against the same with a raw SCM_RIGHTS descriptor. */
static void round_trips(kosvmm_channel *ch, int raw_fd)
{
    static uint64_t t_kos[RT_BATCH * RT_BATCHES], t_raw[RT_BATCH * RT_BATCHES];
    Handle h;
    must(KnPmmMdlCreate((rtl_size_t)sysconf(_SC_PAGESIZE), VMM_FLAG_READ | VMM_FLAG_WRITE, &h), "KnPmmMdlCreate");
    int memfd = memfd_create("raw", MFD_CLOEXEC);
    for (int b = 0; b < RT_BATCHES; b++) {
        uint32_t cmd[2] = {CMD_RT_KOSVMM, RT_BATCH};
        must(kosvmm_channel_send(ch, cmd, sizeof cmd), "send a command");
        for (int i = 0; i < RT_BATCH; i++) {
            uint64_t t0 = now_ns();
            must(kosvmm_channel_send_handle(ch, h, VMM_FLAG_READ, RTL_NULL, 0), "kosvmm_channel_send_handle");
            must(kosvmm_channel_recv(ch, RTL_NULL, RTL_NULL, 0, RTL_NULL), "receive an acknowledgement");
            t_kos[b * RT_BATCH + i] = now_ns() - t0;
        }
        cmd[0] = CMD_RT_RAW;
        must(kosvmm_channel_send(ch, cmd, sizeof cmd), "send a command");
        for (int i = 0; i < RT_BATCH; i++) {
            uint64_t t0 = now_ns();
            if (cli_fd_round_trip(raw_fd, memfd) != 0) { /* sendmsg(SCM_RIGHTS), then the peer's ack */
                perror("mdl_stream: raw round trip");
                exit(1);
            }
            t_raw[b * RT_BATCH + i] = now_ns() - t0;
        }
    }
    uint32_t done[2] = {CMD_DONE, 0};
    must(kosvmm_channel_send(ch, done, sizeof done), "send done");
    close(memfd);
    KnHandleClose(h);
    double kos = median_us(t_kos, RT_BATCH * RT_BATCHES), raw = median_us(t_raw, RT_BATCH * RT_BATCHES);
    printf("handle   send + receive + close + ack: median %6.1f us  (kosvmm channel, %d round trips)\n", kos,
           RT_BATCH * RT_BATCHES);
    printf("raw fd   sendmsg(SCM_RIGHTS) + recvmsg + close + ack: median %6.1f us\n", raw);
    printf("         handle / raw fd round trip = %.2fx\n", kos / raw);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: mdl_stream [--bytes N]\n"
                 "Streams N bytes from this process to a child through an MDL ring it can only read, and\n"
                 "compares throughput and handle round trips with memcpy and raw SCM_RIGHTS.\n"
                 "  --bytes N   bytes to stream (default 4G; suffixes K, M, G, T; whole %u KiB chunks)\n"
                 "  --help      this text\n", CHUNK >> 10);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--consumer") == 0)
        return consumer(atoi(argv[2]), atoi(argv[3]));
    static const struct option opts[] = {
        {"bytes", required_argument, NULL, 'b'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    uint64_t bytes = 4ull << 30;
    int c;
    while ((c = getopt_long(argc, argv, "b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (cli_parse_size(optarg, &bytes) != 0 || bytes < CHUNK) {
                fprintf(stderr, "mdl_stream: --bytes %s: expected a size of at least %uK, such as 256M or 4G\n",
                        optarg, CHUNK >> 10);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    bytes = bytes / CHUNK * CHUNK;

    /* The producer's side: a ring and a control page, both mapped read-write here. */
    Handle hring, hctl;
    void *ring, *ctl;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    must(KnPmmMdlCreate(RING, VMM_FLAG_READ | VMM_FLAG_WRITE, &hring), "KnPmmMdlCreate(ring)");
    must(KnPmmMdlCreate(page, VMM_FLAG_READ | VMM_FLAG_WRITE, &hctl), "KnPmmMdlCreate(control)");
    must(KnPmmMdlMap(hring, 0, RING, RTL_NULL, VMM_FLAG_READ | VMM_FLAG_WRITE, &ring), "KnPmmMdlMap(ring)");
    must(KnPmmMdlMap(hctl, 0, page, RTL_NULL, VMM_FLAG_READ | VMM_FLAG_WRITE, &ctl), "KnPmmMdlMap(control)");

    kosvmm_channel *mine, *theirs;
    int raw[2];
    must(kosvmm_channel_pair(&mine, &theirs), "kosvmm_channel_pair");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, raw) != 0)
        return 1;
    pid_t child = start_consumer(theirs, raw[1]);
    kosvmm_channel_close(theirs);
    close(raw[1]);
    printf("mdl_stream: producer pid %d, consumer pid %d; %.2f GiB in %u KiB chunks through a %u KiB MDL ring\n",
           (int)getpid(), (int)child, (double)bytes / (double)(1u << 30), CHUNK >> 10, RING >> 10);

    /* The consumer gets the control page read-write and the ring READ-ONLY: the mask narrows it. */
    struct params p = {bytes, CHUNK, SLOTS};
    must(kosvmm_channel_send_handle(mine, hctl, VMM_FLAG_READ | VMM_FLAG_WRITE, &p, sizeof p), "send the control page");
    must(kosvmm_channel_send_handle(mine, hring, VMM_FLAG_READ, RTL_NULL, 0), "send the ring");

    stream(mine, ctl, ring, bytes);
    round_trips(mine, raw[0]);

    int status;
    waitpid(child, &status, 0);
    kosvmm_channel_close(mine);
    close(raw[0]);
    KnVmUnmap(ring, RING);
    KnVmUnmap(ctl, page);
    KnHandleClose(hring);
    KnHandleClose(hctl);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "mdl_stream: consumer failed (status %#x)\n", status);
        return 1;
    }
    return 0;
}
