// (C) Datadog, Inc. 2026-present
// All rights reserved
// Licensed under a 3-clause BSD style license (see LICENSE)
//
// host_profiler sampler: compiled by BCC at start-up (see receiver/sampler.py).
//
// Parameters come from -D flags set by sampler.py:
//   STACK_STORAGE_SIZE, COUNTS_SIZE          sizes of each CPU stack/counts map (x2: double buffer)
//   SEND_IDLE                                1 = keep pid 0 (idle) samples
//   FILTER_PIDS, PID_FILTER_SIZE             1 = only tgids present in `pid_filter`
//   OFF_CPU, OFF_CPU_THRESHOLD               1 = sched_switch program; threshold is p * 2^32
//   OFF_CPU_STACK_SIZE, OFF_CPU_START_SIZE   off-CPU maps sizes
//   UNWIND_COPY, STACK_COPY_SIZE, COPY_PAGES  1 = copy user regs + stack for user-space unwinding
//   COPY_CPUS, COPY_WAKEUP_EVERY            scratch slots (possible CPUs); records per CPU between wake-ups
//   EVENTS, EVENTS_PAGES                     1 = exec/exit tracepoints and first-sample events; ring
//                                            buffer size in pages (power of 2)
//   EVENTS_WAKEUP_EVERY, SAMPLED_TGIDS       events of a CPU between forced wake-ups; tgids remembered
//   PYTHON, PY_PROCS, PY_STACKS, PY_MAX_FRAMES  1 = walk CPython frame chains (runtimes/python);
//                                            processes, distinct Python stacks per set, frames per walk
//   ST_<NAME>, N_STATS                       indices of the `stats` counters (KERNEL_STATS in sampler.py)
//   UNWIND_KERNEL, KU_*                      1 = unwind user stacks in the kernel (kernel_unwind.h)
//   TASK_FSBASE_OFF                          offsetof(task_struct, thread.fsbase) from the running
//                                            kernel's BTF (the compile headers may be another kernel's)
//   THREAD_CTX, TC_PROCS, TC_RECORDS         1 = read OTel thread contexts (bpf/thread_ctx.h); processes,
//                                            distinct records per set
//
// Double buffering: `active[0]` holds a generation number that user space increments on each
// drain; the programs write into set (gen & 1) of every double-buffered map, and user space reads
// and clears set (old_gen & 1) once in-flight programs are done (see Sampler.drain).

// No kernel header is included beyond what BCC itself puts first (helpers.h): the two that a
// perf-event program usually takes, <uapi/linux/ptrace.h> and <uapi/linux/bpf_perf_event.h>, pull
// in most of the arch headers and cost about 1.3 s of clang CPU at every start. The program (and
// the feature headers beside it: kernel_unwind.h, thread_ctx.h, ...) needs only the context of a
// perf-event program and the x86-64 register frame, declared here with the kernel's names, so
// `ctx->regs.ip`, `struct pt_regs *` and `regs->sp` read as they would with the headers.
// tests/receiver/test_sampler_source.py checks that no #include <...> comes back.
struct pt_regs {  // arch/x86/include/asm/ptrace.h (x86-64): the user registers saved at kernel entry
    unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
    unsigned long ax, cx, dx, si, di, orig_ax;
    unsigned long ip, cs, flags, sp, ss;
};
typedef struct pt_regs bpf_user_pt_regs_t;
struct bpf_perf_event_data {  // include/uapi/linux/bpf_perf_event.h
    bpf_user_pt_regs_t regs;
    u64 sample_period;
    u64 addr;
};

// BCC's front end looks up bpf_probe_read_user/_kernel in /proc/kallsyms at every call of them it
// sees (to fall back to bpf_probe_read on kernels older than 5.5; the ring buffers here need 5.8):
// about 50 ms of CPU per call, a second at every start. The same helpers under other names (the
// same BPF_FUNC ids and the int return of BCC's helpers.h: the same bytecode, which
// tests/receiver/test_sampler_source.py checks) skip that; the headers included below use them too.
static int (*hp_probe_read_user)(void *dst, u32 size, const void *unsafe_ptr) = (void *)BPF_FUNC_probe_read_user;
static int (*hp_probe_read_kernel)(void *dst, u32 size, const void *unsafe_ptr) = (void *)BPF_FUNC_probe_read_kernel;
#define bpf_probe_read_user hp_probe_read_user
#define bpf_probe_read_kernel hp_probe_read_kernel

// Indices of the per-CPU `stats` counters: ST_<NAME> and N_STATS come as -D flags generated from
// KERNEL_STATS in sampler.py (the only list). Feature headers keep their own counters in their own maps.

#define EV_EXEC 1
#define EV_EXIT 2
#define EV_SAMPLED 3

// EFAULT: "no stack here" (user stack of a kernel thread, kernel stack of a sample taken in user
// mode). It is not a loss. The error values are spelled out so no errno header is needed.
#define E_FAULT 14
#define E_EXIST 17
#define E_NOMEM 12

