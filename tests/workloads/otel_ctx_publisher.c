/* A process that publishes an OpenTelemetry process context (OTEP 4719) the way the spec and its
 * C reference implementation do, driven by commands on stdin (one per line), for the reader's tests:
 *
 *   publish FILE        memfd_create("OTEL_CTX") (else an anonymous mapping), header + payload from
 *                       FILE, fence, timestamp last, prctl(PR_SET_VMA_ANON_NAME); prints "ready ADDR"
 *   update FILE         the update protocol: timestamp 0, fence, new payload, fence, new timestamp,
 *                       prctl again; prints "updated TS"
 *   hold                timestamp 0 and stay there (a writer stopped mid-update); prints "held"
 *   release             a new timestamp; prints "released TS"
 *   poke OFF HEX        write raw bytes into the header (hostile headers); prints "poked"
 *   storm FILE1 FILE2   a thread alternates between the two payloads as fast as it can, scribbling
 *                       over the payload it just unpublished (a reader that ignores the timestamp
 *                       gets garbage); prints "storming"
 *   stop                stop the storm; prints "stopped N" (updates done)
 *   anon                the next publish uses an anonymous mapping, not a memfd
 *   exit
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#define PR_SET_VMA_ 0x53564d41
#define PR_SET_VMA_ANON_NAME_ 0

struct header {
    char signature[8];
    uint32_t version;
    uint32_t payload_size;
    uint64_t published_at_ns; /* written last; 0 while being written */
    uint64_t payload;         /* absolute address */
};

static volatile struct header *hdr;
static size_t map_len;
static int use_anon;
static uint64_t last_ts;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    uint64_t v = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    if (v <= last_ts) v = last_ts + 1; /* every update must change it */
    last_ts = v;
    return v;
}

static char *read_file(const char *path, uint32_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? n : 1);
    if (n > 0 && fread(buf, 1, n, f) != (size_t)n) { perror("fread"); exit(2); }
    fclose(f);
    *size = (uint32_t)n;
    return buf;
}

static void name_mapping(void) {
    /* ignored on kernels without CONFIG_ANON_VMA_NAME: the memfd name is then what readers see */
    prctl(PR_SET_VMA_, PR_SET_VMA_ANON_NAME_, (unsigned long)hdr, map_len, "OTEL_CTX");
}

static void publish(const char *path) {
    uint32_t size;
    char *payload = read_file(path, &size);
    map_len = sizeof(struct header);
    void *addr = MAP_FAILED;
    if (!use_anon) {
        int fd = memfd_create("OTEL_CTX", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
        if (fd < 0) fd = memfd_create("OTEL_CTX", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd >= 0) {
            if (ftruncate(fd, map_len) == 0)
                addr = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
            close(fd);
        }
    }
    if (addr == MAP_FAILED)
        addr = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (addr == MAP_FAILED) { perror("mmap"); exit(2); }
    madvise(addr, map_len, MADV_DONTFORK);
    hdr = addr;
    memcpy((void *)hdr->signature, "OTEL_CTX", 8);
    hdr->version = 2;
    hdr->payload_size = size;
    hdr->payload = (uint64_t)(uintptr_t)payload;
    atomic_thread_fence(memory_order_seq_cst);
    hdr->published_at_ns = now_ns();
    name_mapping();
    printf("ready %lx\n", (unsigned long)(uintptr_t)hdr);
}

static void swap_payload(char *payload, uint32_t size) {
    hdr->published_at_ns = 0;
    atomic_thread_fence(memory_order_seq_cst);
    hdr->payload = (uint64_t)(uintptr_t)payload;
    hdr->payload_size = size;
    atomic_thread_fence(memory_order_seq_cst);
    hdr->published_at_ns = now_ns();
}

/* storm */
static char *storm_buf[2], *storm_src[2];
static uint32_t storm_size[2];
static atomic_int storm_run;
static unsigned long storm_count;
static pthread_t storm_thread;

static void *storm(void *arg) {
    (void)arg;
    int next = 0;
    while (atomic_load(&storm_run)) {
        memcpy(storm_buf[next], storm_src[next], storm_size[next]); /* restore it while unpublished */
        swap_payload(storm_buf[next], storm_size[next]);
        atomic_thread_fence(memory_order_seq_cst);
        memset(storm_buf[1 - next], 0xAA, storm_size[1 - next]); /* the old one: garbage from now on */
        storm_count++;
        next = 1 - next;
        for (volatile int i = 0; i < 2000; i++) {
        } /* a short pause: readers get windows both inside and outside updates */
    }
    return NULL;
}

int main(void) {
    char line[4096];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        char a[2048] = "", b[2048] = "";
        if (sscanf(line, "publish %2047s", a) == 1) {
            publish(a);
        } else if (sscanf(line, "update %2047s", a) == 1) {
            uint32_t size;
            char *payload = read_file(a, &size);
            swap_payload(payload, size); /* the old payload leaks: a reader may still be copying it */
            name_mapping();
            printf("updated %llu\n", (unsigned long long)hdr->published_at_ns);
        } else if (strncmp(line, "hold", 4) == 0) {
            hdr->published_at_ns = 0;
            printf("held\n");
        } else if (strncmp(line, "release", 7) == 0) {
            hdr->published_at_ns = now_ns();
            printf("released %llu\n", (unsigned long long)hdr->published_at_ns);
        } else if (sscanf(line, "poke %2047s %2047s", a, b) == 2) {
            unsigned long off = strtoul(a, NULL, 0);
            size_t n = strlen(b) / 2;
            for (size_t i = 0; i < n && off + i < sizeof(struct header); i++) {
                unsigned int v;
                sscanf(b + 2 * i, "%2x", &v);
                ((volatile unsigned char *)hdr)[off + i] = (unsigned char)v;
            }
            printf("poked\n");
        } else if (sscanf(line, "storm %2047s %2047s", a, b) == 2) {
            storm_src[0] = read_file(a, &storm_size[0]);
            storm_src[1] = read_file(b, &storm_size[1]);
            storm_buf[0] = malloc(storm_size[0]);
            storm_buf[1] = malloc(storm_size[1]);
            atomic_store(&storm_run, 1);
            pthread_create(&storm_thread, NULL, storm, NULL);
            printf("storming\n");
        } else if (strncmp(line, "stop", 4) == 0) {
            atomic_store(&storm_run, 0);
            pthread_join(storm_thread, NULL);
            printf("stopped %lu\n", storm_count);
        } else if (strncmp(line, "anon", 4) == 0) {
            use_anon = 1;
            printf("anon\n");
        } else if (strncmp(line, "exit", 4) == 0) {
            break;
        }
    }
    return 0;
}
