/* SPDX-License-Identifier: MIT */
/* src/mdl_memfd/channel_wire.c — one channel message as one SEQPACKET datagram: send, receive, validate, never leak an fd. */
#include "channel_wire.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

static void desc_clear(struct kvmm_mdl_export *d)
{
    memset(d, 0, sizeof *d);
    d->buffer_fd = -1;
    for (int i = 0; i < KVMM_MDL_MAX_REVOKE; i++)
        d->revoke_fd[i] = -1;
}

void kvmm_wire_txtable_init(struct kvmm_wire_txtable *t)
{
    memset(t, 0, sizeof *t);
    t->fb_fd = -1;
}

void kvmm_wire_txtable_clear(struct kvmm_wire_txtable *t)
{
    kvmm_mdl_shared_page_unmap(t->fb);
    if (t->fb_fd >= 0)
        close(t->fb_fd);
    kvmm_wire_txtable_init(t);
}

void kvmm_wire_rxtable_clear(struct kvmm_wire_rxtable *t)
{
    for (unsigned j = 0; j < KVMM_WIRE_TABLE; j++) {
        if (t->page[j])
            kvmm_mdl_rpage_release(t->page[j], true);
        t->page[j] = NULL;
        t->lost[j] = false;
    }
    kvmm_mdl_shared_page_unmap(t->fb);
    t->fb = NULL;
}

/* Entry j of the receiver's table holds nothing now: drop it and tell the sender. */
static void rx_lose(struct kvmm_wire_rxtable *t, unsigned j)
{
    if (t->page[j])
        kvmm_mdl_rpage_release(t->page[j], true);
    t->page[j] = NULL;
    t->lost[j] = true;
    if (t->fb)
        __atomic_or_fetch(&t->fb[KVMM_WIRE_FB_LOST], 1u << j, __ATOMIC_RELEASE);
}

/* Whether the receiver has our feedback page, which the table's use depends on; made at the first
 * handle message. Entries the receiver lost count as empty from now on. */
static bool tx_ready(struct kvmm_wire_txtable *tx)
{
    if (!tx || tx->off)
        return false;
    if (!tx->fb && kvmm_mdl_shared_page_new(&tx->fb_fd, &tx->fb) != 0) {
        tx->fb = NULL;
        tx->fb_fd = -1;
        return false; /* INLINE, and try again next time */
    }
    if (!__atomic_load_n(&tx->fb[KVMM_WIRE_FB_ATTACHED], __ATOMIC_ACQUIRE))
        return false;
    if (tx->fb_fd >= 0) { /* delivered: the mapping is all this end needs from now on */
        close(tx->fb_fd);
        tx->fb_fd = -1;
    }
    uint32_t lost = __atomic_load_n(&tx->fb[KVMM_WIRE_FB_LOST], __ATOMIC_ACQUIRE);
    for (unsigned j = 0; j < KVMM_WIRE_TABLE; j++)
        if (lost & (1u << j))
            tx->stamp[j] = 0;
    return true;
}

/* Names each of desc's pages: an entry of tx the receiver has (REF), one this message fills
 * (INSTALL: fd sent; *installs gets the bit), or INLINE. Entries named by this message are not
 * replaced by it, and a page given twice shares its entry. tx itself is not changed. */
static void plan_pages(const struct kvmm_wire_txtable *tx, bool ready, const struct kvmm_mdl_export *desc,
                       struct kvmm_wire_header *h, unsigned *installs)
{
    unsigned taken = 0;
    *installs = 0;
    for (uint32_t i = 0; i < desc->revoke_count; i++) {
        h->revoke_dev[i] = desc->revoke_dev[i];
        h->revoke_ino[i] = desc->revoke_ino[i];
        if (!ready) {
            h->revoke_how[i] = KVMM_WIRE_PAGE_INLINE;
            continue;
        }
        int j = -1;
        for (uint32_t k = 0; k < i && j < 0; k++) /* the same page earlier in this message */
            if (h->revoke_how[k] != KVMM_WIRE_PAGE_INLINE && h->revoke_dev[k] == desc->revoke_dev[i] &&
                h->revoke_ino[k] == desc->revoke_ino[i])
                j = h->revoke_index[k];
        for (unsigned k = 0; k < KVMM_WIRE_TABLE && j < 0; k++)
            if (tx->stamp[k] && tx->dev[k] == desc->revoke_dev[i] && tx->ino[k] == desc->revoke_ino[i] &&
                !(*installs & (1u << k)))
                j = (int)k;
        if (j >= 0) {
            h->revoke_how[i] = KVMM_WIRE_PAGE_REF;
        } else {
            /* An empty entry, else the least recently used one this message does not name. */
            for (unsigned k = 0; k < KVMM_WIRE_TABLE; k++)
                if (!(taken & (1u << k)) && (j < 0 || tx->stamp[k] < tx->stamp[j]))
                    j = (int)k;
            h->revoke_how[i] = KVMM_WIRE_PAGE_INSTALL;
            *installs |= 1u << j;
        }
        taken |= 1u << j;
        h->revoke_index[i] = (uint8_t)j;
    }
}