struct key_t {
    u32 tgid;
    u32 tid;
    s32 ustack;  // stack id, or -errno
    s32 kstack;  // stack id, or -errno
    u32 gen;     // off-CPU only: generation of the stack maps the ids belong to; 0 for CPU samples
    u32 pad;
    u64 pystack; // CPU only: id of the Python stack in pystacks{gen & 1}, 0 for none
    u64 tctx;    // CPU only: id of the thread-context record in tc_records{gen & 1}, 0 for none
    char comm[16];
    u64 ustack_hash; // UNWIND_KERNEL: id of the user stack in ku_stacks{gen & 1}, 0 for none
};

struct event_t {
    u32 type;
    u32 tgid;
    u32 pid;
    u32 pad;
    u64 ts;
    char comm[16];
};

BPF_ARRAY(active, u32, 1);
BPF_PERCPU_ARRAY(stats, u64, N_STATS);

BPF_HASH(counts0, struct key_t, u64, COUNTS_SIZE);
BPF_HASH(counts1, struct key_t, u64, COUNTS_SIZE);
BPF_STACK_TRACE(stacks0, STACK_STORAGE_SIZE);
BPF_STACK_TRACE(stacks1, STACK_STORAGE_SIZE);

#if FILTER_PIDS
BPF_HASH(pid_filter, u32, u8, PID_FILTER_SIZE);
#endif

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);
#if EVENTS
// tgids whose first sample (since exec, or since start-up) was announced to user space
BPF_TABLE("lru_hash", u32, u8, sampled_tgids, SAMPLED_TGIDS);
#endif

static __always_inline void stat_inc(u32 idx) {
    u64 *v = stats.lookup(&idx);
    if (v)
        (*v)++;  // per-CPU slot: no atomic needed
}

static __always_inline void stack_error(s32 id, u32 base) {
    if (id >= 0 || id == -E_FAULT)
        return;
    if (id == -E_EXIST)
        stat_inc(base);
    else if (id == -E_NOMEM)
        stat_inc(base + 1);
    else
        stat_inc(base + 2);
}

// Returns 0 when the sample should be dropped (idle or filtered out).
static __always_inline int keep_task(u32 tgid, u32 filtered_stat) {
#if !SEND_IDLE
    if (tgid == 0)
        return 0;
#endif
#if FILTER_PIDS
    if (!pid_filter.lookup(&tgid)) {
        stat_inc(filtered_stat);  // N_STATS: not counted
        return 0;
    }
#endif
    return 1;
}

static __always_inline u32 current_gen(void) {
    u32 zero = 0;
    u32 *g = active.lookup(&zero);
    return g ? *g : 0;
}

#if EVENTS
// Process lifecycle. User space reads a process's metadata (mappings, container) when the process
// is first sampled, not at exec: a host that starts hundreds of short processes a second costs
// the reader nothing for those never sampled, and at most one read per sample for the others.
// So exec and exit events go to user space only for processes announced there (sampled since
// their exec); every exec and exit is counted here (ST_EXECS, ST_EXITS). Only the first-sample
// event wakes the reader (the process must still be there when its /proc is read); exec and
// exit events wait for the next wake-up, poll timeout or drain, and force one only every
// EVENTS_WAKEUP_EVERY events of a CPU (a quarter of the ring).
static __always_inline void send_event(u32 type, u64 flags) {
    struct event_t e = {};
    u64 id = bpf_get_current_pid_tgid();
    e.type = type;
    e.tgid = id >> 32;
    e.pid = (u32)id;
    e.ts = bpf_ktime_get_ns();
    bpf_get_current_comm(&e.comm, sizeof(e.comm));
    if (events.ringbuf_output(&e, sizeof(e), flags) != 0)
        stat_inc(ST_EVENTS_LOST);
}

// BPF_RB_NO_WAKEUP (1), or BPF_RB_FORCE_WAKEUP (2) every EVENTS_WAKEUP_EVERY events of this CPU
static __always_inline u64 lazy_wakeup(void) {
    u32 idx = ST_EVENTS;
    u64 *seq = stats.lookup(&idx);
    if (!seq)
        return 2;
    u64 n = (*seq)++;  // per-CPU slot: no atomic needed
    return (n % EVENTS_WAKEUP_EVERY) == EVENTS_WAKEUP_EVERY - 1 ? 2 : 1;
}

static __always_inline void announce_first_sample(u32 tgid) {
    u8 one = 1;
    if (sampled_tgids.lookup(&tgid))
        return;
    if (sampled_tgids.insert(&tgid, &one) != 0)
        return;  // another CPU announced it first
    send_event(EV_SAMPLED, 2);
}

// An exec or an exit: passed on only for a process announced to user space, which forgets it
// here (one delete: it fails for a process never announced).
static __always_inline void pass_on_if_announced(u32 type) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (sampled_tgids.delete(&tgid) != 0)
        return;  // never announced: user space knows nothing of it
    send_event(type, lazy_wakeup());
}

#endif


#if THREAD_CTX
#include "thread_ctx.h"
#endif

