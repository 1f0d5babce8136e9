/* A libc call chain back into user code: main -> sort_round -> qsort (libc) -> ... -> compare -> weigh.
 * compare is slow on purpose so that most samples land in the callback under qsort. */
#include <stdlib.h>
#include <time.h>

#define N 2048

volatile unsigned long sink;
static int data[N];

__attribute__((noinline)) int weigh(int v) {
    unsigned long s = 0;
    for (int i = 0; i < 64; i++) s += (unsigned long)v * i;
    sink += s;
    return v;
}

__attribute__((noinline)) int compare(const void *a, const void *b) {
    int x = weigh(*(const int *)a), y = weigh(*(const int *)b);
    return (x > y) - (x < y);
}

__attribute__((noinline)) void sort_round(unsigned seed) {
    for (int i = 0; i < N; i++) data[i] = (int)((i * 2654435761u) ^ seed);
    qsort(data, N, sizeof(int), compare);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec t0, t;
    unsigned seed = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        sort_round(seed++);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    return 0;
}