static int send_errno(int err)
{
    switch (err) {
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
    case ECONNREFUSED:
        return -ENOENT;
    case ETOOMANYREFS: /* descriptors in flight beyond RLIMIT_NOFILE */
        return -EDQUOT;
    case ENOMEM:
    case ENOBUFS:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

int kvmm_wire_send(int sock, struct kvmm_wire_txtable *tx, const struct kvmm_mdl_export *desc, const void *payload,
                   size_t size)
{
    if (size > KVMM_WIRE_MAX_PAYLOAD || (size && !payload))
        return -EINVAL;
    if (desc && desc->revoke_count > KVMM_MDL_MAX_REVOKE)
        return -EINVAL;

    struct kvmm_wire_header h = {
        .magic = KVMM_WIRE_MAGIC,
        .version = KVMM_WIRE_VERSION,
        .kind = desc ? KVMM_WIRE_KIND_HANDLE : KVMM_WIRE_KIND_DATA,
        .payload_size = (uint32_t)size,
    };
    struct {
        _Alignas(struct cmsghdr) char buf[CMSG_SPACE(sizeof(int) * KVMM_WIRE_MAX_FDS)];
    } control;
    struct iovec iov[2] = {{&h, desc ? sizeof h : KVMM_WIRE_DATA_HEADER}, {(void *)payload, size}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
    unsigned installs = 0;
    bool ready = false;

    if (desc) {
        int fds[KVMM_WIRE_MAX_FDS];
        h.buffer_size = desc->buffer_size;
        h.offset = desc->offset;
        h.length = desc->length;
        h.rights = desc->rights;
        h.revoke_count = desc->revoke_count;
        ready = tx_ready(tx);
        plan_pages(tx, ready, desc, &h, &installs);
        fds[h.nfds++] = desc->buffer_fd;
        for (uint32_t i = 0; i < desc->revoke_count; i++) {
            h.revoke_slot[i] = desc->revoke_slot[i];
            if (h.revoke_how[i] != KVMM_WIRE_PAGE_REF)
                fds[h.nfds++] = desc->revoke_fd[i];
        }
        if (!ready && tx && tx->fb && tx->fb_fd >= 0) {
            h.flags |= KVMM_WIRE_FLAG_FEEDBACK;
            fds[h.nfds++] = tx->fb_fd;
        }
        memset(&control, 0, sizeof control);
        m.msg_control = control.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * h.nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * h.nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * h.nfds);
    }

    ssize_t n;
    do
        n = sendmsg(sock, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return send_errno(errno);
    /* SEQPACKET sends a datagram whole or not at all; anything else is not a channel socket. */
    if ((size_t)n != iov[0].iov_len + size)
        return -EIO;
    /* Sent: the receiver installs (or, out of descriptors, loses) these entries in this order. */
    if (desc && ready) {
        for (uint32_t i = 0; i < desc->revoke_count; i++) {
            unsigned j = h.revoke_index[i];
            if (h.revoke_how[i] == KVMM_WIRE_PAGE_INSTALL) {
                tx->dev[j] = h.revoke_dev[i];
                tx->ino[j] = h.revoke_ino[i];
            }
            tx->stamp[j] = ++tx->clock ? tx->clock : (tx->clock = 1);
        }
    }
    return 0;
}

void kvmm_wire_rxbuf_prepare(struct kvmm_wire_rxbuf *rx)
{
    rx->iov.iov_base = rx->data.bytes;
    rx->iov.iov_len = sizeof rx->data.bytes;
    memset(&rx->msg, 0, sizeof rx->msg);
    rx->msg.msg_iov = &rx->iov;
    rx->msg.msg_iovlen = 1;
    rx->msg.msg_control = rx->control.buf;
    rx->msg.msg_controllen = sizeof rx->control.buf;
}

/*
 * Takes every descriptor out of the control part: up to KVMM_WIRE_MAX_FDS into fds, any beyond
 * closed at once. Returns false if anything but SCM_RIGHTS was there or descriptors overflowed.
 * With MSG_CTRUNC the kernel has already installed the descriptors that fitted and reports them in
 * the (shortened) last cmsg, so they are found here and closed by the caller like the others.
 */
static bool collect_fds(struct msghdr *m, int *fds, unsigned *count)
{
    bool ok = true;
    *count = 0;
    if (!m->msg_control || m->msg_controllen < sizeof(struct cmsghdr))
        return true;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            ok = false;  /* nothing this protocol asked for (no SO_PASSCRED): refuse */
            continue;
        }
        if (c->cmsg_len < CMSG_LEN(0))
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof fd, sizeof fd);
            if (*count < KVMM_WIRE_MAX_FDS) {
                fds[(*count)++] = fd;
            } else {
                close(fd);
                ok = false;
            }
        }
    }
    return ok;
}

