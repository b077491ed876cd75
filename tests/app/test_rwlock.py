"""The service's readers-writer lock, including the probe's non-waiting read."""

from __future__ import annotations

import threading

from spaner.app.rwlock import RWLock


def test_try_read_reads_beside_readers_and_refuses_at_once_while_a_writer_holds() -> None:
    lock = RWLock()
    with lock.read(), lock.try_read() as got:
        assert got  # readers share
    entered, release, done = threading.Event(), threading.Event(), threading.Event()

    def write() -> None:
        with lock.write():
            entered.set()
            release.wait(30)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    assert entered.wait(30)
    with lock.try_read() as got:
        assert not got  # no waiting: the writer still holds the lock
    release.set()
    t.join(30)
    assert done.is_set()
    with lock.try_read() as got:
        assert got
    with lock.write():  # a refused try_read left no reader behind
        pass


def test_try_read_yields_to_a_waiting_writer() -> None:
    lock = RWLock()
    wrote = threading.Event()
    with lock.read():

        def write() -> None:
            with lock.write():
                wrote.set()

        t = threading.Thread(target=write)
        t.start()
        while not lock._writers_waiting:  # the writer's own progress, not a clock
            threading.Event().wait(0.001)
        with lock.try_read() as got:
            assert not got  # a waiting writer is not starved by probes
    t.join(30)
    assert wrote.is_set()
