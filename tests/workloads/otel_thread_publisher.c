/* A process that publishes OpenTelemetry thread contexts (OTEP 4947) the way the spec says, for the
 * span-link tests. One source, three builds (tests/runtimes/test_otel_thread_tls.py):
 *
 *   static TLS:  gcc -DPUB_MAIN -DPUB_IMPL -pie -fPIE ... -Wl,--export-dynamic-symbol=otel_thread_ctx_v1
 *                the variable lives in the executable (local-exec)
 *   library:     gcc -DPUB_IMPL -shared -fPIC -ftls-model=global-dynamic [-mtls-dialect=gnu2] ... -o lib.so
 *   dlopen host: gcc -DPUB_MAIN -DPUB_DLOPEN ... -ldl: loads the library with dlopen after start-up
 *                (general-dynamic: dynamic TLS through the DTV; gnu2: TLSDESC)
 *
 * Usage: publisher [LIB.so] THREADS SPAN_MS GAP_MS SECONDS MODE ATTR
 *   Each thread loops: a new span (random trace id; span id = its tid, then a counter, big-endian),
 *   prints "span TID TRACEHEX SPANHEX", burns CPU in burn_in() for SPAN_MS with the context set,
 *   clears it, prints "gap TID", burns CPU in burn_out() for GAP_MS.
 *   MODE swap: a new record each span, pointer stored after the record is complete, NULL after
 *   (pattern A); toggle: one record per thread, valid=0 while it is rewritten (pattern B).
 *   hostile: see hostile_loop (no span lines).
 *   ATTR: the value of attribute key index 0 ("-": none).
 * Prints "fn burn_in ADDR" and "fn burn_out ADDR", then "ready", then per thread "tls TID &VAR TP"
 * and the span lines.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*run_fn)(int, char **);

#ifdef PUB_IMPL
__attribute__((visibility("default"))) __thread void *otel_thread_ctx_v1;

struct record {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t valid;
    uint8_t trace_flags;
    uint16_t attrs_size;
    uint8_t attrs[612];
} __attribute__((packed, aligned(8)));

static int span_ms, gap_ms, seconds, toggle, hostile;
static const char *attr;
static atomic_int stop;
static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

__attribute__((noinline)) void burn_in(int ms) {
    uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
    volatile uint64_t x = 0;
    while (now_ns() < end)
        for (int i = 0; i < 20000; i++) x += i;
}

__attribute__((noinline)) void burn_out(int ms) {
    uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
    volatile uint64_t x = 0;
    while (now_ns() < end)
        for (int i = 0; i < 20000; i++) x ^= i;
}

static void fill(struct record *r, uint32_t tid, uint32_t n, unsigned *seed) {
    for (int i = 0; i < 16; i++) r->trace_id[i] = (uint8_t)rand_r(seed);
    r->trace_id[0] |= 1; /* never all zero */
    uint8_t sp[8] = {tid >> 24, tid >> 16, tid >> 8, tid, n >> 24, n >> 16, n >> 8, n};
    memcpy(r->span_id, sp, 8);
    r->trace_flags = 1;
    uint16_t size = 0;
    if (attr && strcmp(attr, "-") != 0) {
        size_t len = strlen(attr);
        if (len > 255) len = 255;
        r->attrs[0] = 0;
        r->attrs[1] = (uint8_t)len;
        memcpy(r->attrs + 2, attr, len);
        size = (uint16_t)(2 + len);
    }
    r->attrs_size = size;
}

static void print_span(uint32_t tid, struct record *r) {
    pthread_mutex_lock(&out);
    printf("span %u ", tid);
    for (int i = 0; i < 16; i++) printf("%02x", r->trace_id[i]);
    printf(" ");
    for (int i = 0; i < 8; i++) printf("%02x", r->span_id[i]);
    printf("\n");
    pthread_mutex_unlock(&out);
}

/* MODE hostile: what a broken or malicious publisher may leave in the variable, in turn while the
 * thread burns CPU: a pointer to unmapped memory, a record claiming 65535 bytes of attributes (valid,
 * a trace id), a record whose valid byte is 2, and a pointer into the middle of a page end. */
