// (C) Datadog, Inc. 2026-present
// All rights reserved
// Licensed under a 3-clause BSD style license (see LICENSE)
//
// Native unwinding in the kernel (UNWIND_KERNEL, `auto` with receiver.kernel_unwind_memory_mb > 0;
// see receiver/kernel_unwind.py and unwind/stack_deltas.py). Included by sampler.c after the
// UNWIND_COPY part, whose copy_user_stack() is the fallback.
//
// Tables (written by user space, read here):
//   ku_rules   16-byte rules shared by every binary: CFA = rsp|rbp + off (or PLT / signal / *(rbp+off)),
//              where the return address and rbp were saved (unwind/cfi.py's rule tuple)
//   ku_rows    8-byte rows (pc offset from the table's base, rule index), sorted per table
//   ku_tables  per binary: base address (ELF vaddr of its first row), first row, number of rows,
//              generation (unique per load of a table: an id reused after an eviction gets a new one)
//   ku_cache   per CPU: the last rows found, direct-mapped by (generation, pc offset) and tagged
//              with both, in front of the rows' binary search (a stale generation never matches)
//   ku_procs   per process (tgid): its executable mappings sorted by start, each with its table
//              and load bias; KU_TABLE_NONE = no CFI (JIT, anonymous code: frame pointers),
//              KU_TABLE_PENDING = not loaded yet (the sample goes through the stack copy)
// The walk is unwind/unwinder.py's unwind_ex step for step, reading the live user stack instead
// of a copy: KU_STEPS steps per program run, then a tail call (ku_progs) into ku_walk again, up to
// KU_MAX_FRAMES frames. The stack goes content-addressed into ku_stacks{gen & 1} and the sample is
// counted in counts{gen & 1} under the usual key, with key.ustack_hash = its id.

#define KU_MAX_FRAMES 127
#define KU_MAX_STEPS 254  // unwind_ex: max_frames * 2 (signal frames take a step without a frame)
#ifndef KU_STEPS
#define KU_STEPS 8
#endif
#define KU_MAPS 256
#define KU_TABLE_NONE 0xffffffff
#define KU_TABLE_PENDING 0xfffffffe

#define KU_CFA_NONE 0
#define KU_CFA_SP 1
#define KU_CFA_BP 2
#define KU_CFA_DEREF_BP 3
#define KU_CFA_SIGNAL 4
#define KU_CFA_PLT 16
#define KU_RA_UNDEFINED 0x7fffffff
#define KU_RA_UNSUPPORTED 0x7ffffffe
#define KU_BP_SAME 0
#define KU_BP_AT_CFA 1
#define KU_BP_AT_BP 2
#define KU_BP_PAIRED 0xff  // walk-local: rbp already read with the return address
#define KU_USER_MAX 0x0000800000000000ULL

#define KU_RUNNING 0
#define KU_COMPLETE 1
#define KU_TRUNCATED 2
#define KU_FAILED 3
#define KU_FALLBACK 4

// ku_stats indices: keep in sync with KU_STATS in receiver/kernel_unwind.py
#define KU_ST_WALKS 0
#define KU_ST_COMPLETE 1
#define KU_ST_TRUNCATED 2
#define KU_ST_FAILED 3
#define KU_ST_FB_NO_PROCESS 4
#define KU_ST_FB_TABLE_PENDING 5
#define KU_ST_FRAMES 6
#define KU_ST_FP_FRAMES 7
#define KU_ST_SIGNAL_FRAMES 8
#define KU_ST_STACKS_FULL 9
#define KU_ST_TAIL_CALL_FAILED 10
#define KU_ST_COPY_LOST 11
#define KU_ST_READ_ERROR 12
#define KU_ST_UNKNOWN_MAPPING 13
#define KU_ST_TAIL_CALLS 14
#define KU_ST_RULE_SEARCHES 15  // ku_cache misses: binary searches of a table's rows
#define KU_ST_WALK_NS 16  // KU_TIMING only: ns from ku_start to the end of ku_finish
#define KU_N_STATS 17
#ifndef KU_TIMING
#define KU_TIMING 0  // benchmarks: time every walk (two bpf_ktime_get_ns calls per sample)
#endif

