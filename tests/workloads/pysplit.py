"""Python workload with known functions: a 3:1 split between ``heavy`` and ``light`` under a
fixed-depth recursion, run for argv[1] seconds. Works on CPython 3.6+ (no f-strings past 3.6)."""
import sys
import time


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
            descend(5)


def main():
    Worker().run(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)


if __name__ == '__main__':
    main()