#if PYTHON
// ---------------------------------------------------------------------------------------------
// CPython frames (see runtimes/python/). User space puts one py_proc_t per detected CPython
// process into `py_procs` (keyed by tgid) and removes it at exit. For each sample of a thread of
// such a process the program finds the thread's PyThreadState through the glibc TSD slot of
// CPython's autoTSSkey (valid while the thread has released the GIL, unlike _Py_tss_tstate), walks
// the frame chain and records per frame the code object's address and the instruction position.
// The stack goes into the content-addressed map pystacks{gen & 1} (pystacks_s{gen & 1} for short
// stacks) under a 64-bit hash of its
// contents; the sample refers to it by that id (in its count key, or in its stack copy), so
// identical Python stacks are stored once and counting stays in the kernel. User space turns code
// objects into names, files and lines (it reads the process's memory).
#define PY_LAYOUT_FRAMEOBJECT 1  // <= 3.10: PyFrameObject, one C eval call per frame, f_lasti an int
#define PY_LAYOUT_IS_ENTRY 2     // 3.11: _PyInterpreterFrame, is_entry marks a C call's outermost frame
#define PY_LAYOUT_SHIM 3         // 3.12+: each C call pushes a shim frame with owner == FRAME_OWNED_BY_CSTACK
#define PY_OWNED_BY_CSTACK 3
#define PY_SEGMENT_END 1         // py_frame_t.flags: the outermost frame of one C eval call

struct py_proc_t {
    u64 tsd_key_addr;   // address of the pthread_key_t of autoTSSkey in the process (Py_tss_t._key)
    u16 tsd_first;      // glibc: fs_base + tsd_first + 16 * key holds the value of a key < 32
    u16 tsd_second;     // glibc: fs_base + tsd_second + 8 * (key / 32): second-level block
    u16 tstate_frame;   // offset in PyThreadState of frame / cframe / current_frame
    u16 cframe_frame;   // offset of current_frame in _PyCFrame (3.11, 3.12), 0xffff: none
    u16 f_back;         // offsets in the frame
    u16 f_code;
    u16 f_instr;        // f_lasti (int) or prev_instr / instr_ptr (pointer)
    u16 f_marker;       // is_entry (3.11) or owner (3.12+), one byte
    u32 layout;
    u16 f_read;         // bytes read at the start of each frame: every field above is in them (<= PY_FRAME_READ)
    u16 key_known;      // written here: 1 once tsd_key holds autoTSSkey's value
    u32 tsd_key;        // autoTSSkey's value, read once per process (it never changes once initialized)
    u32 pad;
};
struct py_frame_t {
    u64 code;   // PyCodeObject address
    u32 instr;  // f_lasti (<= 3.10), or instruction pointer - code address (3.11+); ~0: unknown
    u32 flags;
};

struct py_stack_t {
    u32 n;
    u32 truncated;
    u32 tgid;  // whose code objects these are (user space reads them early, see runtimes/python)
    u32 pad;
    struct py_frame_t frames[PY_MAX_FRAMES];
};
// Stacks of at most PY_SMALL_FRAMES frames (most of them) go to maps of this smaller value, the
// same header: storing a stack copies the whole value, and at profiling rates (tens of Hz) the
// copy of a 2 KiB value runs on cold cache lines (0.5 us more per walk than 528 bytes, measured).
#define PY_SMALL_FRAMES (PY_MAX_FRAMES < 32 ? PY_MAX_FRAMES : 32)
struct py_stack_small_t {
    u32 n;
    u32 truncated;
    u32 tgid;
    u32 pad;
    struct py_frame_t frames[PY_SMALL_FRAMES];
};

