"""A Python process that forks: the child spins in ``child_work``, the parent in ``parent_work``,
for argv[1] seconds once the file argv[2] exists."""
import os
import sys
import time


def spin(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def child_work(end):
    while time.time() < end:
        spin(10000)


def parent_work(end):
    while time.time() < end:
        spin(10000)


def main():
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    end = time.time() + float(sys.argv[1])
    pid = os.fork()
    if pid == 0:
        child_work(end)
        os._exit(0)
    parent_work(end)
    os.waitpid(pid, 0)


if __name__ == '__main__':
    main()
