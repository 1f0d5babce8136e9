// (C) Datadog, Inc. 2026-present
// All rights reserved
// Licensed under a 3-clause BSD style license (see LICENSE)
//
// OpenTelemetry thread context (OTEP 4947), included by sampler.c under #if THREAD_CTX.
//
// User space (runtimes/otel_thread_tls.py) puts one tc_proc_t per process that exports the TLS
// variable `otel_thread_ctx_v1` into `tc_procs` (keyed by tgid): for each module (at most
// TC_MODULES) how to find the variable from the thread pointer (fs_base):
//   TC_STATIC  static TLS (local-exec, initial-exec, TLSDESC resolved to static TLS):
//              address = fs_base + offset (offset negative on x86-64)
//   TC_DTV     dynamic TLS (general-dynamic, TLSDESC of a module in dynamic TLS, local-dynamic):
//              dtv = *(fs_base + dtv_offset); block = *(dtv + 16 * module_id); address = block + offset
// The variable holds a pointer to the thread's record (NULL: no context). The record is copied
// (28-byte header, then attrs-data; at most TC_RECORD_MAX bytes) only when `valid` == 1 and the
// trace id is not zero; `valid` is read again after the copy (the thread was writing it: torn,
// counted). Records are content-addressed in tc_records{gen & 1} under a 64-bit hash of their
// bytes and tgid; the sample refers to its record by that id (key_t.tctx, copy_t.tctx), so that
// the same stack in two spans is two samples and identical records are stored once.
// Counters: per-CPU `tc_stats` (indices TC_ST_*, names in receiver/sampler.py TC_STATS).

#define TC_MODULES 4
#define TC_RECORD_MAX 640
#define TC_HEADER 28
#define TC_STATIC 1
#define TC_DTV 2

#define TC_ST_LOOKUPS 0       // samples of a thread of a registered process
#define TC_ST_READS 1         // records copied (valid, trace id set): the sample is linked
#define TC_ST_NO_CONTEXT 2    // pointer NULL or trace id zero: the thread is in no span
#define TC_ST_NOT_VALID 3     // valid != 1 before the copy: being written
#define TC_ST_TORN 4          // valid changed during the copy
#define TC_ST_READ_ERROR 5    // fs_base, the DTV, the variable or the record could not be read
#define TC_ST_OVERSIZED 6     // attrs-data-size past TC_RECORD_MAX: attributes cut
#define TC_ST_MAP_FULL 7      // tc_records full: the sample is not linked
#define TC_N_STATS 8

struct tc_module_t {
    s64 offset;      // TC_STATIC: from fs_base; TC_DTV: in the module's TLS block
    u64 module_id;   // TC_DTV: index in the DTV
    u32 model;       // TC_STATIC | TC_DTV; 0: unused slot
    u32 pad;
};

struct tc_proc_t {
    u32 n;           // modules in use
    u32 dtv_offset;  // offset of the DTV pointer from the thread pointer (glibc x86-64: 8)
    struct tc_module_t m[TC_MODULES];
};

struct tc_record_t {
    u32 tgid;
    u32 len;         // bytes of data in use
    u8 data[TC_RECORD_MAX];
};

BPF_HASH(tc_procs, u32, struct tc_proc_t, TC_PROCS);
BPF_PERCPU_ARRAY(tc_stats, u64, TC_N_STATS);
BPF_PERCPU_ARRAY(tc_scratch, struct tc_record_t, 1);
BPF_F_TABLE("hash", u64, struct tc_record_t, tc_records0, TC_RECORDS, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct tc_record_t, tc_records1, TC_RECORDS, BPF_F_NO_PREALLOC);

static __always_inline void tc_stat(u32 idx) {
    u64 *v = tc_stats.lookup(&idx);
    if (v)
        (*v)++;
}

static __always_inline u64 tc_mix(u64 h, u64 v) {
    h ^= v;
    h *= 0x100000001b3ULL;
    return h ^ (h >> 29);
}

