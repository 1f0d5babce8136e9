"""Python workload with known functions: a 3:1 split between ``heavy`` and ``light`` under a
recursion of ``descend`` argv[2] deep (default 5), run for argv[1] seconds after sleeping argv[3]
seconds, or until the file it names exists (a profiler learns of a process at its first sample). Runs on CPython 3.6+."""
import sys
import time

DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 5
WARM_UP = sys.argv[3] if len(sys.argv) > 3 else '0'


def spin(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def heavy():
    return spin(30000)


def light():
    return spin(10000)


def descend(depth):
    if depth > 0:
        return descend(depth - 1)
    heavy()
    light()
    return 0


class Worker:
    def run(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            descend(DEPTH)


def warm_up():
    """Sleep WARM_UP seconds, or until the file WARM_UP names exists (a test's start signal).
    While it waits for the file, another thread keeps a CPU partly busy, so that a profiler samples
    the process (and learns of it, at its first sample) before the program starts: the program's
    samples then all come from a process the profiler knows. The program runs on the main thread."""
    try:
        time.sleep(float(WARM_UP))
    except ValueError:
        import os
        import threading

        done = threading.Event()

        def keep_busy():
            while not done.is_set():
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
    Worker().run(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)


if __name__ == '__main__':
    main()
