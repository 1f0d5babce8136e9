/* Mostly off CPU: nap() sleeps 10 ms at a time, spin() burns a little in between. */
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) void nap(void) {
    struct timespec t = {0, 10 * 1000 * 1000};
    nanosleep(&t, NULL);
}

__attribute__((noinline)) void spin(void) { for (int i = 0; i < 200000; i++) sink += i; }

int main(int argc, char **argv) {
    time_t end = time(NULL) + (argc > 1 ? atoi(argv[1]) : 10);
    while (time(NULL) < end) {
        nap();
        spin();
    }
    return 0;
}