// The walk's state lives in this per-CPU slot, not in registers: values loaded from a map are
// unknown to the verifier, so the paths through one iteration (a shim frame or a function's) end
// in equal states and are pruned, instead of doubling at each of the 136 iterations.
// Reads of the user's memory are what costs (a few hundred ns each here, whatever their size up
// to a page), so frames are read a page at a time: from 3.11 the frames of a thread sit one above
// the other in its data stack, so the page that holds a frame (read from its start up to the end
// of the frame's fields, `f_read` bytes past the frame) holds its callers too, and the walk reads
// again only when the chain leaves what was read. Up to 3.10 (heap PyFrameObjects) each frame is
// one read of its first f_read bytes. The page of a mapped frame is mapped: the read cannot fail
// on the part below the frame.
#define PY_FRAME_READ 128  // bytes of a frame's fields at most (f_read <= this)
#define PY_PAGE 4096
#ifndef PY_RECENT
#define PY_RECENT 128  // ids of stacks stored lately, per CPU, direct-mapped (a power of 2; 0: none)
#endif
#define PY_BUF_MASK (2 * PY_PAGE - 1)
// A sample's py_procs look-up costs 1.1-1.3 us at 20 Hz (cold bucket and element, session 10 of
// docs/benchmarks.md), so each CPU keeps what it found for the last few tgids, found or not, in
// its scratch (direct-mapped by tgid). User space bumps `py_epoch` after every change to py_procs;
// an entry is believed only while the epoch it was filled under is current (the epoch is read
// before the look-up, so an entry is never newer than its epoch). The walk writes the autoTSSkey
// it reads into the cached copy: it is read again once per refill, not once per process.
#define PY_PROC_CACHE 8
struct py_cached_t {
    u32 tgid;
    u16 filled;  // 0: never filled
    u16 known;   // 1: tgid is in py_procs, proc is its entry
    u64 epoch;   // py_epoch when it was filled
    struct py_proc_t proc;
};
struct py_walk_t {
    u64 frame;
    u64 hash;
    u64 base;  // user address of buf[0]
    u64 end;   // user address past the last byte read into buf
    struct py_cached_t procs[PY_PROC_CACHE];
#if PY_RECENT
    u32 recent_gen;  // the generation the ids below were stored in
    u32 pad;
    u64 recent[PY_RECENT];  // ids this CPU stored lately in pystacks*{recent_gen & 1}, by low bits
#endif
    struct py_stack_t st;
    u8 buf[2 * PY_PAGE + 8];
};
BPF_HASH(py_procs, u32, struct py_proc_t, PY_PROCS);
BPF_ARRAY(py_epoch, u64, 1);  // bumped by user space after each change to py_procs
BPF_PERCPU_ARRAY(py_scratch, struct py_walk_t, 1);
BPF_F_TABLE("hash", u64, struct py_stack_t, pystacks0, PY_STACKS, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct py_stack_t, pystacks1, PY_STACKS, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct py_stack_small_t, pystacks_s0, PY_STACKS, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct py_stack_small_t, pystacks_s1, PY_STACKS, BPF_F_NO_PREALLOC);
#if PY_DEBUG_CLOCK
// Debug builds only (-DPY_DEBUG_CLOCK=1, benchmarks/python_walk_stages.py): the walk's time per stage
// and what it did. 0 thread state ns, 1 frame loop ns, 2 store ns, 3 page reads, 4 bytes read,
// 5 new stacks, 6 stacks already there, 7 walks timed, 8 store ns of new stacks, 9 page read ns,
// 10 stores skipped (the id is in this CPU's recent ids), 11/12 py_procs look-up ns that found /
// did not find the process (the per-CPU cache included), 13/14 their counts, 15/16 cache hits/misses
BPF_PERCPU_ARRAY(py_dbg, u64, 17);
static __always_inline void py_dbg_add(u32 idx, u64 n) {
    u64 *v = py_dbg.lookup(&idx);
    if (v)
        *v += n;
}
#define PY_DBG(idx, n) py_dbg_add(idx, n)
#else
#define PY_DBG(idx, n)
#endif

static __always_inline u64 py_mix(u64 h, u64 v) {
    h ^= v;
    h *= 0x100000001b3ULL;  // FNV-1a prime, on 64-bit words
    return h ^ (h >> 29);
}

// 8 bytes at `rel` + `off` in buf (rel < PY_PAGE, off < PY_FRAME_READ: the mask only bounds it)
static __always_inline u64 py_field(struct py_walk_t *w, u64 rel, u32 off) {
    return *(u64 *)(w->buf + ((rel + off) & PY_BUF_MASK));
}

// The thread state's current frame of the current thread, 0 for none; *err set on a failed read.
static __always_inline u64 python_top_frame(struct py_proc_t *p, int *err) {
    u64 fs = 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    bpf_probe_read_kernel(&fs, sizeof(fs), (void *)((u64)task + TASK_FSBASE_OFF));
    if (!fs) {
        *err = 1;
        return 0;
    }
    u32 key = p->tsd_key;
    if (!p->key_known) {
        // Py_tss_t {int _is_initialized; pthread_key_t _key;}: both in one read. The key is kept
        // in the process's entry once initialized (it never changes afterwards).
        u32 tss[2] = {};
        if (bpf_probe_read_user(&tss, sizeof(tss), (void *)(p->tsd_key_addr - 4)) != 0) {
            *err = 1;
            return 0;
        }
        if (!tss[0])
            return 0;  // the runtime is not initialized yet: no thread state
        key = tss[1];
        p->tsd_key = key;
        p->key_known = 1;
    }
    u64 tstate = 0;
    if (key < 32) {
        *err = bpf_probe_read_user(&tstate, sizeof(tstate), (void *)(fs + p->tsd_first + 16 * key));
    } else if (key < 1024) {
        u64 block = 0;
        *err = bpf_probe_read_user(&block, sizeof(block), (void *)(fs + p->tsd_second + 8 * (key >> 5)));
        if (!*err && block)
            *err = bpf_probe_read_user(&tstate, sizeof(tstate), (void *)(block + 16 * (key & 31) + 8));
    }
    u64 frame = 0;
    if (!*err && tstate)
        *err = bpf_probe_read_user(&frame, sizeof(frame), (void *)(tstate + p->tstate_frame));
    if (!*err && frame && p->cframe_frame != 0xffff)
        *err = bpf_probe_read_user(&frame, sizeof(frame), (void *)(frame + p->cframe_frame));
    return *err ? 0 : frame;
}

