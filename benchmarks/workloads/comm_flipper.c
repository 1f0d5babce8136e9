/* Changes its comm every millisecond (prctl PR_SET_NAME) while burning CPU.
 * Usage: comm_flipper [SECONDS] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) void spin_1ms(void) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 1000; i++) sink += i;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6 < 1.0);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    char name[16];
    long n = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        snprintf(name, sizeof name, "flip\xff%ld", n++);  /* includes a non-UTF-8 byte */
        prctl(PR_SET_NAME, name, 0, 0, 0);
        spin_1ms();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    printf("%ld\n", n);
    return 0;
}
