"""A restarted node agent adopts the sidecars its predecessor left running."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client as k8s

from kubetee.nodeagent import pod_runtimes
from kubetee.nodeagent.adoption import (
    AdoptedProcess,
    SidecarRecord,
    record_path,
    start_ticks,
    stop_left_running,
)
from kubetee.nodeagent.pod_runtimes import PodRuntimes
from tests.unit.nodeagent.test_pod_runtimes import FakeCore, FakePlugin

KEY = ("uid-1", "kubetee-runtime")


@pytest.fixture
def workdir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pods-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def long_running(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sidecars run a process that stays up (the real runtime would need a cluster)."""
    script = workdir / "sidecar.sh"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    monkeypatch.setattr(pod_runtimes, "sys", SimpleNamespace(executable=str(script)))


def agent(workdir: Path, core: FakeCore) -> tuple[PodRuntimes, FakePlugin]:
    """A freshly started agent: new plugin connections, nothing in memory."""
    epc = FakePlugin(4, {"KUBETEE_QUOTING_SOCKET": "/q.sock"})
    enclave = FakePlugin(2, {})
    runtimes = PodRuntimes(
        "node-1",
        k8s.ApiClient(),
        {"kubetee.io/epc": epc, "kubetee.io/enclave": enclave},  # type: ignore[dict-item]
        workdir / "pods",
        backoff_seconds=(0.1, 1.0),
    )
    runtimes._core = core  # type: ignore[assignment]
    return runtimes, epc


def alive(pid: int) -> bool:
    return start_ticks(pid) is not None


async def first_agent(workdir: Path, core: FakeCore) -> tuple[PodRuntimes, int]:
    """An agent that started the pod's sidecar, and the sidecar's pid."""
    first, _ = agent(workdir, core)
    await first.sync_once()
    process = first.sidecars[KEY].process
    assert process is not None
    return first, process.pid


@pytest.mark.usefixtures("long_running")
async def test_a_sidecar_left_running_is_adopted_not_started_twice(workdir: Path) -> None:
    core = FakeCore()
    first, pid = await first_agent(workdir, core)
    original = first.sidecars[KEY]
    secret = original.filesystem.memory_dir / "secrets" / "db"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("delivered")  # what the runtime received after attesting

    # The agent is killed -9: nothing of it runs its cleanup. A new one starts.
    second, epc = agent(workdir, core)
    await second.sync_once()

    adopted = second.sidecars[KEY]
    assert isinstance(adopted.process, AdoptedProcess)
    assert adopted.process.pid == pid
    assert adopted.allocations == original.allocations  # it keeps its devices
    assert adopted.env["KUBETEE_QUOTING_SOCKET"] == "/q.sock"  # and its plugins' answers
    assert epc.allocated == []  # nothing allocated a second time
    assert secret.read_text() == "delivered"  # its volumes were not laid out afresh

    # It dies: the agent restarts it after the back-off, as a container of its own.
    os.kill(pid, signal.SIGKILL)
    await first.sidecars[KEY].process.wait()  # type: ignore[union-attr]  # reaps it
    await asyncio.sleep(0.05)
    await second.sync_once()
    await asyncio.sleep(0.15)
    await second.sync_once()
    restarted = second.sidecars[KEY].process
    assert isinstance(restarted, asyncio.subprocess.Process)
    assert restarted.pid != pid
    assert alive(restarted.pid)
    record = SidecarRecord.load(record_path(adopted.filesystem.pod_dir, KEY[1]))
    assert record is not None
    assert record.pid == restarted.pid

    # The pod is deleted: its adopted-then-restarted sidecar stops as any other.
    core.pods = []
    await second.sync_once()
    assert not alive(restarted.pid)
    assert not record_path(adopted.filesystem.pod_dir, KEY[1]).exists()


@pytest.mark.usefixtures("long_running")
async def test_sidecars_of_pods_gone_while_the_agent_was_down_are_stopped(workdir: Path) -> None:
    core = FakeCore()
    first, pid = await first_agent(workdir, core)
    sidecar = first.sidecars[KEY]
    assert sidecar.process is not None
    waiting = asyncio.ensure_future(sidecar.process.wait())  # reaps it when stopped

    core.pods = []  # deleted while no agent ran
    second, _ = agent(workdir, core)
    await second.sync_once()

    await asyncio.wait_for(waiting, 10)
    assert not alive(pid)
    assert not sidecar.filesystem.root.exists()
    assert not record_path(sidecar.filesystem.pod_dir, KEY[1]).exists()
    assert second.sidecars == {}


async def test_a_record_whose_pid_was_reused_is_neither_adopted_nor_signalled(
    workdir: Path,
) -> None:
    """The kernel may give a dead sidecar's pid to another process: the start time tells."""
    pod_dir = workdir / "pods" / "shop_payments-1_uid-1"
    pod_dir.mkdir(parents=True)
    ticks = start_ticks(os.getpid())
    assert ticks is not None
    stale = SidecarRecord("node-1", "uid-1", "kubetee-runtime", os.getpid(), ticks + 1)
    stale.save(pod_dir)
    assert not stale.running()

    core = FakeCore()
    core.pods = []
    runtimes, _ = agent(workdir, core)
    await runtimes.sync_once()  # would SIGTERM this very test process if it trusted the pid

    assert not record_path(pod_dir, "kubetee-runtime").exists()


def test_another_nodes_or_an_unreadable_record_is_not_adopted(workdir: Path) -> None:
    pod_dir = workdir / "pods" / "p"
    pod_dir.mkdir(parents=True)
    record_path(pod_dir, "kubetee-runtime").write_text("{not json")
    assert SidecarRecord.load(record_path(pod_dir, "kubetee-runtime")) is None
    ticks = start_ticks(os.getpid())
    assert ticks is not None
    SidecarRecord("node-2", "uid-1", "kubetee-runtime", os.getpid(), ticks).save(pod_dir)
    runtimes, _ = agent(workdir, FakeCore())
    assert runtimes._running_record(pod_dir, "uid-1", "kubetee-runtime") is None


def test_a_node_going_away_stops_the_sidecars_a_dead_agent_left(workdir: Path) -> None:
    pod_dir = workdir / "pods" / "shop_payments-1_uid-1"
    pod_dir.mkdir(parents=True)
    # Ignores SIGTERM, as a stuck process would: it must still be stopped.
    left = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    assert left.stdout is not None
    assert left.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
    ticks = start_ticks(left.pid)
    assert ticks is not None
    SidecarRecord("node-1", "uid-1", "kubetee-runtime", left.pid, ticks).save(pod_dir)

    assert stop_left_running(workdir / "pods", grace_seconds=0.5) == 1
    assert left.wait(timeout=10) == -signal.SIGKILL
    left.stdout.close()
    assert stop_left_running(workdir / "pods") == 0  # nothing left the second time