// The Python stack of the current thread into pystacks{gen & 1}; returns its id, 0 for none.
static __always_inline u64 python_walk(struct py_walk_t *w, struct py_proc_t *p, u32 tgid, u32 gen) {
    int err = 0;
#if PY_DEBUG_CLOCK
    u64 d0 = bpf_ktime_get_ns();
#endif
    u64 frame = python_top_frame(p, &err);
#if PY_DEBUG_CLOCK
    u64 d1 = bpf_ktime_get_ns();
    PY_DBG(0, d1 - d0);
#endif
    if (err || !frame) {
        stat_inc(err ? ST_PY_READ_ERROR : ST_PY_NO_THREAD);  // a thread that never ran Python, or idle
        return 0;
    }
    w->frame = frame;
    w->base = w->end = 0;
    w->hash = py_mix(0xcbf29ce484222325ULL, tgid);
    w->st.n = 0;
    w->st.tgid = tgid;
    for (int i = 0; i < PY_MAX_FRAMES + 8; i++) {
        u64 f = w->frame;
        if (!f)
            break;
        u32 sz = p->f_read;
        if (sz > PY_FRAME_READ)
            sz = PY_FRAME_READ;
        if (f < w->base || f + sz > w->end) {
            // not in what was read: read from the start of its page (from 3.11), or the frame alone
            u64 base = p->layout == PY_LAYOUT_FRAMEOBJECT ? f : f & ~((u64)PY_PAGE - 1);
            u64 len = f + sz - base;
#if PY_DEBUG_CLOCK
            u64 r0 = bpf_ktime_get_ns();
#endif
            if (len > PY_PAGE + PY_FRAME_READ || bpf_probe_read_user(w->buf, len & PY_BUF_MASK, (void *)base) != 0) {
                stat_inc(ST_PY_READ_ERROR);
                break;
            }
            w->base = base;
            w->end = base + len;
#if PY_DEBUG_CLOCK
            PY_DBG(9, bpf_ktime_get_ns() - r0);
#endif
            PY_DBG(3, 1);
            PY_DBG(4, len);
        }
        // The compiler must read base back from the slot, not reuse what this path computed: both
        // paths then reach the next line in the same verifier state, which prunes the second one
        // (else the states multiply along the 136 iterations: seconds of verification at load).
        asm volatile("" ::: "memory");
        u64 rel = (f - w->base) & (PY_PAGE - 1);
        u64 code = py_field(w, rel, p->f_code);
        u64 back = py_field(w, rel, p->f_back);
        u64 instr = py_field(w, rel, p->f_instr);
        u8 marker = 0;
        if (p->layout == PY_LAYOUT_FRAMEOBJECT) {
            instr &= 0xffffffff;  // int f_lasti
        } else {
            marker = (u8)py_field(w, rel, p->f_marker);
            instr = (instr >= code && instr - code < 0xffffffffULL) ? instr - code : 0xffffffff;
        }
        w->frame = back;
        u32 n = w->st.n;
        if (p->layout == PY_LAYOUT_SHIM && marker == PY_OWNED_BY_CSTACK) {
            // the shim of a C-level eval call: not a Python function; it ends the segment above it
            if (n > 0)
                w->st.frames[(n - 1) & (PY_MAX_FRAMES - 1)].flags = PY_SEGMENT_END;
            w->hash = py_mix(w->hash, PY_OWNED_BY_CSTACK);  // stacks that differ only in C calls differ
            continue;
        }
        if (n >= PY_MAX_FRAMES) {
            w->frame = f;
            break;
        }
        u32 flags = (p->layout == PY_LAYOUT_FRAMEOBJECT || (p->layout == PY_LAYOUT_IS_ENTRY && marker)) ? PY_SEGMENT_END : 0;
        struct py_frame_t *pf = &w->st.frames[n & (PY_MAX_FRAMES - 1)];
        pf->code = code;
        pf->instr = (u32)instr;
        pf->flags = flags;
        // one mix per frame: the code address (47 bits) and the position rotated above it
        u64 pos = (instr << 1) | flags;
        w->hash = py_mix(w->hash, code ^ ((pos << 47) | (pos >> 17)));
        w->st.n = n + 1;
    }
    u32 n = w->st.n;
#if PY_DEBUG_CLOCK
    u64 d2 = bpf_ktime_get_ns();
    PY_DBG(1, d2 - d1);
#endif
    if (n == 0)
        return 0;
    w->st.truncated = w->frame != 0;
    if (w->frame)
        stat_inc(ST_PY_TRUNCATED);
    {
        u32 idx = ST_PY_FRAMES;
        u64 *v = stats.lookup(&idx);
        if (v)
            *v += n;
    }
    // Frames past n are left from earlier walks: user space reads frames[0..n) only.
    u64 h = py_mix(w->hash, ((u64)n << 1) | w->st.truncated);
    // Content-addressed: a stack already there is not copied again. The id's low bit tells the
    // two sizes apart (1: pystacks_s), so an id is never in both. At most one insert (BPF_NOEXIST)
    // per walk, no look-up first: a hash map access costs 1-1.5 us at 20 Hz (cold bucket and
    // element; a look-up costs what an insert that finds the id does). An id this CPU stored in
    // this generation's map (its slot in `recent`, in the scratch's first lines, which the walk
    // touches anyway) is not inserted again: 30-60% of the walks at 20 Hz (session 10 of
    // docs/benchmarks.md). User space takes only the other generation's map, so an id stored in
    // this one stays there until the generation changes, which resets `recent`.
    if (n <= PY_SMALL_FRAMES) {
        h |= 1;
    } else {
        h &= ~1ULL;
        if (h == 0)
            h = 2;
    }
    int ret = 0;
#if PY_RECENT
    if (w->recent_gen != gen) {
#pragma unroll
        for (int i = 0; i < PY_RECENT; i++)
            w->recent[i] = 0;
        w->recent_gen = gen;
    }
    u32 slot = (u32)(h >> 1) & (PY_RECENT - 1);
    if (w->recent[slot] == h) {
        ret = -E_EXIST;  // this CPU stored it in this generation's map: no insert
        PY_DBG(10, 1);
    } else
#endif
    if (n <= PY_SMALL_FRAMES) {
        struct py_stack_small_t *small = (struct py_stack_small_t *)&w->st;
        if (gen & 1)
            ret = pystacks_s1.insert(&h, small);
        else
            ret = pystacks_s0.insert(&h, small);
    } else {
        if (gen & 1)
            ret = pystacks1.insert(&h, &w->st);
        else
            ret = pystacks0.insert(&h, &w->st);
    }
#if PY_RECENT
    if (ret == 0 || ret == -E_EXIST)
        w->recent[slot & (PY_RECENT - 1)] = h;
#endif
#if PY_DEBUG_CLOCK
    u64 d3 = bpf_ktime_get_ns() - d2;
    PY_DBG(2, d3);
    if (ret == 0)
        PY_DBG(8, d3);
    PY_DBG(ret == 0 ? 5 : 6, 1);
    PY_DBG(7, 1);
#endif
    if (ret != 0 && ret != -E_EXIST) {
        stat_inc(ST_PY_STACKS_FULL);
        return 0;
    }
    return h;
}