static void hostile_loop(uint32_t tid) {
    static struct record big __attribute__((aligned(8)));
    struct record *bad = aligned_alloc(8, sizeof(struct record));
    memset(&big, 0x41, sizeof big);
    big.valid = 1;
    big.attrs_size = 0xffff;
    memset(bad, 0, sizeof *bad);
    bad->trace_id[0] = 1;
    bad->span_id[0] = 1;
    bad->valid = 2;
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *edge = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(edge + page, page);
    memset(edge, 0x42, page);
    edge[page - 8 + 24 - 24] = 0; /* a header that starts 8 bytes before the unmapped page */
    void *ptrs[4] = {(void *)0xdead0000ul, &big, bad, edge + page - 8};
    (void)tid;
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        otel_thread_ctx_v1 = ptrs[i % 4];
        atomic_signal_fence(memory_order_seq_cst);
        burn_in(span_ms);
    }
    otel_thread_ctx_v1 = NULL;
}

static void *worker(void *arg) {
    (void)arg;
    uint32_t tid = (uint32_t)syscall(SYS_gettid);
    unsigned seed = tid * 2654435761u;
    struct record *recs = aligned_alloc(8, 2 * sizeof(struct record));
    memset(recs, 0, 2 * sizeof(struct record));
    uint32_t n = 0;
    int cur = 0;
    /* where this thread's variable is, for the tests that check the reader's address arithmetic */
    pthread_mutex_lock(&out);
    printf("tls %u %lx %lx\n", tid, (unsigned long)(uintptr_t)&otel_thread_ctx_v1,
           (unsigned long)(uintptr_t)__builtin_thread_pointer());
    pthread_mutex_unlock(&out);
    if (hostile) {
        hostile_loop(tid);
        return NULL;
    }
    if (toggle) {
        otel_thread_ctx_v1 = &recs[0]; /* pattern B: set once, valid toggled */
        atomic_signal_fence(memory_order_seq_cst);
    }
    while (!atomic_load(&stop)) {
        n++;
        if (toggle) {
            struct record *r = &recs[0];
            r->valid = 0;
            atomic_signal_fence(memory_order_seq_cst);
            fill(r, tid, n, &seed);
            atomic_signal_fence(memory_order_seq_cst);
            r->valid = 1;
            atomic_signal_fence(memory_order_seq_cst);
            print_span(tid, r);
        } else {
            cur ^= 1;
            struct record *r = &recs[cur];
            fill(r, tid, n, &seed);
            r->valid = 1;
            atomic_signal_fence(memory_order_seq_cst);
            otel_thread_ctx_v1 = r; /* pattern A: the pointer last */
            atomic_signal_fence(memory_order_seq_cst);
            print_span(tid, r);
        }
        burn_in(span_ms);
        if (toggle) {
            recs[0].valid = 0;
        } else {
            otel_thread_ctx_v1 = NULL;
        }
        atomic_signal_fence(memory_order_seq_cst);
        pthread_mutex_lock(&out);
        printf("gap %u\n", tid);
        pthread_mutex_unlock(&out);
        burn_out(gap_ms);
    }
    return NULL;
}

__attribute__((visibility("default"))) int publisher_run(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: THREADS SPAN_MS GAP_MS SECONDS MODE ATTR\n");
        return 2;
    }
    int threads = atoi(argv[0]);
    span_ms = atoi(argv[1]);
    gap_ms = atoi(argv[2]);
    seconds = atoi(argv[3]);
    toggle = strcmp(argv[4], "toggle") == 0;
    hostile = strcmp(argv[4], "hostile") == 0;
    attr = argv[5];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("fn burn_in %lx\nfn burn_out %lx\nready\n", (unsigned long)(uintptr_t)&burn_in,
           (unsigned long)(uintptr_t)&burn_out);
    pthread_t th[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, NULL);
    sleep(seconds);
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    printf("done\n");
    return 0;
}
#endif

#ifdef PUB_MAIN
int main(int argc, char **argv) {
#ifdef PUB_DLOPEN
    if (argc < 2) return 2;
    const char *delay = getenv("PUB_DLOPEN_DELAY_MS"); /* loaded after start-up, as an extension module */
    usleep(1000 * (delay ? atoi(delay) : 300));
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    run_fn run = (run_fn)dlsym(h, "publisher_run");
    if (!run) return 2;
    return run(argc - 2, argv + 2);
#else
    return publisher_run(argc - 1, argv + 1);
#endif
}
#endif
