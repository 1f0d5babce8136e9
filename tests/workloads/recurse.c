/* Recursion of a known depth: main -> recurse(DEPTH) -> ... -> recurse(1) -> spin.
 * Build with -O2 -fomit-frame-pointer -fno-inline -fno-optimize-sibling-calls: the asm barrier
 * and the use of the result after the call keep every level a real frame. */
#include <stdlib.h>
#include <time.h>

#ifndef DEPTH
#define DEPTH 40
#endif

volatile unsigned long sink;

__attribute__((noinline)) void spin(void) {
    for (unsigned long i = 0; i < 200000UL; i++) sink += i * 3;
}

__attribute__((noinline)) int recurse(int n) {
    if (n <= 1) {
        spin();
        return 1;
    }
    int r = recurse(n - 1);
    __asm__ volatile("" : "+r"(r) : : "memory");
    return r + 1;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 50; i++) sink += recurse(DEPTH);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    return 0;
}
