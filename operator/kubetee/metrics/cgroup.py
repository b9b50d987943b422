"""EPC in use, measured: the workload's memory in the container the runtime runs in.

On a real node the runtime is the enclave container's entrypoint and the workload runs
in its process tree, as with a LibOS (Gramine, Occlum) whose heap lives in EPC. So the
enclave's EPC in use is the container's anonymous memory (its heap: the cgroup's
``anon`` in cgroup v2, ``total_rss`` in v1), less the runtime's own (``RssAnon`` of
this process), capped at the enclave's size by the caller. Page cache is not counted:
files read are not heap.

The container's cgroup is found as the kernel names it in ``/proc/self/cgroup`` under
``/sys/fs/cgroup``; in a private cgroup namespace (v2) or runc's per-container mount
(v1) that path is absent and the mount's root is the container's own cgroup. A process
that is not in a container (the local cluster's runtimes) must not use this: its cgroup
is the user's session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF = Path("/proc/self")
_V2_STAT_KEY = "anon"
_V1_STAT_KEYS = ("total_rss", "rss")  # hierarchical first


@dataclass(frozen=True)
class CgroupMemory:
    """Reads the workload's anonymous memory from one cgroup's ``memory.stat``."""

    stat_file: Path
    keys: tuple[str, ...]
    proc_self: Path = PROC_SELF

    @classmethod
    def discover(
        cls, root: Path = CGROUP_ROOT, proc_self: Path | None = None
    ) -> CgroupMemory | None:
        """This process's memory cgroup, if it can be read; None otherwise."""
        proc_self = proc_self or PROC_SELF
        try:
            membership = (proc_self / "cgroup").read_text()
        except OSError:
            return None
        v2, v1 = _paths(membership)
        keys: tuple[str, ...]
        if v2 is not None and (root / "cgroup.controllers").is_file():
            candidates, keys = [root / v2, root], (_V2_STAT_KEY,)
        elif v1 is not None:
            candidates, keys = [root / "memory" / v1, root / "memory"], _V1_STAT_KEYS
        else:
            return None
        for directory in candidates:
            memory = cls(directory / "memory.stat", keys, proc_self)
            try:
                memory.container_bytes()
            except (OSError, ValueError):
                continue
            return memory
        return None

    def container_bytes(self) -> int:
        """Anonymous memory of every process of the container."""
        stat = _keyed(self.stat_file.read_text())
        for key in self.keys:
            if key in stat:
                return stat[key]
        raise ValueError(f"{self.stat_file} has none of {', '.join(self.keys)}")

    def own_bytes(self) -> int:
        """Anonymous memory of this process (the runtime itself is not the enclave's heap)."""
        for line in (self.proc_self / "status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "RssAnon":
                return int(value.split()[0]) * 1024
        return 0

    def used_bytes(self) -> int:
        """The workload's anonymous memory now (OSError/ValueError if unreadable)."""
        return max(0, self.container_bytes() - self.own_bytes())


def _paths(membership: str) -> tuple[str | None, str | None]:
    """(v2 path, v1 memory controller path) relative to their mounts, from /proc/self/cgroup."""
    v2: str | None = None
    v1: str | None = None
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":
            v2 = relative
        elif "memory" in controllers.split(","):
            v1 = relative
    return v2, v1


def _keyed(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values
