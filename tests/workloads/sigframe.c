/* A signal handler that burns CPU: main -> loop_outer -> (signal) __restore_rt -> on_alarm -> burn.
 * SIGALRM fires every 10 ms (ITIMER_PROF would also work); the handler runs ~5 ms, so many samples
 * are taken inside it, on the interrupted stack. */
#include <signal.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) void burn(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 5; }
__attribute__((noinline)) void on_alarm(int sig) { (void)sig; burn(3000000UL); }
__attribute__((noinline)) void loop_outer(void) { for (unsigned long i = 0; i < 1000000UL; i++) sink += i; }

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        loop_outer();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    return 0;
}