static void close_fds(const int *fds, unsigned count)
{
    for (unsigned i = 0; i < count; i++)
        close(fds[i]);
}

/* Descriptors the header says come with the message: the buffer and its INLINE and INSTALL pages. */
static size_t header_size(const struct kvmm_wire_header *h)
{
    return h->kind == KVMM_WIRE_KIND_HANDLE ? sizeof *h : KVMM_WIRE_DATA_HEADER;
}

static bool header_valid(const struct kvmm_wire_header *h, size_t n, unsigned nfds)
{
    /* Nothing past the short header is looked at before n says it arrived. */
    if (n < KVMM_WIRE_DATA_HEADER || h->magic != KVMM_WIRE_MAGIC || h->version != KVMM_WIRE_VERSION)
        return false;
    if (n < header_size(h) || h->payload_size > KVMM_WIRE_MAX_PAYLOAD || h->payload_size != n - header_size(h))
        return false;
    if (h->nfds != nfds)
        return false;
    if (h->flags & ~KVMM_WIRE_FLAG_FEEDBACK)
        return false;
    switch (h->kind) {
    case KVMM_WIRE_KIND_DATA:
        return nfds == 0 && h->flags == 0;
    case KVMM_WIRE_KIND_HANDLE: {
        if (h->revoke_count > KVMM_MDL_MAX_REVOKE)
            return false;
        unsigned carried = 0, installed = 0;
        for (uint32_t i = 0; i < h->revoke_count; i++) {
            if (h->revoke_how[i] > KVMM_WIRE_PAGE_REF ||
                (h->revoke_how[i] != KVMM_WIRE_PAGE_INLINE && h->revoke_index[i] >= KVMM_WIRE_TABLE))
                return false;
            if (h->revoke_how[i] == KVMM_WIRE_PAGE_INSTALL) {
                /* One entry filled twice in one message: nothing a sender does. */
                if (installed & (1u << h->revoke_index[i]))
                    return false;
                installed |= 1u << h->revoke_index[i];
            }
            carried += h->revoke_how[i] != KVMM_WIRE_PAGE_REF;
        }
        return nfds == 1 + carried + (h->flags & KVMM_WIRE_FLAG_FEEDBACK ? 1 : 0);
    }
    default:
        return false;
    }
}

/*
 * The pages of a valid handle message against the table: INSTALLs are staged (their fds checked
 * and mapped) and REFs resolved against the staged entries and the table; only if every page is
 * right does the table take the staged pages. out gets a reference to each page. 0, -EPERM (an
 * entry empty or holding another identity, a page fd refused, no table), -EDQUOT (a lost entry).
 * Takes fds[1..] in all cases.
 */
