"""Python workload with known functions: a 3:1 split between ``heavy`` and ``light`` under a
recursion of ``descend`` argv[2] deep (default 5), run for argv[1] seconds after sleeping argv[3]
seconds, or until the file it names exists (a profiler learns of a process at its first sample). Runs on CPython 3.6+.

argv[1] is wall-clock seconds, or CPU seconds of the main thread with a ``cpu`` suffix (``6cpu``): then
a profiler sampling the CPU clock at F Hz takes about 6 * F samples of the program however loaded the
host is (the tests that check shares at 2 points need that many).

The split is exact: ``heavy`` calls the same ``spin(N)`` three times, ``light`` once. (``spin(30000)``
against ``spin(10000)`` is not 3:1: the sum outgrows one 30-bit digit after ~1,500 iterations in both,
so the cheap iterations are a larger part of the light call: heavy measured 76.5-77.0% of CPU time
on 3.13 and Debian's 3.11, 75.0 +- 0.3 now; docs/benchmarks.md, "Session 8").)"""
import sys
import time

DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 5
WARM_UP = sys.argv[3] if len(sys.argv) > 3 else '0'
N = 10000


def spin(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def heavy():
    return spin(N) + spin(N) + spin(N)


def light():
    return spin(N)


def descend(depth):
    if depth > 0:
        return descend(depth - 1)
    heavy()
    light()
    return 0


class Worker:
    def run(self, seconds):
        if not seconds.endswith('cpu'):
            end = time.time() + float(seconds)
            while time.time() < end:
                descend(DEPTH)
            return
        # CPU time: this thread's clock (3.7+), read once every 256 rounds (~0.4-0.8 s), not at
        # each: the thread's clock is a system call, and on Linux 6.6+ reading it can end the task's
        # time slice (update_curr -> resched), so on a busy host the process was preempted and waited
        # right there (py-spy, which samples the wall clock, saw `run` alone in 10-26% of its
        # samples); and even the vDSO's clock_gettime drew 0.8% of py-spy's samples on this VM.
        clock = getattr(time, 'thread_time', time.process_time)
        end = clock() + float(seconds[:-3])
        while clock() < end:
            for _ in range(256):
                descend(DEPTH)


def warm_up():
    """Sleep WARM_UP seconds, or until the file WARM_UP names exists (a test's start signal).
    While it waits for the file, another thread keeps a CPU partly busy, so that a profiler samples
    the process (and learns of it, at its first sample) before the program starts: the program's
    samples then all come from a process the profiler knows. The program runs on the main thread.
    The busy thread also stops once the file WARM_UP + '.idle' exists: a test that runs its workloads
    one after the other lets the waiting ones go idle once the profiler knows them."""
    try:
        time.sleep(float(WARM_UP))
    except ValueError:
        import os
        import threading

        done = threading.Event()

        idle = WARM_UP + '.idle'

        def keep_busy():
            while not done.is_set() and not os.path.exists(idle):
                end = time.time() + 0.002
                while time.time() < end:
                    pass
                time.sleep(0.002)

        t = threading.Thread(target=keep_busy, daemon=True)
        t.start()
        while not os.path.exists(WARM_UP):
            time.sleep(0.01)
        done.set()
        t.join()


def main():
    warm_up()
    Worker().run(sys.argv[1] if len(sys.argv) > 1 else '5')


if __name__ == '__main__':
    main()
