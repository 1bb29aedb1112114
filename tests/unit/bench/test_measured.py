"""The bench counts a process's context switches over all its threads, not its main thread's alone."""

import threading
import time

import psutil

from orderflow_bench.measured import tree_context_switches

SWITCHES = 200


def test_a_worker_threads_context_switches_count() -> None:
    """The worker sleeps SWITCHES times (each a voluntary switch) while the main thread waits once."""
    slept, finish = threading.Event(), threading.Event()

    def worker() -> None:
        for _ in range(SWITCHES):
            time.sleep(0.0001)
        slept.set()
        finish.wait()

    me = psutil.Process()
    before = tree_context_switches(me)
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert slept.wait(10)
        counted = tree_context_switches(me) - before  # the worker still lives: its count is there
    finally:
        finish.set()
        thread.join()
    assert counted >= SWITCHES
