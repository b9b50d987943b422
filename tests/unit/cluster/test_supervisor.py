"""The local cluster's supervisor: a dead or hung process is started again, as recorded."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.processes import ManagedProcess, reap_children, stopped_by_down
from kubetee.cluster.supervisor import LIVENESS_FAILURES, Supervisor

SLEEPER = ["sleep", "60"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[ClusterLayout]:
    layout = ClusterLayout.for_name("sup", tmp_path)
    yield layout
    for path in layout.run_dir.glob("*.pid"):
        ManagedProcess(path.stem, layout.run_dir, layout.log_dir).stop(timeout=2)


def _gone(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        reap_children()
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.02)


def test_a_killed_process_is_started_again_with_its_arguments_and_environment(
    layout: ClusterLayout,
) -> None:
    process = ManagedProcess("kube-apiserver", layout.run_dir, layout.log_dir)
    first = process.start(SLEEPER, env={"KUBETEE_X": "1", "HOME": "/nowhere"})
    clock = Clock()
    supervisor = Supervisor(layout, clock=clock)
    assert supervisor.check_once() == []

    _gone(first)
    assert supervisor.check_once() == []  # waits its back-off first
    clock.now += 1.5
    assert supervisor.check_once() == ["kube-apiserver"]

    record = process.record()
    assert record is not None
    assert process.pid() not in {None, first}
    assert record["args"] == SLEEPER
    assert record["env"]["KUBETEE_X"] == "1"
    assert "HOME" not in record["env"]  # only what a restart needs is recorded


def test_back_off_grows_for_a_process_that_keeps_dying(layout: ClusterLayout) -> None:
    process = ManagedProcess("node-n1-device-plugin", layout.run_dir, layout.log_dir)
    process.start(SLEEPER)
    clock = Clock()
    supervisor = Supervisor(layout, clock=clock)
    waits = []
    for _ in range(3):
        pid = process.pid()
        assert pid is not None
        _gone(pid)
        waited = 0.0
        while not supervisor.check_once():
            clock.now += 0.5
            waited += 0.5
        waits.append(waited)
    assert waits[0] < waits[1] < waits[2]


def test_a_process_stopped_on_purpose_is_left_alone(layout: ClusterLayout) -> None:
    process = ManagedProcess("kubetee-operator", layout.run_dir, layout.log_dir)
    process.start(SLEEPER, env={"KUBETEE_METRICS_PORT": "0"})
    clock = Clock()
    supervisor = Supervisor(layout, clock=clock)
    supervisor.check_once()

    assert process.stop(timeout=2, keep_record=True)
    clock.now += 60
    assert supervisor.check_once() == []
    assert process.pid() is None
    # ...but `up` finds how to start it again after `down`.
    [(again, record)] = stopped_by_down(layout.run_dir, layout.log_dir)
    assert again.name == "kubetee-operator"
    assert record["env"] == {"KUBETEE_METRICS_PORT": "0"}


def test_a_hung_process_failing_its_liveness_probe_is_killed_and_restarted(
    layout: ClusterLayout,
) -> None:
    process = ManagedProcess("kubetee-operator", layout.run_dir, layout.log_dir)
    first = process.start(SLEEPER, liveness="http://127.0.0.1:9/healthz")
    os.kill(first, signal.SIGSTOP)
    clock = Clock()
    answers = {"ok": True}
    supervisor = Supervisor(layout, clock=clock, probe=lambda _url: answers["ok"])
    supervisor.check_once()
    answers["ok"] = False
    restarted: list[str] = []
    for _ in range(LIVENESS_FAILURES * 4):
        clock.now += 2.5
        restarted += supervisor.check_once()
        if restarted:
            break
    assert restarted == ["kubetee-operator"]
    assert process.pid() not in {None, first}
    assert (
        not Path(f"/proc/{first}").exists()
        or "State:\tZ" in Path(f"/proc/{first}/status").read_text()
    )


def test_a_process_still_starting_is_given_time_before_liveness_counts(
    layout: ClusterLayout,
) -> None:
    process = ManagedProcess("kubetee-operator", layout.run_dir, layout.log_dir)
    first = process.start(SLEEPER, liveness="http://127.0.0.1:9/healthz")
    clock = Clock()
    supervisor = Supervisor(layout, clock=clock, probe=lambda _url: False)
    for _ in range(30):  # 90 s of a slow start: never answered yet, not killed
        clock.now += 3
        assert supervisor.check_once() == []
    assert process.pid() == first
    restarted: list[str] = []
    for _ in range(40):  # past the startup allowance it counts as hung
        clock.now += 3
        restarted += supervisor.check_once()
    assert "kubetee-operator" in restarted