#ifndef KU_SEARCH_STEPS
#define KU_SEARCH_STEPS 21  // binary search of a table's rows: tables hold < 2^21 rows (kernel_unwind.py)
#endif

#ifndef KU_CACHE_BITS
#define KU_CACHE_BITS 10
#endif
#define KU_CACHE (1 << KU_CACHE_BITS)

struct ku_rule_t {
    u8 cfa_kind;
    u8 bp_kind;
    u16 pad;
    s32 cfa_off;
    s32 ra_off;
    s32 bp_off;
};

struct ku_row_t {
    u32 pc;    // ELF vaddr - table base
    u32 rule;  // index in ku_rules
};

struct ku_table_t {
    u64 base;
    u32 first;
    u32 n;
    u32 gen;  // != 0 while loaded
    u32 pad;
};

struct ku_cache_ent_t {
    u32 gen;  // ku_tables[].gen of the table searched (0: empty)
    u32 off;  // pc - table base
    u32 lo;   // the search's answer: 1 + index in ku_rows of the row at or below `off`
    u32 pad;
};

struct ku_map_t {
    u64 start;
    u64 end;
    u64 bias;   // ELF vaddr = address - bias
    u32 table;  // index in ku_tables, KU_TABLE_NONE or KU_TABLE_PENDING
    u32 pad;
};

struct ku_proc_t {
    u32 n;
    u32 pad;
    struct ku_map_t maps[KU_MAPS];
};

struct ku_stack_t {
    u32 n;
    u32 partial;
    u64 ips[KU_MAX_FRAMES + 1];
};

struct ku_state_t {
    struct key_t key;
    u64 ip;
    u64 sp;
    u64 bp;
    u64 base;   // sp of the sample: unwind_ex's stack_base_sp
    u64 hash;
    u32 gen;
    u32 exact;  // the pc is not a return address (leaf, or interrupted by a signal)
    u32 steps;
    u32 result;
    // binary searches: bounds kept here, not in registers, so that the verifier sees equal
    // states at each iteration (a value loaded from a map is unknown) and prunes the paths
    u32 lo;
    u32 hi;
    u32 last_map;  // index of the mapping of the previous frame + 1 (0: none): consecutive frames share one
    u32 pad2;
    u64 t0;        // KU_TIMING: bpf_ktime_get_ns() at ku_start
    struct ku_stack_t st;
};

