/* Short-lived processes: starts TOTAL children over SECONDS (evenly), each burns BURN_MS and
 * exits; at most 64 alive at once. Usage: churn TOTAL SECONDS [BURN_MS] [EXEC_PATH]
 * With EXEC_PATH each child execs it (argv: EXEC_PATH BURN_MS), so exec events happen too.
 * Prints "done STARTED" at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void short_burn(double ms) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 10000; i++) sink += i;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6 < ms);
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc == 2) { short_burn(atof(argv[1])); return 0; } /* exec'd child mode */
    long total = argc > 1 ? atol(argv[1]) : 1000;
    double seconds = argc > 2 ? atof(argv[2]) : 10;
    double burn_ms = argc > 3 ? atof(argv[3]) : 1;
    const char *exe = argc > 4 ? argv[4] : NULL;
    char ms[32];
    snprintf(ms, sizeof ms, "%g", burn_ms);
    double t0 = now();
    long started = 0, alive = 0;
    while (started < total) {
        double due = t0 + seconds * started / total;
        double w = due - now();
        if (w > 0) usleep((useconds_t)(w * 1e6));
        while (alive >= 64) { if (wait(NULL) > 0) alive--; else break; }
        while (alive > 0 && waitpid(-1, NULL, WNOHANG) > 0) alive--;
        pid_t p = fork();
        if (p == 0) {
            if (exe) { execl(exe, exe, ms, (char *)NULL); _exit(127); }
            short_burn(burn_ms);
            _exit(0);
        }
        if (p > 0) { started++; alive++; }
    }
    while (wait(NULL) > 0) {}
    printf("done %ld\n", started);
    return 0;
}
