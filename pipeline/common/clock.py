"""A wall clock that leaves out the spells its process was stopped.

A long study shares its machine: it is stopped (SIGSTOP, Ctrl-Z) while a
benchmark has the cores, and its virtual machine may be suspended. Time read
from `time.perf_counter` counts those hours as training. A watcher thread
wakes every `tick` seconds; a wake that comes more than `stop_after` seconds
late, in a gap in which the process used less CPU time than the gap, was a
stop (a stopped process runs no thread), and the time it used no CPU is left
out. A long computation that holds the GIL delays the watcher too, but uses
CPU all the while, so it is not taken for a stop.
"""

from __future__ import annotations

import threading
import time


class RunningClock:
    """`now()`: seconds of `time.perf_counter` less the stops seen so far.
    Use it as a context manager (the watcher runs inside the `with`)."""

    def __init__(self, tick: float = 0.1, stop_after: float = 1.0):
        self.tick, self.stop_after = tick, stop_after
        self.stopped = 0.0
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="softloss-clock", daemon=True)

    def __enter__(self):
        self._watcher.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._watcher.join()

    def now(self) -> float:
        return time.perf_counter() - self.stopped  # one writer, the watcher

    def _watch(self):
        last = time.perf_counter(), time.process_time()
        while not self._done.wait(self.tick):
            now = time.perf_counter(), time.process_time()
            self.stopped += self.stop_in(now[0] - last[0], now[1] - last[1])
            last = now

    def stop_in(self, wall, cpu):
        """The seconds of a stop in a gap of `wall` seconds between two wakes
        in which the process used `cpu` seconds of CPU time: none unless the
        wake came more than `stop_after` late; then the lateness less the CPU used."""
        late = wall - self.tick
        return max(0.0, late - cpu) if late > self.stop_after else 0.0
