"""--workers=0 counts the CPUs a container may use: its affinity bounded by its cgroup's
CPU limit, read from cgroup trees laid out as the kernel and container runtimes lay them
out (the kind suite checks a real pod's: one worker under the walkthrough's 1.5 CPUs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubetee.attestation_service.usable_cpus import cgroup_cpu_limit, usable_cpus

_CONTAINER = "/kubepods/burstable/pod1/c0ffee"


class _Machine:
    """A /proc and a root file system holding only what the cgroup look-up reads."""

    def __init__(self, base: Path) -> None:
        self.proc = base / "proc"
        self.root = base / "root"
        (self.proc / "self").mkdir(parents=True)
        self._mounts: list[str] = []

    def member_of(self, *lines: str) -> None:
        (self.proc / "self" / "cgroup").write_text("".join(f"{line}\n" for line in lines))

    def mount(
        self, fstype: str, mount_point: str, root: str = "/", super_options: str = "rw"
    ) -> None:
        number = 30 + len(self._mounts)
        self._mounts.append(
            f"{number} 25 0:{number} {root} {mount_point} rw,nosuid shared:9 - {fstype} "
            f"cgroup {super_options}\n"
        )
        (self.proc / "self" / "mountinfo").write_text("".join(self._mounts))

    def write(self, path: str, text: str) -> None:
        file = self.root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)

    def limit(self) -> float | None:
        return cgroup_cpu_limit(self.proc, self.root)

    def cpus(self) -> int:
        return usable_cpus(self.proc, self.root)


@pytest.fixture
def machine(tmp_path: Path) -> _Machine:
    return _Machine(tmp_path)


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))


def _v2_container(machine: _Machine, cpu_max: str) -> None:
    """A container in its own cgroup namespace (as containerd runs pods on cgroup v2):
    its cgroup is the mount's root."""
    machine.member_of("0::/")
    machine.mount("cgroup2", "/sys/fs/cgroup")
    machine.write("/sys/fs/cgroup/cpu.max", cpu_max)


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    ("cpu_max", "limit", "cpus"),
    [
        ("200000 100000\n", 2.0, 2),
        ("150000 100000\n", 1.5, 1),  # a worker per whole CPU: two would be throttled
        ("50000 100000\n", 0.5, 1),  # at least one
        ("2000000 100000\n", 20.0, 8),  # a limit above the affinity: the affinity
        ("max 100000\n", None, 8),  # no limit
    ],
)
def test_cgroup_v2_limit_bounds_the_affinity(
    machine: _Machine, cpu_max: str, limit: float | None, cpus: int
) -> None:
    _v2_container(machine, cpu_max)
    assert machine.limit() == limit
    assert machine.cpus() == cpus


@pytest.mark.usefixtures("eight_cpus")
def test_the_smallest_limit_on_the_way_to_the_root_applies(machine: _Machine) -> None:
    # Without a cgroup namespace the path is the host's; the pod's limit is the parent's.
    machine.member_of(f"0::{_CONTAINER}")
    machine.mount("cgroup2", "/sys/fs/cgroup")
    machine.write(f"/sys/fs/cgroup{_CONTAINER}/cpu.max", "max 100000\n")
    machine.write("/sys/fs/cgroup/kubepods/burstable/pod1/cpu.max", "300000 100000\n")
    machine.write("/sys/fs/cgroup/kubepods/cpu.max", "600000 100000\n")
    assert machine.limit() == 3.0
    assert machine.cpus() == 3


@pytest.mark.usefixtures("eight_cpus")
def test_cgroup_v1_cpu_controller_mounted_at_the_containers_own_cgroup(
    machine: _Machine,
) -> None:
    # Docker on cgroup v1 without a cgroup namespace: the path is the host's, and the
    # mount shows the container's cgroup at its mount point (mountinfo's root field).
    machine.member_of(
        f"4:memory:{_CONTAINER}",
        f"3:cpu,cpuacct:{_CONTAINER}",
        "0::/",
    )
    machine.mount("cgroup", "/sys/fs/cgroup/cpu,cpuacct", _CONTAINER, "rw,cpu,cpuacct")
    machine.mount("cgroup", "/sys/fs/cgroup/memory", _CONTAINER, "rw,memory")
    machine.mount("cgroup2", "/sys/fs/cgroup/unified")  # hybrid: no cpu controller there
    machine.write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n")
    machine.write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert machine.limit() == 2.5
    assert machine.cpus() == 2


@pytest.mark.usefixtures("eight_cpus")
def test_a_cgroup_outside_the_mount_reads_the_mounts_own_limit(machine: _Machine) -> None:
    # The mount shows another cgroup than ours (it was moved since): what is mounted counts.
    machine.member_of("0::/moved/elsewhere")
    machine.mount("cgroup2", "/sys/fs/cgroup", _CONTAINER)
    machine.write("/sys/fs/cgroup/cpu.max", "300000 100000\n")
    machine.write("/sys/fs/cgroup/moved/elsewhere/cpu.max", "100000 100000\n")  # not read
    assert machine.limit() == 3.0


@pytest.mark.usefixtures("eight_cpus")
def test_cgroup_v1_without_a_quota_is_no_limit(machine: _Machine) -> None:
    machine.member_of("1:cpu:/")
    machine.mount("cgroup", "/sys/fs/cgroup/cpu", "/", "rw,cpu")
    machine.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
    machine.write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
    assert machine.limit() is None
    assert machine.cpus() == 8


@pytest.mark.usefixtures("eight_cpus")
def test_a_mount_point_with_a_space_is_unescaped(machine: _Machine) -> None:
    machine.member_of("0::/")
    machine.mount("cgroup2", r"/sys/fs/my\040cgroups")
    machine.write("/sys/fs/my cgroups/cpu.max", "100000 100000\n")
    assert machine.cpus() == 1


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    "cpu_max",
    ["", "many 100000\n", "100000\n", "100000 0\n", "-5 100000\n", "1 2 3\n"],
)
def test_an_unreadable_limit_is_no_limit(machine: _Machine, cpu_max: str) -> None:
    _v2_container(machine, cpu_max)
    assert machine.limit() is None
    assert machine.cpus() == 8


@pytest.mark.usefixtures("eight_cpus")
def test_without_cgroup_files_the_affinity_counts(machine: _Machine) -> None:
    assert machine.limit() is None  # no /proc/self/cgroup at all
    machine.member_of("garbage", "1:cpu:relative", "0::/")
    (machine.proc / "self" / "mountinfo").write_text("one two\n - \n")
    assert machine.limit() is None
    assert machine.cpus() == 8


def test_this_machine_gives_at_least_one_and_at_most_its_affinity() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
