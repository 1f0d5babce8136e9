"""Python workload with threads, a generator, asyncio and a C-extension callback
(``sorted(key=...)``), for argv[1] seconds after sleeping argv[2] seconds. Each thread spins in its own named function."""
import asyncio
import sys
import threading
import time

WARM_UP = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
END = time.time() + WARM_UP + (float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)


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


def main():
    time.sleep(WARM_UP)
    threads = [threading.Thread(target=f, name=f.__name__) for f in (generator_consumer, asyncio_thread, sleeper)]
    for t in threads:
        t.start()
    sorter()
    for t in threads:
        t.join()


if __name__ == '__main__':
    main()
