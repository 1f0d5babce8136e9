/* Fixed-work loop for overhead benchmarks: one chunk = a fixed amount of integer work.
 * Usage: spin COUNTER_FILE [SECONDS]
 * The cumulative number of chunks done is kept in an 8-byte shared mapping of COUNTER_FILE,
 * so a harness can read the throughput of any window (chunks / wall second) without pipes.
 * Runs until killed (or for SECONDS). Built with frame pointers: main;run;chunk. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

volatile uint64_t sink;

__attribute__((noinline)) void chunk(void) {
    uint64_t x = sink;
    for (int i = 0; i < 20000; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    sink = x;
}

__attribute__((noinline)) void run(volatile uint64_t *counter, double seconds) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        for (int i = 0; i < 64; i++) chunk();
        *counter += 64;
        if (seconds > 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds) return;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 4096) != 0) return 1;
    volatile uint64_t *counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (counter == MAP_FAILED) return 1;
    run(counter, argc > 2 ? atof(argv[2]) : 0);
    return 0;
}