static int resolve_pages(const struct kvmm_wire_header *h, const int *fds, struct kvmm_wire_rxtable *t,
                         struct kvmm_mdl_export *out)
{
    struct kvmm_mdl_rpage *staged[KVMM_WIRE_TABLE] = {0};
    bool fresh[KVMM_WIRE_TABLE] = {0};
    uint64_t sdev[KVMM_WIRE_TABLE], sino[KVMM_WIRE_TABLE];
    unsigned next = 1, installed = 0;
    int rc = 0;
    for (uint32_t i = 0; i < h->revoke_count; i++) {
        unsigned j = h->revoke_index[i];
        int fd = h->revoke_how[i] == KVMM_WIRE_PAGE_REF ? -1 : fds[next++];
        if (rc) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        uint64_t dev, ino;
        struct kvmm_mdl_rpage *p;
        switch (h->revoke_how[i]) {
        case KVMM_WIRE_PAGE_INLINE:
            out->revoke_fd[i] = fd;
            continue;
        case KVMM_WIRE_PAGE_INSTALL:
            if (!t) {
                close(fd);
                rc = -EPERM;
            } else if ((rc = kvmm_mdl_rpage_adopt(fd, &staged[j], &fresh[j], &dev, &ino)) != 0) {
                /* Out of memory here is this process's limit; anything else is no revocation page. */
                rc = rc == -ENOMEM ? -ENOMEM : -EPERM;
                rx_lose(t, j);
            } else if (dev != h->revoke_dev[i] || ino != h->revoke_ino[i]) {
                rc = -EPERM;
                rx_lose(t, j);
            } else {
                installed |= 1u << j;
                sdev[j] = dev;
                sino[j] = ino;
                kvmm_mdl_rpage_ref(staged[j]);
                out->revoke_page[i] = staged[j];
            }
            continue;
        default: /* REF: an entry this message filled, or one of the table, with the identity named */
            if (installed & (1u << j)) {
                p = staged[j];
                dev = sdev[j];
                ino = sino[j];
            } else {
                p = t ? t->page[j] : NULL;
                dev = p ? t->dev[j] : 0;
                ino = p ? t->ino[j] : 0;
            }
            if (!p)
                rc = t && t->lost[j] ? -EDQUOT : -EPERM;
            else if (dev != h->revoke_dev[i] || ino != h->revoke_ino[i])
                rc = -EPERM;
            else {
                kvmm_mdl_rpage_ref(p);
                out->revoke_page[i] = p;
            }
            continue;
        }
    }
    if (rc) {
        for (uint32_t i = 0; i < h->revoke_count; i++) {
            if (out->revoke_fd[i] >= 0)
                close(out->revoke_fd[i]);
            out->revoke_fd[i] = -1;
            if (out->revoke_page[i])
                kvmm_mdl_rpage_release(out->revoke_page[i], true);
            out->revoke_page[i] = NULL;
        }
        for (unsigned j = 0; j < KVMM_WIRE_TABLE; j++)
            if (staged[j])
                kvmm_mdl_rpage_release(staged[j], !fresh[j]); /* a refused message leaves no mapping */
        return rc;
    }
    for (uint32_t i = 0; i < h->revoke_count; i++) {
        unsigned j = h->revoke_index[i];
        if (h->revoke_how[i] != KVMM_WIRE_PAGE_INSTALL)
            continue;
        if (t->page[j])
            kvmm_mdl_rpage_release(t->page[j], true);
        t->page[j] = staged[j];
        t->dev[j] = h->revoke_dev[i];
        t->ino[j] = h->revoke_ino[i];
        t->lost[j] = false;
        if (t->fb)
            __atomic_and_fetch(&t->fb[KVMM_WIRE_FB_LOST], ~(1u << j), __ATOMIC_RELEASE);
    }
    return 0;
}

/* The sender's feedback page (takes fd): mapped, unless it is the one mapped already, and told
 * that this end has it. A page that cannot be mapped is ignored: the sender then keeps sending
 * every page INLINE, which needs no table. */
static void attach_feedback(struct kvmm_wire_rxtable *t, int fd)
{
    uint32_t *fb;
    uint64_t dev, ino;
    if (t && kvmm_mdl_shared_page_map(fd, &fb, &dev, &ino) == 0) {
        if (t->fb && t->fb_dev == dev && t->fb_ino == ino) {
            kvmm_mdl_shared_page_unmap(fb);
        } else {
            /* Another sender on this end (a new channel object over the socket): its table
             * starts empty, so the entries of the old one can only name pages by mistake. */
            kvmm_wire_rxtable_clear(t);
            t->fb = fb;
            t->fb_dev = dev;
            t->fb_ino = ino;
        }
        __atomic_store_n(&t->fb[KVMM_WIRE_FB_ATTACHED], 1u, __ATOMIC_RELEASE);
    }
    close(fd);
}