static __always_inline void stat_add(u32 idx, u64 n) {
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += n;  // per-CPU slot: no atomic needed
}

static __always_inline u64 python_stack(u32 tgid, u32 gen) {
#if PY_DEBUG_CLOCK
    u64 l0 = bpf_ktime_get_ns();
#endif
    u32 zero = 0;
    struct py_walk_t *w = py_scratch.lookup(&zero);
    if (!w)
        return 0;
    u64 *ep = py_epoch.lookup(&zero);
    u64 epoch = ep ? *ep : 0;
    struct py_cached_t *c = &w->procs[tgid & (PY_PROC_CACHE - 1)];
    int hit = c->filled && c->tgid == tgid && c->epoch == epoch;
    if (!hit) {
        struct py_proc_t *m = py_procs.lookup(&tgid);
        c->tgid = tgid;
        c->epoch = epoch;
        c->filled = 1;
        c->known = m != 0;
        if (m)
            __builtin_memcpy(&c->proc, m, sizeof(c->proc));
    }
#if PY_DEBUG_CLOCK
    PY_DBG(c->known ? 11 : 12, bpf_ktime_get_ns() - l0);
    PY_DBG(c->known ? 13 : 14, 1);
    PY_DBG(hit ? 15 : 16, 1);
#endif
    if (!c->known)
        return 0;
    struct py_proc_t *p = &c->proc;
    u64 t0 = bpf_ktime_get_ns();
    stat_inc(ST_PY_WALKS);
    u64 id = python_walk(w, p, tgid, gen);
    stat_add(ST_PY_WALK_NS, bpf_ktime_get_ns() - t0);  // the in-kernel cost of Python, reported per walk
    return id;
}
#endif

#if UNWIND_COPY
// ---------------------------------------------------------------------------------------------
// dwarf/auto unwinding (see unwind/copies.py): instead of counting a sample in the kernel with a
// frame-pointer user stack, send the user registers and the top of the user stack to user space,
// which unwinds it with the binaries' .eh_frame. Kernel stacks stay on get_stackid (same maps,
// same generation as the counts). When the ring buffer is full the sample falls back to the
// in-kernel frame-pointer path and the loss is counted (ST_COPY_LOST).
#define COPY_PAGE 4096

struct copy_t {
    u32 tgid;
    u32 tid;
    s32 kstack;
    u32 gen;
    u64 ip;
    u64 sp;
    u64 bp;
    u32 size;   // bytes copied from the start of the page that holds sp
    u32 delta;  // sp - start of that page
    u64 pystack;  // id of the Python stack in pystacks{gen & 1}, 0 for none
    u64 tctx;     // id of the thread-context record in tc_records{gen & 1}, 0 for none
    char comm[16];
    u8 stack[STACK_COPY_SIZE + COPY_PAGE];
};

BPF_RINGBUF_OUTPUT(stack_copies, COPY_PAGES);
// The record is built in a scratch slot of this CPU, then only its used part (header + the
// pages actually copied) goes to the ring buffer: a reserved record would always take the full
// STACK_COPY_SIZE + a page, and the ring, mapped twice in user space, counts twice in our RSS.
// A plain array indexed by CPU, not a per-CPU array: per-CPU values are limited to 32 KiB.
// Perf-event programs do not nest on a CPU, so the slot is never shared.
BPF_ARRAY(copy_scratch, struct copy_t, COPY_CPUS);

