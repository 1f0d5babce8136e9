/* Runs valid code that lives inside a corrupted ELF file or in anonymous (JIT-like) memory.
 * Usage: mapbad FILE OFFSET SECONDS         map FILE PROT_READ|PROT_EXEC (whole file) and call
 *                                           the function at file offset OFFSET in a loop
 *        mapbad --anon FILE OFFSET SECONDS  copy the page holding OFFSET from FILE into an
 *                                           anonymous RWX page and call the copy in a loop
 * Prints "ready ADDR" (the address called, hex) once running. The function must be
 * position-independent and self-contained (payload.c). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef void (*fn_t)(void);

__attribute__((noinline)) void call_loop(fn_t f, double seconds) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        f();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
}

int main(int argc, char **argv) {
    int anon = argc > 1 && strcmp(argv[1], "--anon") == 0;
    if (argc < 4 + anon) return 2;
    const char *path = argv[1 + anon];
    long off = strtol(argv[2 + anon], 0, 0);
    double seconds = atof(argv[3 + anon]);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    struct stat st;
    fstat(fd, &st);
    unsigned char *base = mmap(NULL, st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    fn_t f = (fn_t)(base + off);
    if (anon) {
        long page = sysconf(_SC_PAGESIZE);
        unsigned char *jit = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (jit == MAP_FAILED) { perror("mmap anon"); return 1; }
        long start = off & ~(page - 1);
        long n = st.st_size - start < 2 * page ? st.st_size - start : 2 * page;
        memcpy(jit, base + start, n);
        f = (fn_t)(jit + (off - start));
    }
    printf("ready %lx\n", (unsigned long)f);
    fflush(stdout);
    call_loop(f, seconds);
    return 0;
}