// The address of the record the thread's otel_thread_ctx_v1 points to in module i, 0 for none.
static __always_inline u64 tc_pointer(struct tc_proc_t *p, u32 i, u64 fs, int *err) {
    struct tc_module_t *m = &p->m[i & (TC_MODULES - 1)];
    u64 addr = 0, ptr = 0;
    if (m->model == TC_STATIC) {
        addr = fs + (u64)m->offset;
    } else if (m->model == TC_DTV) {
        u64 dtv = 0, block = 0;
        if (bpf_probe_read_user(&dtv, sizeof(dtv), (void *)(fs + p->dtv_offset)) != 0 || !dtv) {
            *err = 1;
            return 0;
        }
        // glibc: dtv[-1] holds the number of slots (a thread's DTV grows only when it uses a
        // module loaded after it was made: a larger module id is not this thread's)
        u64 slots = 0;
        if (bpf_probe_read_user(&slots, sizeof(slots), (void *)(dtv - 16)) != 0) {
            *err = 1;
            return 0;
        }
        if (m->module_id > slots)
            return 0;
        if (bpf_probe_read_user(&block, sizeof(block), (void *)(dtv + 16 * m->module_id)) != 0) {
            *err = 1;
            return 0;
        }
        if (!block || block == (u64)-1)
            return 0;  // not allocated for this thread: it never touched the module's TLS
        addr = block + (u64)m->offset;
    } else {
        return 0;
    }
    if (bpf_probe_read_user(&ptr, sizeof(ptr), (void *)addr) != 0) {
        *err = 1;
        return 0;
    }
    return ptr;
}

// The id of the sampled thread's record in tc_records{gen & 1}, 0 for none.
static __always_inline u64 thread_ctx_record(u32 tgid, u32 gen) {
    struct tc_proc_t *p = tc_procs.lookup(&tgid);
    if (!p)
        return 0;
    tc_stat(TC_ST_LOOKUPS);
    u64 fs = 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    bpf_probe_read_kernel(&fs, sizeof(fs), (void *)((u64)task + TASK_FSBASE_OFF));
    if (!fs) {
        tc_stat(TC_ST_READ_ERROR);
        return 0;
    }
    u64 rec = 0;
    int err = 0;
#pragma unroll
    for (u32 i = 0; i < TC_MODULES; i++) {
        if (i >= p->n)
            break;
        rec = tc_pointer(p, i, fs, &err);
        if (rec)
            break;
    }
    if (!rec) {
        tc_stat(err ? TC_ST_READ_ERROR : TC_ST_NO_CONTEXT);
        return 0;
    }
    u32 zero = 0;
    struct tc_record_t *r = tc_scratch.lookup(&zero);
    if (!r)
        return 0;
    if (bpf_probe_read_user(r->data, TC_HEADER, (void *)rec) != 0) {
        tc_stat(TC_ST_READ_ERROR);
        return 0;
    }
    u64 t0 = *(u64 *)&r->data[0], t1 = *(u64 *)&r->data[8];
    if (r->data[24] != 1) {
        tc_stat(TC_ST_NOT_VALID);
        return 0;
    }
    if (!t0 && !t1) {
        tc_stat(TC_ST_NO_CONTEXT);
        return 0;
    }
    u32 size = *(u16 *)&r->data[26];
    if (size > TC_RECORD_MAX - TC_HEADER) {
        tc_stat(TC_ST_OVERSIZED);
        size = TC_RECORD_MAX - TC_HEADER;
    }
    if (size > 0) {
        size &= 1023;
        if (size > TC_RECORD_MAX - TC_HEADER)
            size = TC_RECORD_MAX - TC_HEADER;
        if (bpf_probe_read_user(r->data + TC_HEADER, size, (void *)(rec + TC_HEADER)) != 0) {
            tc_stat(TC_ST_READ_ERROR);
            return 0;
        }
    }
    // the copy is good only if the thread did not start rewriting the record meanwhile
    u8 valid = 0;
    u64 again = 0;
    if (bpf_probe_read_user(&valid, 1, (void *)(rec + 24)) != 0 ||
        bpf_probe_read_user(&again, sizeof(again), (void *)rec) != 0 || valid != 1 || again != t0) {
        tc_stat(TC_ST_TORN);
        return 0;
    }
    *(u16 *)&r->data[26] = (u16)size;  // an oversized record keeps the attributes that fit
    u32 len = TC_HEADER + size;
    r->len = len;
    r->tgid = tgid;
    // the hash covers exactly the record: the bytes of the last word past len are masked
    u64 h = tc_mix(0xcbf29ce484222325ULL, ((u64)tgid << 32) | len);
    for (u32 w = 0; w < TC_RECORD_MAX / 8; w++) {
        u32 o = w * 8;
        if (o >= len || o + 8 > TC_RECORD_MAX)
            break;
        u64 v = *(u64 *)&r->data[o];
        u32 left = len - o;
        if (left < 8)
            v &= (1ULL << (left * 8)) - 1;
        h = tc_mix(h, v);
    }
    if (h == 0)
        h = 1;
    int ret = 0;
    if (gen & 1) {
        if (!tc_records1.lookup(&h))
            ret = tc_records1.update(&h, r);
    } else {
        if (!tc_records0.lookup(&h))
            ret = tc_records0.update(&h, r);
    }
    if (ret != 0) {
        tc_stat(TC_ST_MAP_FULL);
        return 0;
    }
    tc_stat(TC_ST_READS);
    return h;
}
