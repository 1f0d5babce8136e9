/* Many distinct call paths: path number k (0 <= k < PATHS) is spelled by its base-4 digits,
 * each digit picking one of four recursive functions r0..r3, so every k gives its own user
 * stack of depth DEPTH (+ main;drive). Usage: stacks PATHS DEPTH [SECONDS]
 * The leaf burns a little so that each visit is likely to be sampled at high frequency. */
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;
static int depth;

__attribute__((noinline)) void leaf(void) { for (int i = 0; i < 3000; i++) sink += i; }
void r0(unsigned long k, int d);
void r1(unsigned long k, int d);
void r2(unsigned long k, int d);
void r3(unsigned long k, int d);

__attribute__((noinline)) static void next(unsigned long k, int d) {
    if (d >= depth) { leaf(); return; }
    switch (k & 3) {
    case 0: r0(k >> 2, d + 1); break;
    case 1: r1(k >> 2, d + 1); break;
    case 2: r2(k >> 2, d + 1); break;
    default: r3(k >> 2, d + 1); break;
    }
    sink++;  /* not a tail call: keeps every frame on the stack */
}
__attribute__((noinline)) void r0(unsigned long k, int d) { next(k, d); sink++; }
__attribute__((noinline)) void r1(unsigned long k, int d) { next(k, d); sink++; }
__attribute__((noinline)) void r2(unsigned long k, int d) { next(k, d); sink++; }
__attribute__((noinline)) void r3(unsigned long k, int d) { next(k, d); sink++; }

__attribute__((noinline)) void drive(unsigned long paths, double seconds) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long k = 0;
    for (;;) {
        next(k, 0);
        k = (k + 7919) % paths; /* a prime stride visits every path */
        if ((k & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (seconds > 0 && (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds) return;
        }
    }
}

int main(int argc, char **argv) {
    unsigned long paths = argc > 1 ? strtoul(argv[1], 0, 10) : 1000;
    depth = argc > 2 ? atoi(argv[2]) : 10;
    drive(paths ? paths : 1, argc > 3 ? atof(argv[3]) : 0);
    return 0;
}
