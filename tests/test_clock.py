"""pipeline.common.clock: the spells a process was stopped are left out."""

import json
import signal
import subprocess
import sys
import time

import pytest

from pipeline.common.clock import RunningClock

CHILD = """
import json, time
from pipeline.common.clock import RunningClock
with RunningClock() as clock:
    wall, start = time.perf_counter(), clock.now()
    print("ready", flush=True)
    while clock.now() - start < {seconds}:
        sum(range(10_000))  # busy, as training is
    print(json.dumps([time.perf_counter() - wall, clock.now() - start, clock.stopped]), flush=True)
"""


@pytest.mark.parametrize(
    "wall, cpu, stop",
    [
        (0.1, 0.1, 0.0),  # on time, busy
        (0.1, 0.0, 0.0),  # on time, idle
        (0.9, 0.0, 0.0),  # late, but not by more than stop_after: a slow wake, not a stop
        (3.1, 0.0, 3.0),  # late by 3 s with no CPU used: stopped 3 s
        (3.1, 1.0, 2.0),  # of which 1 s computing (before or after the stop)
        (3.1, 3.0, 0.0),  # a call that held the interpreter: late, but computing all along
        (3.1, 3.5, 0.0),  # more CPU than wall time (several threads): no stop
    ],
)
def test_a_late_wake_counts_as_a_stop_only_for_the_time_without_cpu(wall, cpu, stop):
    assert RunningClock(tick=0.1, stop_after=1.0).stop_in(wall, cpu) == pytest.approx(stop)


def test_a_stopped_child_leaves_its_stop_out_and_keeps_its_running_time():
    """A real SIGSTOP of 3 s in a busy child's 4 s: the child's clock reaches 4 s
    of running time (its loop says so) and counts most of the stop as a stop;
    how much of the 3 s, a loaded machine's scheduling may shift."""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(seconds=4.0)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    process.send_signal(signal.SIGSTOP)
    time.sleep(3.0)
    process.send_signal(signal.SIGCONT)
    out, _ = process.communicate(timeout=120)
    wall, running, stopped = json.loads(out)
    assert running >= 4.0 and stopped >= 1.5 and wall - running == pytest.approx(stopped, abs=1e-3)


def test_the_watcher_ends_with_the_clock():
    with RunningClock(tick=0.01) as clock:
        assert clock._watcher.is_alive() and clock.now() > 0
    assert not clock._watcher.is_alive()
