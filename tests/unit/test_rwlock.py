"""The store's readers-writer lock: writers are preferred, except that readers may pass a writer
that waits behind a long reader (a calibration), and the writer still goes first once it ends."""

from __future__ import annotations

import threading
import time

from mrl_retrievers.store.local.rwlock import ReadWriteLock


def _started(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def _reader(lock: ReadWriteLock, entered: list, name: str, long: bool = False):
    def read():
        with lock.read(long=long):
            entered.append(name)
    return read


def test_a_waiting_writer_stops_new_readers():
    lock, entered = ReadWriteLock(), []
    lock.acquire_read()  # a search in flight
    writer = _started(lambda: (lock.acquire_write(), entered.append("writer"), lock.release_write()))
    assert _wait_for(lambda: lock._writers_waiting == 1)
    reader = _started(_reader(lock, entered, "reader"))
    time.sleep(0.05)
    assert entered == []  # the new reader queues behind the writer
    lock.release_read()
    writer.join(5)
    reader.join(5)
    assert entered == ["writer", "reader"]


def test_readers_pass_a_writer_waiting_behind_a_long_reader_and_the_writer_goes_next():
    lock, entered = ReadWriteLock(), []
    lock.acquire_read(long=True)  # a calibration
    writer = _started(lambda: (lock.acquire_write(), entered.append("writer"), lock.release_write()))
    assert _wait_for(lambda: lock._writers_waiting == 1)
    _started(_reader(lock, entered, "search 1")).join(5)
    assert entered == ["search 1"]  # passed the waiting writer
    lock.acquire_read()  # a search still in flight when the calibration ends
    lock.release_read(long=True)
    late = _started(_reader(lock, entered, "search 2"))
    time.sleep(0.05)
    assert entered == ["search 1"]  # no long reader any more: writers first again
    lock.release_read()
    writer.join(5)
    late.join(5)
    assert entered == ["search 1", "writer", "search 2"]


def test_a_long_reader_waits_for_a_waiting_writer_like_any_reader():
    lock, entered = ReadWriteLock(), []
    lock.acquire_read()
    writer = _started(lambda: (lock.acquire_write(), entered.append("writer"), lock.release_write()))
    assert _wait_for(lambda: lock._writers_waiting == 1)
    calibration = _started(_reader(lock, entered, "calibration", long=True))
    time.sleep(0.05)
    assert entered == []
    lock.release_read()
    writer.join(5)
    calibration.join(5)
    assert entered == ["writer", "calibration"]
