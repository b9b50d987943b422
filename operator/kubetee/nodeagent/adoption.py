"""Sidecars that outlive their node agent, found again when it restarts.

A kubelet that restarts finds its pods' containers still running in the container
runtime and carries on with them; it never starts a second copy. The node agent runs
sidecars as processes in their own sessions, so they survive the agent too (a
``kill -9``, a crash): each start is recorded next to the pod's files, and a restarted
agent adopts the process the record names instead of starting another one beside it,
which would attest again and hold a second set of delivered secrets.

A record names the process by pid *and* start time, so a pid the kernel has given to
another process since is never adopted or signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".sidecar.json"
UNKNOWN_EXIT_CODE = -1  # an adopted process is not our child: its exit code is lost


@dataclass(frozen=True)
class SidecarRecord:
    """What a restarted agent needs to adopt a running sidecar."""

    node: str
    pod_uid: str
    container: str
    pid: int
    start_ticks: int
    # The devices it holds, and what the device plugins' Allocate answered for them:
    # an adopted sidecar keeps its devices and is not allocated new ones.
    allocations: dict[str, list[str]] = field(default_factory=dict)
    plugin_env: dict[str, str] = field(default_factory=dict)
    plugin_mounts: dict[str, str] = field(default_factory=dict)

    def save(self, pod_dir: Path) -> None:
        path = record_path(pod_dir, self.container)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self)))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> SidecarRecord | None:
        """The record at ``path``; None when it is missing or unreadable (start afresh)."""
        try:
            document = json.loads(path.read_text())
            return cls(
                node=str(document["node"]),
                pod_uid=str(document["pod_uid"]),
                container=str(document["container"]),
                pid=int(document["pid"]),
                start_ticks=int(document["start_ticks"]),
                allocations={
                    str(k): [str(d) for d in v] for k, v in document["allocations"].items()
                },
                plugin_env={str(k): str(v) for k, v in document["plugin_env"].items()},
                plugin_mounts={str(k): str(v) for k, v in document["plugin_mounts"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def running(self) -> bool:
        return start_ticks(self.pid) == self.start_ticks


def record_path(pod_dir: Path, container: str) -> Path:
    return pod_dir / f"{container}{RECORD_SUFFIX}"


def records(pods_dir: Path) -> list[tuple[Path, SidecarRecord]]:
    """Every readable record under ``pods_dir`` (all nodes' pods may share it)."""
    found = []
    for path in sorted(pods_dir.glob(f"*/*{RECORD_SUFFIX}")):
        record = SidecarRecord.load(path)
        if record is not None:
            found.append((path, record))
    return found


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot); None if no live process has it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in {"Z", "X"}:  # exited, not yet reaped by its parent
        return None
    return int(fields[19])  # field 22 of proc(5)


class AdoptedProcess:
    """A running sidecar the agent did not start: signalled and awaited by pid."""

    def __init__(self, record: SidecarRecord) -> None:
        self._record = record
        self.pid = record.pid

    @property
    def returncode(self) -> int | None:
        return None if self._record.running() else UNKNOWN_EXIT_CODE

    def send_signal(self, signal_number: int) -> None:
        if self._record.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal_number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        """Until the process exits (a pidfd turns readable then, for any process)."""
        try:
            descriptor = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return UNKNOWN_EXIT_CODE
        try:
            if self._record.running():  # the pidfd holds this very process
                exited = asyncio.Event()
                loop = asyncio.get_running_loop()
                loop.add_reader(descriptor, exited.set)
                try:
                    await exited.wait()
                finally:
                    loop.remove_reader(descriptor)
        finally:
            os.close(descriptor)
        return UNKNOWN_EXIT_CODE


def stop_left_running(pods_dir: Path, grace_seconds: float = 5.0) -> int:
    """SIGTERM, then SIGKILL, the recorded sidecars still running under ``pods_dir``:
    for a node that is going away whose agent died before it could stop them."""
    running = [record for _, record in records(pods_dir) if record.running()]
    for record in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while any(r.running() for r in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for record in running:
        if record.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
    return len(running)