int kvmm_wire_parse(struct kvmm_wire_rxbuf *rx, ssize_t n, struct kvmm_wire_rxtable *table, struct kvmm_wire_msg *out,
                    size_t capacity)
{
    int fds[KVMM_WIRE_MAX_FDS];
    unsigned nfds;
    bool fds_ok = collect_fds(&rx->msg, fds, &nfds);

    if (n <= 0) {
        close_fds(fds, nfds);
        return n == 0 && nfds == 0 ? -ENOENT : -EPERM;
    }
    const struct kvmm_wire_header *h = &rx->data.header;
    /* A well-formed message whose descriptors fitted the buffer yet arrived cut short: the kernel
     * could not install them all here (RLIMIT_NOFILE), which is this process's quota, not forgery.
     * The entries it was to fill hold nothing from now on: the sender counts on them. */
    if (fds_ok && (rx->msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == MSG_CTRUNC && (size_t)n >= sizeof *h &&
        h->magic == KVMM_WIRE_MAGIC && h->version == KVMM_WIRE_VERSION && h->nfds <= KVMM_WIRE_MAX_FDS &&
        nfds < h->nfds) {
        close_fds(fds, nfds);
        if (table && h->kind == KVMM_WIRE_KIND_HANDLE && h->revoke_count <= KVMM_MDL_MAX_REVOKE)
            for (uint32_t i = 0; i < h->revoke_count; i++) {
                unsigned j = h->revoke_index[i];
                if (h->revoke_how[i] == KVMM_WIRE_PAGE_INSTALL && j < KVMM_WIRE_TABLE)
                    rx_lose(table, j);
            }
        return -EDQUOT;
    }
    if (!fds_ok || (rx->msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || !header_valid(h, (size_t)n, nfds)) {
        close_fds(fds, nfds);
        return -EPERM;
    }

    desc_clear(&out->desc);
    if (h->flags & KVMM_WIRE_FLAG_FEEDBACK)
        attach_feedback(table, fds[--nfds]);
    if (h->kind == KVMM_WIRE_KIND_HANDLE) {
        int rc = resolve_pages(h, fds, table, &out->desc);
        if (rc) {
            close(fds[0]);
            return rc;
        }
    }
    out->kind = h->kind;
    out->payload = rx->data.bytes + header_size(h);
    out->payload_size = h->payload_size;
    if (h->kind == KVMM_WIRE_KIND_HANDLE) {
        out->desc.buffer_fd = fds[0];
        out->desc.buffer_size = h->buffer_size;
        out->desc.offset = h->offset;
        out->desc.length = h->length;
        out->desc.rights = h->rights;
        out->desc.revoke_count = h->revoke_count;
        for (uint32_t i = 0; i < h->revoke_count; i++)
            out->desc.revoke_slot[i] = h->revoke_slot[i];
    }
    if (h->payload_size > capacity) {
        kvmm_wire_msg_close(out);
        return -EINVAL;
    }
    return 0;
}

int kvmm_wire_recv(int sock, struct kvmm_wire_rxbuf *rx, struct kvmm_wire_rxtable *table, struct kvmm_wire_msg *out,
                   size_t capacity)
{
    ssize_t n;
    kvmm_wire_rxbuf_prepare(rx);
    do
        n = recvmsg(sock, &rx->msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        /* A failed recvmsg installs no descriptors. */
        int err = errno;
        return err == ECONNRESET || err == ENOTCONN ? -ENOENT
               : err == ENOMEM || err == ENOBUFS   ? -ENOMEM
               : err == EMFILE || err == ENFILE    ? -EDQUOT
                                                   : -EIO;
    }
    return kvmm_wire_parse(rx, n, table, out, capacity);
}

void kvmm_wire_msg_close(struct kvmm_wire_msg *m)
{
    if (m->kind != KVMM_WIRE_KIND_HANDLE)
        return;
    if (m->desc.buffer_fd >= 0)
        close(m->desc.buffer_fd);
    for (uint32_t i = 0; i < m->desc.revoke_count && i < KVMM_MDL_MAX_REVOKE; i++) {
        if (m->desc.revoke_fd[i] >= 0)
            close(m->desc.revoke_fd[i]);
        if (m->desc.revoke_page[i])
            kvmm_mdl_rpage_release(m->desc.revoke_page[i], true);
    }
    desc_clear(&m->desc);
}