// Returns 1 when the sample left as a stack copy, 0 when the caller must count it in the kernel
// (kernel thread: no user stack; or the ring buffer is full).
static __always_inline int copy_user_stack(struct bpf_perf_event_data *ctx, struct key_t *key, u32 gen) {
    u64 ip = 0, sp = 0, bp = 0;
    if ((ctx->regs.cs & 3) == 3) {  // sampled in user mode: the interrupted registers are the user's
        ip = ctx->regs.ip;
        sp = ctx->regs.sp;
        bp = ctx->regs.bp;
    } else {
        // In the kernel: the user registers saved at kernel entry (bpf_task_pt_regs). A kernel
        // thread has no user context there (cs is not a user segment). No task_struct field is
        // read: the headers BCC compiles with may not match the running kernel's layout.
        struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
        u64 cs = 0;
        bpf_probe_read_kernel(&cs, sizeof(cs), &regs->cs);
        if ((cs & 3) != 3)
            return 0;
        bpf_probe_read_kernel(&ip, sizeof(ip), &regs->ip);
        bpf_probe_read_kernel(&sp, sizeof(sp), &regs->sp);
        bpf_probe_read_kernel(&bp, sizeof(bp), &regs->bp);
    }
    if (!sp || !ip)
        return 0;
    u32 cpu = bpf_get_smp_processor_id();
    struct copy_t *c = copy_scratch.lookup(&cpu);
    if (!c)
        return 0;
    c->tgid = key->tgid;
    c->tid = key->tid;
    c->gen = gen;
    c->ip = ip;
    c->sp = sp;
    c->bp = bp;
    c->pystack = key->pystack;
    c->tctx = key->tctx;
    __builtin_memcpy(&c->comm, key->comm, sizeof(c->comm));
    if (gen & 1)
        c->kstack = stacks1.get_stackid(ctx, 0);
    else
        c->kstack = stacks0.get_stackid(ctx, 0);
    stack_error(c->kstack, ST_KERN_EEXIST);
    // Page-aligned reads at constant offsets (what the verifier can bound): the page holding sp,
    // then the next ones, until STACK_COPY_SIZE bytes above sp are in or a page is not mapped
    // (the top of the stack). No page faults here: a page that is not resident ends the copy.
    u64 base = sp & ~((u64)COPY_PAGE - 1);
    u32 size = 0;
#pragma unroll
    for (int i = 0; i < STACK_COPY_SIZE / COPY_PAGE + 1; i++) {
        if (bpf_probe_read_user(c->stack + i * COPY_PAGE, COPY_PAGE, (void *)(base + i * COPY_PAGE)) != 0)
            break;
        size += COPY_PAGE;
    }
    c->size = size;
    c->delta = (u32)(sp - base);
    u32 len = offsetof(struct copy_t, stack) + size;
    if (len > sizeof(struct copy_t))
        len = sizeof(struct copy_t);
    // No wake-up per record: the sampler thread reads the copies on its poll cadence
    // (poll_timeout_ms) and at each drain, and is woken early (BPF_RB_FORCE_WAKEUP = 2) only
    // every COPY_WAKEUP_EVERY records of a CPU, about a quarter of the ring (BPF_RB_NO_WAKEUP = 1
    // otherwise): a few wake-ups per second instead of one per sample, and no overflow between polls.
    u32 seq_idx = ST_COPIES;
    u64 *seq = stats.lookup(&seq_idx);
    u64 flags = 1;
    if (seq && (*seq % COPY_WAKEUP_EVERY) == COPY_WAKEUP_EVERY - 1)
        flags = 2;
    if (stack_copies.ringbuf_output(c, len, flags) != 0) {
        // ring buffer full: the sample falls back to the in-kernel frame-pointer path
        stat_inc(ST_COPY_LOST);
        return 0;
    }
    stat_inc(ST_COPIES);
    return 1;
}
#endif

#if UNWIND_KERNEL
#include "kernel_unwind.h"
int ku_walk(struct bpf_perf_event_data *ctx) {
    return ku_walk_body(ctx);  // tail-called through ku_progs
}
#endif

int on_cpu_sample(struct bpf_perf_event_data *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!keep_task(tgid, ST_PID_FILTERED))
        return 0;

    struct key_t key = {};
    key.tgid = tgid;
    key.tid = (u32)id;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    u32 gen = current_gen();
    u64 one = 1;
    u64 *c;
    int err;

    stat_inc(ST_SAMPLES);
#if EVENTS
    announce_first_sample(tgid);
#endif
#if PYTHON
    key.pystack = python_stack(tgid, gen);
#endif
#if THREAD_CTX
    key.tctx = thread_ctx_record(tgid, gen);
#endif
#if UNWIND_KERNEL
    ku_start(ctx, &key, gen);  // tail call into the kernel unwinder; returns when it does not apply
