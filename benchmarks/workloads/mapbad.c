/* Maps a (corrupted, ELF-looking) file PROT_EXEC, several times at different offsets, then
 * spins in its own valid code so that its samples' mappings include the bad file.
 * Usage: mapbad FILE [SECONDS] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void spin_here(void) { for (int i = 0; i < 100000; i++) sink += i; }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    double seconds = argc > 2 ? atof(argv[2]) : 10;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    off_t size = lseek(fd, 0, SEEK_END);
    long page = sysconf(_SC_PAGESIZE);
    for (off_t off = 0; off < size && off < 4 * page; off += page) {
        void *p = mmap(NULL, page, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, off);
        if (p == MAP_FAILED) perror("mmap");
    }
    if (size < page) {
        void *p = mmap(NULL, page, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) perror("mmap");
    }
    printf("mapped\n");
    fflush(stdout);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        spin_here();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    return 0;
}
