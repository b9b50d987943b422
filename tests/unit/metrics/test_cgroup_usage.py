"""EPC in use measured from the container's memory cgroup (v2 and v1), on fake cgroup
and /proc directories laid out as the kernel shows them inside a container."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kubetee.cluster.processes import free_port
from kubetee.metrics import names
from kubetee.metrics.cgroup import CgroupMemory
from kubetee.metrics.runtime import RuntimeMetricsSettings, measured_usage, start_runtime_metrics
from kubetee.metrics.usage import EnclaveUsage

from .conftest import scrape_url, value
from .test_runtime_metrics import _annotations

MIB = 1024 * 1024
SIZE = 64 * MIB
RUNTIME_ANON = 30 * MIB  # the runtime's own heap, never counted as the enclave's


def _proc(tmp_path: Path, membership: str, own_anon: int = RUNTIME_ANON) -> Path:
    proc = tmp_path / "proc-self"
    proc.mkdir()
    (proc / "cgroup").write_text(membership)
    (proc / "status").write_text(
        f"Name:\tkubetee\nVmRSS:\t{(own_anon + 20 * MIB) // 1024} kB\n"
        f"RssAnon:\t{own_anon // 1024} kB\nRssFile:\t{20 * MIB // 1024} kB\n"
    )
    return proc


def _v2(root: Path, anon: int, relative: str = "") -> Path:
    """A cgroup v2 mount; the container's cgroup at ``relative`` (its namespace root: "")."""
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    directory = root / relative
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "memory.current").write_text(f"{anon + 50 * MIB}\n")
    (directory / "memory.stat").write_text(f"anon {anon}\nfile {50 * MIB}\nshmem 0\n")
    return directory / "memory.stat"


def _v1(root: Path, total_rss: int) -> Path:
    """runc's v1 mount: the container's own memory cgroup at /sys/fs/cgroup/memory."""
    memory = root / "memory"
    memory.mkdir(parents=True)
    (memory / "memory.usage_in_bytes").write_text(f"{total_rss + 50 * MIB}\n")
    (memory / "memory.stat").write_text(
        f"cache {50 * MIB}\nrss {total_rss}\nrss_huge 0\ntotal_cache {50 * MIB}\n"
        f"total_rss {total_rss}\n"
    )
    return memory / "memory.stat"


def test_v2_in_a_private_cgroup_namespace_counts_the_workload_not_the_runtime(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cgroup"
    stat = _v2(root, anon=RUNTIME_ANON + 40 * MIB)
    memory = CgroupMemory.discover(root, _proc(tmp_path, "0::/\n"))

    assert memory is not None
    assert memory.stat_file == stat
    assert memory.used_bytes() == 40 * MIB


def test_v2_without_a_namespace_reads_the_path_the_kernel_names(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _v2(root, anon=999 * MIB)  # the host's root: not this container
    path = "kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope"
    stat = _v2(root, anon=RUNTIME_ANON + 8 * MIB, relative=path)
    memory = CgroupMemory.discover(root, _proc(tmp_path, f"0::/{path}\n"))

    assert memory is not None
    assert memory.stat_file == stat
    assert memory.used_bytes() == 8 * MIB


def test_v1_reads_the_memory_controller_of_runcs_mount(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    stat = _v1(root, total_rss=RUNTIME_ANON + 12 * MIB)
    membership = (
        "12:pids:/kubepods/besteffort/pod1/abc\n"
        "4:memory:/kubepods/besteffort/pod1/abc\n"
        "1:name=systemd:/kubepods/besteffort/pod1/abc\n"
        "0::/\n"
    )
    memory = CgroupMemory.discover(root, _proc(tmp_path, membership))

    assert memory is not None
    assert memory.stat_file == stat
    assert memory.used_bytes() == 12 * MIB


def test_nothing_to_read_means_no_measurement(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    assert CgroupMemory.discover(root, _proc(tmp_path, "0::/\n")) is None
    assert CgroupMemory.discover(root, tmp_path / "no-proc") is None


def test_the_measurement_is_capped_at_the_enclave_and_wins_over_the_annotation(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cgroup"
    stat = _v2(root, anon=RUNTIME_ANON + 16 * MIB)
    memory = CgroupMemory.discover(root, _proc(tmp_path, "0::/\n"))
    assert memory is not None
    podinfo = _annotations(tmp_path / "podinfo", **{names.SIMULATED_USAGE_ANNOTATION: "90%"})
    usage = EnclaveUsage(SIZE, podinfo_dir=podinfo, measure=memory.used_bytes)

    allocated = usage.used_bytes()
    stat.write_text(f"anon {RUNTIME_ANON + 200 * MIB}\n")
    beyond_the_enclave = usage.used_bytes()
    stat.write_text(f"anon {RUNTIME_ANON + 1 * MIB}\n")
    freed = usage.used_bytes()

    assert (allocated, beyond_the_enclave, freed) == (16 * MIB, SIZE, 1 * MIB)


def test_an_unreadable_cgroup_keeps_the_last_figure_and_counts(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    stat = _v2(root, anon=RUNTIME_ANON + 16 * MIB)
    memory = CgroupMemory.discover(root, _proc(tmp_path, "0::/\n"))
    assert memory is not None
    usage = EnclaveUsage(SIZE, measure=memory.used_bytes)
    assert usage.used_bytes() == 16 * MIB

    stat.unlink()
    assert usage.used_bytes() == 16 * MIB
    stat.write_text("file 5\n")  # no anon line: not a memory.stat to trust
    assert usage.used_bytes() == 16 * MIB
    assert usage.read_errors == 2


def test_auto_measures_in_a_container_and_takes_reports_outside_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cgroup"
    _v2(root, anon=RUNTIME_ANON)
    monkeypatch.setattr("kubetee.metrics.cgroup.PROC_SELF", _proc(tmp_path, "0::/\n"))

    in_container = RuntimeMetricsSettings(cgroup_root=root)
    local_cluster = RuntimeMetricsSettings(cgroup_root=root, root=tmp_path / "pod-root")
    forced_reports = RuntimeMetricsSettings(cgroup_root=root, epc_usage_source="reported")
    no_cgroup = RuntimeMetricsSettings(cgroup_root=tmp_path / "none")

    assert measured_usage(local_cluster) is None
    assert measured_usage(forced_reports) is None
    assert measured_usage(no_cgroup) is None
    assert measured_usage(in_container) is not None


def test_the_runtimes_endpoint_serves_the_measured_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: CollectorRegistry
) -> None:
    root = tmp_path / "cgroup"
    _v2(root, anon=RUNTIME_ANON + 48 * MIB)
    monkeypatch.setattr("kubetee.metrics.cgroup.PROC_SELF", _proc(tmp_path, "0::/\n"))
    podinfo = _annotations(tmp_path / "podinfo", **{names.SIMULATED_USAGE_ANNOTATION: "10%"})
    monkeypatch.delenv("KUBETEE_ROOT", raising=False)
    monkeypatch.setenv("KUBETEE_CGROUP_ROOT", str(root))
    monkeypatch.setenv("KUBETEE_PODINFO_DIR", str(podinfo))
    monkeypatch.setenv("KUBETEE_EPC_MIB", "64")
    monkeypatch.setenv("KUBETEE_METRICS_ADDRESS", "127.0.0.1")
    monkeypatch.setenv("KUBETEE_METRICS_PORT", str(free_port()))

    server = start_runtime_metrics("shop", "payments-1", "payments", registry=registry)
    assert server is not None
    try:
        _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()

    assert value(samples, names.ENCLAVE_EPC_USED_BYTES, pod="payments-1") == 48 * MIB
