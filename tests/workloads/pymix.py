"""Python workload with threads, a generator, asyncio and a C-extension callback
(``sorted(key=...)``), for argv[1] seconds after sleeping argv[2] seconds
(or until the file it names exists). Each thread spins in its own named function."""
import asyncio
import sys
import threading
import time

WARM_UP = sys.argv[2] if len(sys.argv) > 2 else '0'
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
END = 0.0


def spin(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def key_fn(v):
    spin(200)
    return -v


def sorter():
    while time.time() < END:
        sorted(range(200), key=key_fn)


def numbers():
    while True:
        spin(2000)
        yield 1


def generator_consumer():
    for _ in numbers():
        if time.time() > END:
            break


async def coro_leaf():
    spin(3000)
    await asyncio.sleep(0)


async def coro_main():
    while time.time() < END:
        await coro_leaf()


def asyncio_thread():
    asyncio.run(coro_main())


def sleeper():
    while time.time() < END:
        time.sleep(0.05)


def warm_up():
    """Sleep WARM_UP seconds, or until the file WARM_UP names exists (a test's start signal)."""
    try:
        time.sleep(float(WARM_UP))
    except ValueError:
        import os

        while not os.path.exists(WARM_UP):
            time.sleep(0.01)


def main():
    global END
    warm_up()
    END = time.time() + SECONDS
    threads = [threading.Thread(target=f, name=f.__name__) for f in (generator_consumer, asyncio_thread, sleeper)]
    for t in threads:
        t.start()
    sorter()
    for t in threads:
        t.join()


if __name__ == '__main__':
    main()
