"""pipeline.common.clock: the spells a process was stopped are left out."""
import json
import signal
import subprocess
import sys
import time

from pipeline.common.clock import RunningClock

CHILD = """
import json, time
from pipeline.common.clock import RunningClock
with RunningClock() as clock:
    wall, start = time.perf_counter(), clock.now()
    print("ready", flush=True)
    while clock.now() - start < {seconds}:
        sum(range(10_000))  # busy, as training is
    print(json.dumps([time.perf_counter() - wall, clock.now() - start]), flush=True)
"""


def _child(seconds):
    command = [sys.executable, "-c", CHILD.format(seconds=seconds)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def _result(process):
    out, _ = process.communicate(timeout=60)
    return json.loads(out)


def test_a_process_that_runs_throughout_counts_all_its_time():
    wall, running = _result(_child(1.5))
    assert wall >= 1.5 and abs(running - wall) < 0.05


def test_a_stopped_spell_is_left_out_and_the_rest_kept():
    process = _child(4.0)
    time.sleep(0.5)
    process.send_signal(signal.SIGSTOP)
    time.sleep(3.0)
    process.send_signal(signal.SIGCONT)
    wall, running = _result(process)
    # Busy for 4 s of its clock, stopped 3 s in between: 7 s of wall time.
    assert 4.0 <= running < 4.1 and 2.7 < wall - running < 3.3, (wall, running)


def test_the_watcher_ends_with_the_clock():
    with RunningClock(tick=0.01) as clock:
        assert clock._watcher.is_alive() and clock.now() > 0
    assert not clock._watcher.is_alive()


def test_a_computation_that_holds_the_interpreter_is_not_a_stop():
    """A C call that keeps the GIL longer than `stop_after` delays the watcher,
    but the process used CPU all along: it is not taken for a stop (what may be
    left out is the time the process waited for a core on a busy machine)."""
    with RunningClock(tick=0.02, stop_after=0.1) as clock:
        start, wall = clock.now(), time.perf_counter()
        for _ in range(3):
            sum(range(30_000_000))  # one C call, the GIL held throughout
        running, wall = clock.now() - start, time.perf_counter() - wall
    assert wall > 0.3 and clock.stopped < 0.1 * wall and abs(running - (wall - clock.stopped)) < 0.01
