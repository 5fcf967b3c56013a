/* SPDX-License-Identifier: MIT */
/* tests/fuzz/model.c — the reference model: regions, page states, expected contents, MDL buffers and handles. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

void m_init(model *m, size_t page, uintptr_t arena, uint32_t arena_pages)
{
    memset(m, 0, sizeof *m);
    m->page = page;
    m->arena = arena;
    m->arena_pages = arena_pages;
}

uintptr_t m_low_guard(const model *m, const m_region *r)
{
    return r->flags & VMM_FLAG_LOW_GUARD ? r->base - m->page : 0;
}

uintptr_t m_high_guard(const model *m, const m_region *r)
{
    return r->flags & VMM_FLAG_HIGH_GUARD ? r->base + r->npages * m->page : 0;
}

m_region *m_find(model *m, uintptr_t a, uint32_t *idx)
{
    for (int i = 0; i < M_MAX_REGIONS; i++) {
        m_region *r = &m->reg[i];
        if (r->used && a >= r->base && a - r->base < r->npages * m->page) {
            if (idx)
                *idx = (uint32_t)((a - r->base) / m->page);
            return r;
        }
    }
    return NULL;
}

m_region *m_find_guard(model *m, uintptr_t a)
{
    a &= ~(uintptr_t)(m->page - 1);
    for (int i = 0; i < M_MAX_REGIONS; i++) {
        m_region *r = &m->reg[i];
        if (r->used && ((m_low_guard(m, r) && m_low_guard(m, r) == a) || (m_high_guard(m, r) && m_high_guard(m, r) == a)))
            return r;
    }
    return NULL;
}

int m_overlaps(model *m, uintptr_t lo, uintptr_t hi)
{
    for (int i = 0; i < M_MAX_REGIONS; i++) {
        const m_region *r = &m->reg[i];
        if (!r->used)
            continue;
        uintptr_t rlo = r->flags & VMM_FLAG_LOW_GUARD ? r->base - m->page : r->base;
        uintptr_t rhi = r->base + r->npages * m->page + (r->flags & VMM_FLAG_HIGH_GUARD ? m->page : 0);
        if (lo < rhi && rlo < hi)
            return 1;
    }
    return 0;
}

m_region *m_new_region(model *m)
{
    for (int i = 0; i < M_MAX_REGIONS; i++)
        if (!m->reg[i].used) {
            memset(&m->reg[i], 0, sizeof m->reg[i]);
            m->reg[i].used = 1;
            return &m->reg[i];
        }
    return NULL;
}

int m_free_region_slots(const model *m)
{
    int n = 0;
    for (int i = 0; i < M_MAX_REGIONS; i++)
        n += !m->reg[i].used;
    return n;
}

uint8_t *m_page_data(model *m, const m_page *p)
{
    if (p->state == M_MDL)
        return m->buf[p->buf].data[p->bpage];
    return p->data;
}

uint8_t *m_page_data_for_write(model *m, m_page *p)
{
    uint8_t **slot = p->state == M_MDL ? &m->buf[p->buf].data[p->bpage] : &p->data;
    if (!*slot) {
        *slot = calloc(1, m->page);
        if (!*slot)
            abort(); /* the model cannot go on without its shadow; a test harness failure */
    }
    return *slot;
}

void m_page_clear(model *m, m_page *p)
{
    (void)m;
    if (p->state != M_MDL) {
        free(p->data);
    }
    p->data = NULL;
    p->buf = -1;
}

m_handle *m_handle_of(model *m, Handle h)
{
    for (int i = 0; i < M_MAX_HANDLES; i++)
        if (m->hd[i].used && m->hd[i].h == h)
            return &m->hd[i];
    return NULL;
}

int m_handle_self_revoked(const model *m, const m_handle *h)
{
    return m->word[h->own];
}

int m_handle_revoked(const model *m, const m_handle *h)
{
    if (m->word[h->own])
        return 1;
    for (uint32_t i = 0; i < h->nanc; i++)
        if (m->word[h->anc[i]])
            return 1;
    return 0;
}

int m_new_buf(model *m, uint32_t npages)
{
    for (int i = 0; i < M_MAX_BUFS; i++)
        if (!m->buf[i].used) {
            memset(&m->buf[i], 0, sizeof m->buf[i]);
            m->buf[i].used = 1;
            m->buf[i].npages = npages;
            return i;
        }
    return -1;
}

