/* A CPU workload with a known three-way split of work: func_a 50%, func_b 30%, func_c 20%
 * (SHARE_A/SHARE_B/SHARE_C). Stacks: main;work;func_a etc. Usage: split3 [SECONDS] */
#include <stdlib.h>
#include <time.h>

#ifndef SHARE_A
#define SHARE_A 50
#endif
#ifndef SHARE_B
#define SHARE_B 30
#endif
#ifndef SHARE_C
#define SHARE_C 20
#endif

volatile unsigned long sink;

__attribute__((noinline)) void func_a(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 7; }
__attribute__((noinline)) void func_b(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 7; }
__attribute__((noinline)) void func_c(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 7; }

__attribute__((noinline)) void work(void) {
    func_a(SHARE_A * 2000UL);
    func_b(SHARE_B * 2000UL);
    func_c(SHARE_C * 2000UL);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10.0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 50; i++) work();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    return 0;
}
