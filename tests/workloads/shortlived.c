/* A process that lives a few tens of milliseconds: burn_short() spins for argv[1] ms of its own CPU
 * time, then exits. CPU time, not wall time: on a loaded host each process still gets the CPU the
 * test counts on (~2.5 samples at 99 Hz), it just lives longer. */
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

__attribute__((noinline)) void burn_short(double ms) {
    double end = now_ms() + ms;
    while (now_ms() < end)
        for (int i = 0; i < 10000; i++) sink += i;
}

int main(int argc, char **argv) {
    burn_short(argc > 1 ? atof(argv[1]) : 30.0);
    return 0;
}
