/* A CPU workload with a known split: burn_a gets SHARE_A percent of the work, burn_b the rest.
 * main -> work -> burn_a / burn_b, so complete stacks are "main;work;burn_a". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef SHARE_A
#define SHARE_A 75
#endif

volatile unsigned long sink;

/* Same code at the same cache-line alignment, so that an iteration costs the same in both and the
 * split of CPU time is the split of iterations. */
__attribute__((noinline, aligned(64))) void burn_a(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 7; }
__attribute__((noinline, aligned(64))) void burn_b(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 7; }

__attribute__((noinline)) void work(void) {
    burn_a(SHARE_A * 10000UL);
    burn_b((100 - SHARE_A) * 10000UL);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 100; i++) work();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    return 0;
}
