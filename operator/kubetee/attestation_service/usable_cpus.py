"""How many CPUs this process can keep busy: its CPU affinity, bounded by its cgroup's
CPU limit.

A container's ``resources.limits.cpu`` is a CFS quota on its cgroup, which the affinity
(every CPU of the node) does not show: a worker per CPU of the affinity would then run
far more processes than the quota lets run, each throttled. The limit is read as the
kernel applies it, the smallest quota on the way from this process's cgroup up to the
hierarchy's root, in cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_ESCAPED = re.compile(r"\\([0-7]{3})")  # mountinfo writes a space as \040


@dataclass(frozen=True)
class _Hierarchy:
    """A mounted cgroup hierarchy that controls CPU: where it is and which cgroup is ours."""

    version: int  # 1 or 2
    mount_point: Path
    mount_root: PurePosixPath  # the cgroup the mount shows at its mount point
    cgroup: PurePosixPath  # this process's cgroup in the hierarchy

    def directories(self) -> list[Path]:
        """This process's cgroup directory and its parents up to the mount point."""
        try:
            below = self.cgroup.relative_to(self.mount_root)
        except ValueError:  # ours is outside what is mounted: only the mount's own applies
            below = PurePosixPath()
        parts = below.parts
        return [self.mount_point.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def usable_cpus(proc: Path = Path("/proc"), root: Path = Path("/")) -> int:
    """Whole CPUs this process may use, at least one: its affinity, or fewer when its
    cgroup's CPU limit is lower (a limit of 1.5 CPUs keeps one process busy, not two)."""
    affinity = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(proc, root)
    if limit is None:
        return affinity
    return max(1, min(affinity, math.floor(limit)))


def cgroup_cpu_limit(proc: Path = Path("/proc"), root: Path = Path("/")) -> float | None:
    """CPUs the cgroup CPU quota allows this process (quota / period), the smallest on
    the way to the root; ``None`` when there is none or it cannot be read."""
    try:
        memberships = (proc / "self" / "cgroup").read_text()
        mounts = (proc / "self" / "mountinfo").read_text()
    except OSError:
        return None
    limits = [
        limit
        for hierarchy in _cpu_hierarchies(memberships, mounts, root)
        for directory in hierarchy.directories()
        if (limit := _limit_in(directory, hierarchy.version)) is not None
    ]
    return min(limits, default=None)


def _cpu_hierarchies(memberships: str, mounts: str, root: Path) -> list[_Hierarchy]:
    """The mounted hierarchies with the CPU controller (or v2's unified one) and this
    process's cgroup in each."""
    v1_cgroup: PurePosixPath | None = None
    v2_cgroup: PurePosixPath | None = None
    for line in memberships.splitlines():
        # Each line: hierarchy ID, controllers, path, separated by ":"; v2 has ID 0 and no
        # controllers.
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        if fields[0] == "0" and not fields[1]:
            v2_cgroup = PurePosixPath(fields[2])
        elif "cpu" in fields[1].split(","):
            v1_cgroup = PurePosixPath(fields[2])
    hierarchies = []
    for line in mounts.splitlines():
        # Fields: ID, parent, major:minor, root, mount point, options, optional ones, then
        # after " - ": the type, the source and the super options.
        before, separator, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not separator or len(fields) < 5 or len(tail) < 3:
            continue
        mount_root = PurePosixPath(_unescaped(fields[3]))
        mount_point = root / _unescaped(fields[4]).lstrip("/")
        if tail[0] == "cgroup2" and v2_cgroup is not None:
            hierarchies.append(_Hierarchy(2, mount_point, mount_root, v2_cgroup))
        elif tail[0] == "cgroup" and v1_cgroup is not None and "cpu" in tail[2].split(","):
            hierarchies.append(_Hierarchy(1, mount_point, mount_root, v1_cgroup))
    return hierarchies


def _limit_in(directory: Path, version: int) -> float | None:
    """The CPU limit one cgroup directory sets (None: none, or nothing readable)."""
    try:
        if version == 2:
            quota, period = (directory / "cpu.max").read_text().split()
            if quota == "max":
                return None
        else:
            quota = (directory / "cpu.cfs_quota_us").read_text().strip()
            period = (directory / "cpu.cfs_period_us").read_text().strip()
        quota_us, period_us = int(quota), int(period)
    except (OSError, ValueError):
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for no limit
        return None
    return quota_us / period_us


def _unescaped(field: str) -> str:
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 8)), field)
