/* SPDX-License-Identifier: MIT */
/* tests/fuzz/model.h — reference model of kosvmm's pages, regions, MDL buffers and handles for the model-based fuzzer. */
#ifndef KOSVMM_FUZZ_MODEL_H
#define KOSVMM_FUZZ_MODEL_H

#include <coresrv/vmm/vmm_api.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The model is deliberately small and written from the header contract (vmm_api.h,
 * handle_api.h), not from the library: a few regions of at most M_MAX_PAGES pages, a few MDL
 * buffers and handles. Expected contents are kept byte for byte (a shadow page per page that was
 * ever written; NULL means all zero), so partial writes and CreateFromBuf copies need no
 * special pattern.
 */
#define M_MAX_PAGES    64   /* usable pages of one region */
#define M_MAX_REGIONS  28   /* model regions (splits included) */
#define M_MAX_BUFS     48   /* MDL buffers alive (held by a handle or a mapping) */
#define M_MAX_BUF_PAGES 64  /* pages of one MDL buffer */
#define M_MAX_HANDLES  32   /* live handles */
#define M_MAX_STALE    32   /* closed handle values kept to pass them again */
#define M_MAX_WORDS    512  /* revocation words (one per handle ever issued in a run) */
#define M_MAX_DEPTH    8    /* KVMM_MDL_MAX_REVOKE: ancestors a handle may have */

enum m_state { M_RESERVED, M_LAZY, M_FULL, M_MDL };

typedef struct m_page {
    uint8_t state;     /* enum m_state */
    uint8_t prot;      /* VMM_FLAG_READ|WRITE|EXECUTE subset */
    uint8_t nonres;    /* the model knows the page is not resident (mincore 0) */
    int16_t buf;       /* M_MDL: buffer index */
    uint16_t bpage;    /* M_MDL: page in the buffer */
    uint8_t *data;     /* non-MDL contents; NULL = zeros */
} m_page;

typedef struct m_region {
    int used;
    uintptr_t base;    /* first usable byte */
    uint32_t npages;
    int flags;         /* what KnVmQuery reports as regionFlags */
    int mdlmap;        /* made by KnPmmMdlMap (outside the arena when the kernel chose) */
    m_page pg[M_MAX_PAGES];
} m_region;

typedef struct m_buf {
    int used;
    uint32_t npages;
    uint8_t *data[M_MAX_BUF_PAGES]; /* NULL = zeros */
} m_buf;

typedef struct m_handle {
    int used;
    Handle h;
    int buf;
    uint32_t off, len;           /* window, pages */
    uint32_t rights;             /* KOSVMM_RIGHT_* */
    uint32_t own;                /* revocation word of this handle */
    uint32_t nanc;
    uint32_t anc[M_MAX_DEPTH];   /* words of its origins */
} m_handle;

typedef struct model {
    size_t page;
    uintptr_t arena;             /* window of arena_pages pages for fixed-address allocations */
    uint32_t arena_pages;
    m_region reg[M_MAX_REGIONS];
    m_buf buf[M_MAX_BUFS];
    m_handle hd[M_MAX_HANDLES];
    Handle stale[M_MAX_STALE];
    uint32_t nstale;
    uint8_t word[M_MAX_WORDS];   /* 1 = revoked */
    uint32_t nwords;
} model;

/* Guard page addresses of a region, 0 when it has none. */
uintptr_t m_low_guard(const model *m, const m_region *r);
uintptr_t m_high_guard(const model *m, const m_region *r);

/* The region whose usable pages contain a, or NULL; *idx gets its page index. */
m_region *m_find(model *m, uintptr_t a, uint32_t *idx);
/* The region a guard page at a belongs to, or NULL. */
m_region *m_find_guard(model *m, uintptr_t a);
/* 1 if any byte of [lo, hi) is a usable or guard page of a model region. */
int m_overlaps(model *m, uintptr_t lo, uintptr_t hi);

m_region *m_new_region(model *m);
int m_free_region_slots(const model *m);

/* Contents: NULL-able shadow pages. */
uint8_t *m_page_data(model *m, const m_page *p);          /* current expected contents or NULL */
uint8_t *m_page_data_for_write(model *m, m_page *p);      /* allocates the shadow on demand */
void m_page_clear(model *m, m_page *p);                   /* contents become zero, drops MDL ref */

/* Handles and buffers. */
m_handle *m_handle_of(model *m, Handle h);                /* live handle or NULL */
int m_handle_revoked(const model *m, const m_handle *h);  /* self or an origin revoked */
int m_handle_self_revoked(const model *m, const m_handle *h);
int m_new_buf(model *m, uint32_t npages);                 /* index or -1 */
m_handle *m_new_handle(model *m);                         /* slot or NULL */
void m_close_handle(model *m, m_handle *h);
void m_gc_bufs(model *m);                                 /* frees buffers nothing refers to */
int m_live_handles(const model *m);

/* Region pieces. */
void m_unmap(model *m, m_region *r, uint32_t lo, uint32_t hi);

/* Statistics the model predicts (bytes). */
typedef struct m_totals {
    uint64_t regions, reserved, committed, lazy, locked;
} m_totals;
void m_totals_of(const model *m, m_totals *t);

void m_init(model *m, size_t page, uintptr_t arena, uint32_t arena_pages);
void m_reset(model *m);                                   /* frees every shadow page */

#endif