#endif
#if UNWIND_COPY
    if (copy_user_stack(ctx, &key, gen))
        return 0;
#endif
    // The stack ids and the count always go to the same set, in the same invocation, so a
    // count never refers to a stack map of another generation. The two branches are written out:
    // BCC rewrites map calls itself and refuses them inside a macro.
    if (gen & 1) {
        key.ustack = stacks1.get_stackid(ctx, BPF_F_USER_STACK);
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
        key.ustack = stacks0.get_stackid(ctx, BPF_F_USER_STACK);
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
    stack_error(key.ustack, ST_USER_EEXIST);
    stack_error(key.kstack, ST_KERN_EEXIST);
    return 0;
}

#if EVENTS
TRACEPOINT_PROBE(sched, sched_process_exec) {
    stat_inc(ST_EXECS);
    pass_on_if_announced(EV_EXEC);  // and the new image's first sample is announced again
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    // group_dead: the last thread of the group is exiting (the leader may have gone before).
    if (!args->group_dead)
        return 0;
    stat_inc(ST_EXITS);
    pass_on_if_announced(EV_EXIT);
    return 0;
}
#endif

#if OFF_CPU
// Off-CPU time. At sched_switch the current task is `prev`: its stacks are captured at
// switch-out (into the active generation's off-CPU stack maps) and kept with a timestamp; when
// that task is switched back in (it is `next` of a later sched_switch) the time it spent off
// CPU is added to the active off-CPU counts map. The key carries the generation the stack ids
// belong to, because a task may sleep across several drains: user space keeps the stacks of
// older generations that pending records still refer to (see Sampler._drain_off_cpu).
struct start_t {
    u64 ts;
    u32 gen;
    u32 tgid;
    s32 ustack;
    s32 kstack;
    char comm[16];
};

BPF_TABLE("lru_hash", u32, struct start_t, offcpu_start, OFF_CPU_START_SIZE);
BPF_HASH(offcpu_counts0, struct key_t, u64, COUNTS_SIZE);
BPF_HASH(offcpu_counts1, struct key_t, u64, COUNTS_SIZE);
BPF_STACK_TRACE(offcpu_stacks0, OFF_CPU_STACK_SIZE);
BPF_STACK_TRACE(offcpu_stacks1, OFF_CPU_STACK_SIZE);

TRACEPOINT_PROBE(sched, sched_switch) {
    u32 gen = current_gen();
    u64 now = bpf_ktime_get_ns();
    u32 prev = args->prev_pid;

    if (prev != 0 && (u64)bpf_get_prandom_u32() < (u64)OFF_CPU_THRESHOLD) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        if (keep_task(tgid, N_STATS)) {
            struct start_t s = {};
            s.ts = now;
            s.gen = gen;
            s.tgid = tgid;
            bpf_get_current_comm(&s.comm, sizeof(s.comm));
            if (gen & 1) {
                s.ustack = offcpu_stacks1.get_stackid(args, BPF_F_USER_STACK);
                s.kstack = offcpu_stacks1.get_stackid(args, 0);
            } else {
                s.ustack = offcpu_stacks0.get_stackid(args, BPF_F_USER_STACK);
                s.kstack = offcpu_stacks0.get_stackid(args, 0);
            }
            stack_error(s.ustack, ST_OFF_USER_EEXIST);
            stack_error(s.kstack, ST_OFF_KERN_EEXIST);
            if (offcpu_start.update(&prev, &s) != 0)
                stat_inc(ST_OFF_START_FULL);
        }
    }

    u32 next = args->next_pid;
    if (next == 0)
        return 0;
    struct start_t *sp = offcpu_start.lookup(&next);
    if (!sp)
        return 0;
    struct key_t key = {};
    key.tgid = sp->tgid;
    key.tid = next;
    key.ustack = sp->ustack;
    key.kstack = sp->kstack;
    key.gen = sp->gen;
    __builtin_memcpy(&key.comm, sp->comm, sizeof(key.comm));
    u64 delta = now > sp->ts ? now - sp->ts : 0;
    offcpu_start.delete(&next);
    stat_inc(ST_OFF_EVENTS);

    u64 *c;
    int err;
    if (gen & 1) {
        c = offcpu_counts1.lookup(&key);
        if (c) {
            __sync_fetch_and_add(c, delta);
        } else {
            err = offcpu_counts1.insert(&key, &delta);
            if (err == -E_EXIST) {
                c = offcpu_counts1.lookup(&key);
                if (c)
                    __sync_fetch_and_add(c, delta);
            } else if (err) {
                stat_inc(ST_OFF_COUNTS_FULL);
            }
        }
    } else {
        c = offcpu_counts0.lookup(&key);
        if (c) {
            __sync_fetch_and_add(c, delta);
        } else {
            err = offcpu_counts0.insert(&key, &delta);
            if (err == -E_EXIST) {
                c = offcpu_counts0.lookup(&key);
                if (c)
                    __sync_fetch_and_add(c, delta);
            } else if (err) {
                stat_inc(ST_OFF_COUNTS_FULL);
            }
        }
    }
    return 0;
}
#endif
