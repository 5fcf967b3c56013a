/* SPDX-License-Identifier: MIT */
/* src/entity/entity_wire.h — the messages between EntityInitFromSegEx/EntityRun and the stub process, over one kosvmm channel. */
#ifndef KVMM_ENTITY_WIRE_H
#define KVMM_ENTITY_WIRE_H

#include <coresrv/vmm/vmm_types.h>
#include <stdint.h>

/*
 * The stub finds its end of the channel at this descriptor (the spawning child puts it there just
 * before exec). Conversation:
 *   host -> stub  SEG   (with the segment's MDL handle, no transfer right) once per segment
 *   host -> stub  ARG / ENV, one string each
 *   host -> stub  LOAD  counts, entry, name, AT_PHDR data: the stub checks the counts and answers
 *   stub -> host  READY rc (rcOk, or the first failure and the segment index; the stub then exits)
 *   host -> stub  GO    (EntityRun; or the host closes the channel: the stub exits quietly)
 *   stub -> host  STARTED rc: the stack is built, the channel closes, the program runs.
 * The stub maps each SEG as it arrives, so a collision is reported for the first segment that
 * collides, before the rest are sent.
 */
#define KVMM_ENTITY_STUB_FD 3
#define KVMM_ENTITY_WIRE_MAGIC 0x6b454e54u /* "kENT" */

enum kvmm_entity_msg {
    KVMM_EW_SEG = 1,
    KVMM_EW_ARG,
    KVMM_EW_ENV,
    KVMM_EW_LOAD,
    KVMM_EW_READY,
    KVMM_EW_GO,
    KVMM_EW_STARTED,
};

/* The stub's exit status when exec of it failed: this base plus errno (kept below 256). */
#define KVMM_ENTITY_EXEC_FAILED 128

struct kvmm_ew_hdr {
    uint32_t magic;
    uint32_t kind;
};

struct kvmm_ew_seg {
    struct kvmm_ew_hdr h;
    VmSeg seg;
};

struct kvmm_ew_str {
    struct kvmm_ew_hdr h;
    char s[4000 + 1]; /* KOSVMM_ENTITY_STRING_MAX + NUL; only the used part is sent */
};

struct kvmm_ew_load {
    struct kvmm_ew_hdr h;
    uint64_t entry;
    uint64_t phdr; /* AT_PHDR, 0: not known */
    uint32_t phnum;
    uint32_t nsegs, nargs, nenvs;
    char name[16]; /* the Linux thread name (15 bytes and NUL) */
};

struct kvmm_ew_status {
    struct kvmm_ew_hdr h;
    uint32_t rc;    /* a Retcode */
    uint32_t index; /* READY: the segment that failed */
};

#endif