m_handle *m_new_handle(model *m)
{
    if (m->nwords >= M_MAX_WORDS)
        return NULL;
    for (int i = 0; i < M_MAX_HANDLES; i++)
        if (!m->hd[i].used) {
            memset(&m->hd[i], 0, sizeof m->hd[i]);
            m->hd[i].used = 1;
            m->hd[i].own = m->nwords++;
            return &m->hd[i];
        }
    return NULL;
}

int m_live_handles(const model *m)
{
    int n = 0;
    for (int i = 0; i < M_MAX_HANDLES; i++)
        n += m->hd[i].used;
    return n;
}

void m_close_handle(model *m, m_handle *h)
{
    /* Closed values are kept: passing one again must give rcInvalidArgument. */
    if (m->nstale < M_MAX_STALE)
        m->stale[m->nstale++] = h->h;
    else
        m->stale[(h->h ^ m->nstale) % M_MAX_STALE] = h->h;
    h->used = 0;
    m_gc_bufs(m);
}

void m_gc_bufs(model *m)
{
    int ref[M_MAX_BUFS] = {0};
    for (int i = 0; i < M_MAX_HANDLES; i++)
        if (m->hd[i].used)
            ref[m->hd[i].buf] = 1;
    for (int i = 0; i < M_MAX_REGIONS; i++) {
        const m_region *r = &m->reg[i];
        if (!r->used)
            continue;
        for (uint32_t p = 0; p < r->npages; p++)
            if (r->pg[p].state == M_MDL)
                ref[r->pg[p].buf] = 1;
    }
    for (int i = 0; i < M_MAX_BUFS; i++)
        if (m->buf[i].used && !ref[i]) {
            for (uint32_t p = 0; p < m->buf[i].npages; p++)
                free(m->buf[i].data[p]);
            memset(&m->buf[i], 0, sizeof m->buf[i]);
        }
}

void m_unmap(model *m, m_region *r, uint32_t lo, uint32_t hi)
{
    for (uint32_t p = lo; p < hi; p++)
        m_page_clear(m, &r->pg[p]);
    if (lo == 0 && hi == r->npages) {
        r->used = 0;
    } else if (lo > 0 && hi < r->npages) {
        /* The middle goes: the tail becomes a region of its own, keeping the high guard. */
        m_region *t = m_new_region(m);
        if (!t)
            abort(); /* callers make room first */
        t->base = r->base + hi * m->page;
        t->npages = r->npages - hi;
        t->flags = r->flags & ~VMM_FLAG_LOW_GUARD;
        t->mdlmap = r->mdlmap;
        memcpy(t->pg, &r->pg[hi], t->npages * sizeof t->pg[0]);
        r->npages = lo;
        r->flags &= ~VMM_FLAG_HIGH_GUARD;
    } else if (lo == 0) {
        memmove(r->pg, &r->pg[hi], (r->npages - hi) * sizeof r->pg[0]);
        r->base += hi * m->page;
        r->npages -= hi;
        r->flags &= ~VMM_FLAG_LOW_GUARD;
    } else {
        r->npages = lo;
        r->flags &= ~VMM_FLAG_HIGH_GUARD;
    }
    if (r->used)
        for (uint32_t p = r->npages; p < M_MAX_PAGES; p++)
            memset(&r->pg[p], 0, sizeof r->pg[p]);
    m_gc_bufs(m);
}

void m_totals_of(const model *m, m_totals *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < M_MAX_REGIONS; i++) {
        const m_region *r = &m->reg[i];
        if (!r->used)
            continue;
        t->regions++;
        t->reserved += r->npages * m->page;
        for (uint32_t p = 0; p < r->npages; p++) {
            uint8_t s = r->pg[p].state;
            t->committed += s != M_RESERVED ? m->page : 0;
            t->lazy += s == M_LAZY ? m->page : 0;
            t->locked += s == M_FULL ? m->page : 0;
        }
    }
}

void m_reset(model *m)
{
    for (int i = 0; i < M_MAX_REGIONS; i++)
        if (m->reg[i].used)
            for (uint32_t p = 0; p < m->reg[i].npages; p++)
                m_page_clear(m, &m->reg[i].pg[p]);
    for (int i = 0; i < M_MAX_BUFS; i++)
        if (m->buf[i].used)
            for (uint32_t p = 0; p < m->buf[i].npages; p++)
                free(m->buf[i].data[p]);
    m_init(m, m->page, m->arena, m->arena_pages);
}
