/* Many small mostly-sleeping processes that each burn briefly.
 * Usage: spawner N BURN_MS PERIOD_MS SECONDS
 * Forks N children; each loops: sleep a random part of PERIOD_MS, burn BURN_MS of CPU.
 * The parent waits SECONDS, then kills the whole group. Prints "ready N" when all are up. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void burn(double ms) {
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    do {
        for (int i = 0; i < 10000; i++) sink += i;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6 < ms);
}

__attribute__((noinline)) void child(double burn_ms, long period_ms, unsigned seed) {
    srand(seed);
    for (;;) {
        usleep((useconds_t)((rand() % (period_ms > 0 ? period_ms : 1)) * 1000L));
        burn(burn_ms);
        if (getppid() == 1) _exit(0);
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    double burn_ms = argc > 2 ? atof(argv[2]) : 2;
    long period = argc > 3 ? atol(argv[3]) : 1000;
    double seconds = argc > 4 ? atof(argv[4]) : 10;
    setpgid(0, 0);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) child(burn_ms, period, (unsigned)i * 2654435761u);
        if (p < 0) { perror("fork"); break; }
    }
    printf("ready %d\n", n);
    fflush(stdout);
    usleep((useconds_t)(seconds * 1e6));
    signal(SIGTERM, SIG_IGN);
    kill(0, SIGTERM);
    while (wait(NULL) > 0) {}
    return 0;
}