BPF_ARRAY(ku_rules, struct ku_rule_t, KU_RULES);
BPF_ARRAY(ku_rows, struct ku_row_t, KU_ROWS);
BPF_ARRAY(ku_tables, struct ku_table_t, KU_TABLES);
BPF_F_TABLE("hash", u32, struct ku_proc_t, ku_procs, KU_PROCS, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(ku_state, struct ku_state_t, 1);
BPF_PERCPU_ARRAY(ku_cache, struct ku_cache_ent_t, KU_CACHE);
BPF_PERCPU_ARRAY(ku_stats, u64, KU_N_STATS);
BPF_PROG_ARRAY(ku_progs, 1);
BPF_F_TABLE("hash", u64, struct ku_stack_t, ku_stacks0, KU_STACKS, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct ku_stack_t, ku_stacks1, KU_STACKS, BPF_F_NO_PREALLOC);
// processes with a pc in none of their known mappings (a library loaded after their maps were
// read): user space reads their maps again
BPF_TABLE("lru_hash", u32, u8, ku_refresh, 1024);

static __always_inline void ku_stat(u32 idx, u64 n) {
    u64 *v = ku_stats.lookup(&idx);
    if (v)
        *v += n;  // per-CPU slot
}

static __always_inline u64 ku_mix(u64 h, u64 v) {
    h ^= v;
    h *= 0x100000001b3ULL;
    return h ^ (h >> 29);
}

// The rule of ELF address `addr` in table `table`, or NULL (no CFI there: frame pointers): the last
// row at or below it, found by a binary search of the table's rows, or taken from this CPU's ku_cache
// when its slot holds (the table's generation, this offset). A hit sets the search's bounds to the
// cached answer (lo = hi: no iteration) instead of taking a path of its own, so that the verifier
// sees one state after it (the bounds are in the map value, unknown to it). The entry is looked up
// here (an inlined per-CPU array lookup), not kept in a register across the walk: a pointer live
// through ku_step made ku_walk's verification twice as long.
static __always_inline struct ku_rule_t *ku_lookup(struct ku_state_t *w, u32 table, u64 addr) {
    struct ku_table_t *t = ku_tables.lookup(&table);
    if (!t || t->n == 0 || addr < t->base)
        return NULL;
    u64 off64 = addr - t->base;
    u32 off = off64 > 0xffffffffULL ? 0xffffffff : (u32)off64;
    u32 first = t->first;
    u32 tgen = t->gen;
    u32 slot = ((off ^ (tgen << 16)) * 0x9e3779b1U) >> (32 - KU_CACHE_BITS);
    struct ku_cache_ent_t *ce = ku_cache.lookup(&slot);
    if (!ce)
        return NULL;
    w->lo = first;
    w->hi = first + t->n;
    if (ce->gen == tgen && ce->off == off && tgen != 0) {
        u32 lo = ce->lo;
        w->lo = lo;
        w->hi = lo;
    } else {
        ku_stat(KU_ST_RULE_SEARCHES, 1);
    }
#pragma nounroll
    for (int i = 0; i < KU_SEARCH_STEPS; i++) {
        u32 lo = w->lo, hi = w->hi;
        if (lo >= hi)
            break;
        u32 mid = lo + (hi - lo) / 2;
        struct ku_row_t *r = ku_rows.lookup(&mid);
        if (!r)
            return NULL;
        if (r->pc <= off)
            w->lo = mid + 1;
        else
            w->hi = mid;
    }
    u32 lo = w->lo;
    ce->gen = tgen;
    ce->off = off;
    ce->lo = lo;
    if (lo <= first)
        return NULL;
    u32 idx = lo - 1;
    struct ku_row_t *r = ku_rows.lookup(&idx);
    if (!r)
        return NULL;
    u32 ri = r->rule;
    struct ku_rule_t *rule = ku_rules.lookup(&ri);
    if (!rule || rule->cfa_kind == KU_CFA_NONE)
        return NULL;
    return rule;
}

static __always_inline int ku_read(u64 *dst, u64 addr) {
    return bpf_probe_read_user(dst, sizeof(*dst), (void *)addr);
}

static __always_inline int ku_push(struct ku_state_t *w, u64 ip) {
    u32 n = w->st.n;
    w->st.ips[n & KU_MAX_FRAMES] = ip;
    w->hash = ku_mix(w->hash, ip);
    w->st.n = n + 1;
    return n + 1 >= KU_MAX_FRAMES;
}

// One step of unwind_ex. Returns KU_RUNNING or the walk's result.
static __always_inline u32 ku_step(struct ku_state_t *w, struct ku_proc_t *p) {
    u64 ip = w->ip, sp = w->sp, bp = w->bp, base = w->base;
    u64 pc = w->exact ? ip : ip - 1;
    u32 n = p->n;
    w->lo = 0;
    w->hi = n > KU_MAPS ? KU_MAPS : n;
    u32 last = w->last_map;
    if (last > 0 && last <= w->hi) {
        struct ku_map_t *lm = &p->maps[(last - 1) & (KU_MAPS - 1)];
        if (lm->start <= pc && pc < lm->end)
            w->lo = w->hi = last;  // ranges do not overlap: that mapping is the search's answer
    }
#pragma nounroll
    for (int i = 0; i < 9; i++) {
        u32 lo = w->lo, hi = w->hi;
        if (lo >= hi)
            break;
        u32 mid = lo + (hi - lo) / 2;
        if (p->maps[mid & (KU_MAPS - 1)].start <= pc)
            w->lo = mid + 1;
        else
            w->hi = mid;
    }
    u32 lo = w->lo;
    w->last_map = lo;
    struct ku_rule_t *rule = NULL;
    if (lo > 0 && pc < p->maps[(lo - 1) & (KU_MAPS - 1)].end) {
        struct ku_map_t *m = &p->maps[(lo - 1) & (KU_MAPS - 1)];
        u32 table = m->table;
        if (table == KU_TABLE_PENDING)
            return KU_FALLBACK;
        if (table != KU_TABLE_NONE)
            rule = ku_lookup(w, table, pc - m->bias);
    } else {
        u32 tgid = w->key.tgid;
        u8 one = 1;
        if (!ku_refresh.lookup(&tgid))
            ku_refresh.update(&tgid, &one);
        ku_stat(KU_ST_UNKNOWN_MAPPING, 1);
    }
    u64 ra = 0, nbp = 0, nsp = 0;
    if (!rule) {
        // frame-pointer fallback, this frame only
        if (bp == 0)
            return KU_COMPLETE;
        if (bp < sp || bp < base || (bp & 7))
            return KU_FAILED;
        // saved rbp and return address side by side: one read (a helper call per word was the
        // walk's main cost per frame)
        u64 pair[2] = {};
        if (bpf_probe_read_user(pair, sizeof(pair), (void *)bp)) {
            ku_stat(KU_ST_READ_ERROR, 1);
            return KU_FAILED;
        }
        nbp = pair[0];
        ra = pair[1];
        nsp = bp + 16;
        ku_stat(KU_ST_FP_FRAMES, 1);
    } else {
        u32 kind = rule->cfa_kind;
        u64 cfa = 0;
        if (kind == KU_CFA_SP) {
            cfa = sp + (s64)rule->cfa_off;
        } else if (kind == KU_CFA_BP) {
            cfa = bp + (s64)rule->cfa_off;
        } else if (kind >= KU_CFA_PLT) {
            cfa = sp + (s64)rule->cfa_off + ((ip & 15) >= (kind - KU_CFA_PLT) ? 8 : 0);
        } else if (kind == KU_CFA_SIGNAL) {
            // rt_sigframe: sp points at the ucontext; uc_mcontext at +40: rbp, rsp, rip at +40+8*{10,15,16}
            u64 nip = 0;
            if (sp < base)
                return KU_FAILED;
            if (ku_read(&nip, sp + 40 + 8 * 16) || ku_read(&nsp, sp + 40 + 8 * 15) || ku_read(&nbp, sp + 40 + 8 * 10)) {
                ku_stat(KU_ST_READ_ERROR, 1);
                return KU_FAILED;
            }
            if (!nip || nip >= KU_USER_MAX)
                return KU_FAILED;
            ku_stat(KU_ST_SIGNAL_FRAMES, 1);
            w->ip = nip;
            w->sp = nsp;
            w->bp = nbp;
            w->exact = 1;
            if (ku_push(w, nip))
                return KU_TRUNCATED;
            return KU_RUNNING;
        } else if (kind == KU_CFA_DEREF_BP) {
            u64 a = bp + (s64)rule->cfa_off;
            if (a < base)
                return KU_FAILED;
            if (ku_read(&cfa, a)) {
                ku_stat(KU_ST_READ_ERROR, 1);
                return KU_FAILED;
            }
        } else {
            return KU_FAILED;
        }
        s32 ra_off = rule->ra_off;
        if (ra_off == KU_RA_UNDEFINED)
            return KU_COMPLETE;
        if (ra_off == KU_RA_UNSUPPORTED)
            return KU_FAILED;
        u64 a = cfa + (s64)ra_off;
        if (a < base || a < sp)
            return KU_FAILED;
        u32 bk = rule->bp_kind;
        if (bk == KU_BP_AT_CFA && rule->bp_off == ra_off - 8 && a - 8 >= base) {
            // the usual frame (push rbp after the call): rbp saved just below the return address,
            // both read at once; same checks and results as the two reads below
            u64 pair[2] = {};
            if (bpf_probe_read_user(pair, sizeof(pair), (void *)(a - 8))) {
                ku_stat(KU_ST_READ_ERROR, 1);
                return KU_FAILED;
            }
            nbp = pair[0];
            ra = pair[1];
            bk = KU_BP_PAIRED;
        } else if (ku_read(&ra, a)) {
            ku_stat(KU_ST_READ_ERROR, 1);
            return KU_FAILED;
        }
        if (bk == KU_BP_PAIRED) {
            // read with the return address
        } else if (bk == KU_BP_SAME) {
            nbp = bp;
        } else if (bk == KU_BP_AT_CFA || bk == KU_BP_AT_BP) {
            a = (bk == KU_BP_AT_CFA ? cfa : bp) + (s64)rule->bp_off;
            if (a < base)
                return KU_FAILED;
            if (ku_read(&nbp, a)) {
                ku_stat(KU_ST_READ_ERROR, 1);
                return KU_FAILED;
            }
        } else {
            nbp = 0;
        }
        nsp = cfa;
    }
    if (ra == 0)
        return KU_COMPLETE;
    if (nsp <= sp || ra >= KU_USER_MAX)
        return KU_FAILED;
    w->ip = ra;
    w->sp = nsp;
    w->bp = nbp;
    w->exact = 0;
    if (ku_push(w, ra))
        return KU_TRUNCATED;
    return KU_RUNNING;
}

// The walk is over: store its stack, count the sample in the kernel.
static __always_inline void ku_finish(struct bpf_perf_event_data *ctx, struct ku_state_t *w, u32 result) {
    u32 n = w->st.n;
    w->st.partial = result != KU_COMPLETE;
    ku_stat(result == KU_COMPLETE ? KU_ST_COMPLETE : (result == KU_TRUNCATED ? KU_ST_TRUNCATED : KU_ST_FAILED), 1);
    ku_stat(KU_ST_FRAMES, n);
    u64 h = ku_mix(w->hash, ((u64)n << 1) | w->st.partial);
    if (h == 0)
        h = 1;
    u32 gen = w->gen;
    struct key_t key = w->key;
    key.ustack = -E_FAULT;  // no stack-map id: the stack is ku_stacks{gen & 1}[ustack_hash]
    key.ustack_hash = h;
    int ret = 0;
    u64 one = 1;
    u64 *c;
    int err;
    if (gen & 1) {
        if (!ku_stacks1.lookup(&h))
            ret = ku_stacks1.update(&h, &w->st);
    } else {
        if (!ku_stacks0.lookup(&h))
            ret = ku_stacks0.update(&h, &w->st);
    }
    if (ret != 0) {
        ku_stat(KU_ST_STACKS_FULL, 1);
        key.ustack_hash = 0;
        key.ustack = -E_NOMEM;  // counted as a sample whose user stack was lost
    }
#if KU_VERIFY
    // tests only: the same sample also goes to user space as a stack copy that carries this
    // stack's id (in its pystack field), so both unwinders' results can be compared frame by frame
    {
        struct key_t vk = key;
        vk.pystack = h;
        copy_user_stack(ctx, &vk, gen);
    }
#endif
    if (gen & 1) {
        key.kstack = stacks1.get_stackid(ctx, 0);
        c = counts1.lookup(&key);
        if (c) {
            __sync_fetch_and_add(c, 1);
        } else {
            err = counts1.insert(&key, &one);
            if (err == -E_EXIST) {
                c = counts1.lookup(&key);
                if (c)
                    __sync_fetch_and_add(c, 1);
            } else if (err) {
                stat_inc(ST_COUNTS_FULL);
            }
        }
    } else {
        key.kstack = stacks0.get_stackid(ctx, 0);
        c = counts0.lookup(&key);
        if (c) {
            __sync_fetch_and_add(c, 1);
        } else {
            err = counts0.insert(&key, &one);
            if (err == -E_EXIST) {
                c = counts0.lookup(&key);
                if (c)
                    __sync_fetch_and_add(c, 1);
            } else if (err) {
                stat_inc(ST_COUNTS_FULL);
            }
        }
    }
    stack_error(key.kstack, ST_KERN_EEXIST);
#if KU_TIMING
    ku_stat(KU_ST_WALK_NS, bpf_ktime_get_ns() - w->t0);
#endif
}

// A table is missing mid-walk (or the process's entry went away): the sample goes to user space
// as a stack copy, as in `dwarf`; if the ring is full, what was unwound so far is kept as partial.
static __always_inline void ku_fallback(struct bpf_perf_event_data *ctx, struct ku_state_t *w) {
    struct key_t key = w->key;
    ku_stat(KU_ST_FB_TABLE_PENDING, 1);
    if (copy_user_stack(ctx, &key, w->gen))
        return;
    ku_stat(KU_ST_COPY_LOST, 1);
    ku_finish(ctx, w, KU_FAILED);
}

// Tail-called from on_cpu_sample (and from itself): KU_STEPS steps, then again or finish.
// (The program `ku_walk` itself is in sampler.c: BCC loads programs of the main file only.)
static __always_inline int ku_walk_body(struct bpf_perf_event_data *ctx) {
    u32 zero = 0;
    struct ku_state_t *w = ku_state.lookup(&zero);
    if (!w)
        return 0;
    u32 tgid = w->key.tgid;
    struct ku_proc_t *p = ku_procs.lookup(&tgid);
    if (!p) {
        ku_fallback(ctx, w);
        return 0;
    }
    u32 r = KU_RUNNING;
    for (int i = 0; i < KU_STEPS; i++) {
        if (w->steps >= KU_MAX_STEPS) {
            r = KU_TRUNCATED;
            break;
        }
        w->steps++;
        r = ku_step(w, p);
        if (r != KU_RUNNING)
            break;
    }
    if (r == KU_FALLBACK) {
        ku_fallback(ctx, w);
        return 0;
    }
    if (r == KU_RUNNING) {
        ku_stat(KU_ST_TAIL_CALLS, 1);
        ku_progs.call(ctx, 0);
        r = KU_TRUNCATED;  // the tail-call limit (33): not expected before KU_MAX_STEPS
    }
    ku_finish(ctx, w, r);
    return 0;
}

// From on_cpu_sample: starts the walk (tail call into ku_walk, no return) when the process's
// tables are in; returns when the sample is not for the kernel unwinder (no user context: the
// caller counts its kernel stack; process not loaded yet: the caller sends the stack copy).
static __always_inline void ku_start(struct bpf_perf_event_data *ctx, struct key_t *key, u32 gen) {
    u64 ip = 0, sp = 0, bp = 0;
    if ((ctx->regs.cs & 3) == 3) {
        ip = ctx->regs.ip;
        sp = ctx->regs.sp;
        bp = ctx->regs.bp;
    } else {
        struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
        u64 cs = 0;
        bpf_probe_read_kernel(&cs, sizeof(cs), &regs->cs);
        if ((cs & 3) != 3)
            return;
        bpf_probe_read_kernel(&ip, sizeof(ip), &regs->ip);
        bpf_probe_read_kernel(&sp, sizeof(sp), &regs->sp);
        bpf_probe_read_kernel(&bp, sizeof(bp), &regs->bp);
    }
    if (!sp || !ip)
        return;
    u32 tgid = key->tgid;
    if (!ku_procs.lookup(&tgid)) {
        ku_stat(KU_ST_FB_NO_PROCESS, 1);
        return;
    }
    u32 zero = 0;
    struct ku_state_t *w = ku_state.lookup(&zero);
    if (!w)
        return;
    ku_stat(KU_ST_WALKS, 1);
#if KU_TIMING
    w->t0 = bpf_ktime_get_ns();
#endif
    w->key = *key;
    w->ip = ip;
    w->sp = sp;
    w->bp = bp;
    w->base = sp;
    w->gen = gen;
    w->exact = 1;
    w->steps = 0;
    w->last_map = 0;
    w->st.n = 0;
    w->hash = ku_mix(0xcbf29ce484222325ULL, tgid);
    ku_push(w, ip);
    ku_progs.call(ctx, 0);
    ku_stat(KU_ST_TAIL_CALL_FAILED, 1);  // ku_walk not in ku_progs: the caller copies the stack
}
