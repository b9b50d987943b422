"""Running pods' kubetee sidecars locally: volumes, environment, process lifecycle."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes import client as k8s

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.nodeagent.pod_filesystem import PodFilesystem, field_value
from kubetee.nodeagent.pod_runtimes import PodRuntimes, _local_sidecars

DATA = {
    ("configmap", "shop", "enclave"): {"app.py": "print(1)\n"},
    ("secret", "shop", "tls"): {"ca": "PEM"},
}
APP_ITEM = {"key": "app.py", "path": "app.py"}
FILES = {"sources": [{"configMap": {"name": "enclave", "items": [APP_ITEM]}}]}
ANNOTATIONS_ITEM = {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
ENV = [
    {"name": "KUBETEE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "PLAIN", "value": "x"},
    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "enclave", "key": "app.py"}}},
]


def pod(annotations: dict[str, str] | None = None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "namespace": "shop",
        "name": "payments-1",
        "uid": "uid-1",
        "labels": {"app": "payments"},
        "annotations": annotations or {"b": "2", "a": "1"},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    return {
        "metadata": metadata,
        "spec": {
            "nodeName": "node-1",
            "volumes": [
                {"name": "secrets", "emptyDir": {"medium": "Memory"}},
                {
                    "name": "files",
                    "projected": FILES,
                },
                {"name": "ca", "secret": {"secretName": "tls"}},
                {"name": "podinfo", "downwardAPI": {"items": [ANNOTATIONS_ITEM]}},
            ],
            "initContainers": [
                {
                    "name": "kubetee-runtime",
                    "restartPolicy": "Always",
                    "command": ["kubetee", "runtime", "probe", "--attested"],
                    "env": ENV,
                    "resources": {"limits": {"kubetee.io/epc": "2", "kubetee.io/enclave": "1"}},
                    "volumeMounts": [
                        {"name": "secrets", "mountPath": "/run/kubetee/secrets"},
                        {"name": "files", "mountPath": "/run/kubetee/enclave-files"},
                        {"name": "ca", "mountPath": "/run/kubetee/ca"},
                        {"name": "podinfo", "mountPath": "/run/kubetee/podinfo"},
                    ],
                },
                {"name": "setup", "command": ["kubetee", "other"]},
            ],
            "containers": [{"name": "app", "image": "busybox"}],
        },
    }  # fmt: skip


def read(kind: str, namespace: str, name: str) -> dict[str, str] | None:
    return DATA.get((kind, namespace, name))


@pytest.fixture
def workdir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pods-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_downward_api_fields() -> None:
    body = pod()
    assert field_value(body, "metadata.annotations") == 'a="1"\nb="2"\n'
    assert field_value(body, "metadata.labels['app']") == "payments"
    assert field_value(body, "metadata.uid") == "uid-1"
    assert field_value(body, "spec.nodeName") == "node-1"


def test_volumes_are_laid_out_at_their_mount_paths(workdir: Path) -> None:
    body = pod()
    container = body["spec"]["initContainers"][0]
    host_quoting = workdir / "quoting"
    host_quoting.mkdir()
    filesystem = PodFilesystem(workdir / "pod", workdir / "memory")

    filesystem.lay_out(body, container, read, {"/var/run/kubetee-quoting": str(host_quoting)})

    root = filesystem.root
    assert (root / "run/kubetee/enclave-files/app.py").read_text() == "print(1)\n"
    ca = root / "run/kubetee/ca/ca"
    assert ca.read_text() == "PEM"
    assert stat.S_IMODE(ca.stat().st_mode) == 0o400
    assert (root / "run/kubetee/podinfo/annotations").read_text() == 'a="1"\nb="2"\n'
    assert (root / "var/run/kubetee-quoting").resolve() == host_quoting.resolve()
    assert (root / "run/kubetee/secrets").resolve().is_dir()

    filesystem.refresh_downward_api(pod({"kubetee.io/reattest-requested": "p2@1"}))
    assert 'reattest-requested="p2@1"' in (root / "run/kubetee/podinfo/annotations").read_text()

    filesystem.remove()
    assert not root.exists()
    assert filesystem.pod_dir.exists()


class FakeCore:
    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = [pod()]

    def list_pod_for_all_namespaces(self, **_: Any) -> Any:
        return SimpleNamespace(data=json.dumps({"items": self.pods}).encode())

    def read_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> Any:
        return SimpleNamespace(data=json.dumps({"data": DATA[("configmap", namespace, name)]}))

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> Any:
        data = DATA[("secret", namespace, name)]
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return SimpleNamespace(data=json.dumps({"data": encoded}))


class FakePlugin:
    def __init__(self, devices: int, envs: dict[str, str]) -> None:
        self.devices = {f"d-{i}": "Healthy" for i in range(devices)}
        self.envs = envs
        self.allocated: list[list[str]] = []

    async def allocate(self, containers: list[list[str]]) -> pb.AllocateResponse:
        self.allocated.extend(list(ids) for ids in containers)
        return pb.AllocateResponse(
            container_responses=[pb.ContainerAllocateResponse(envs=self.envs)]
        )


async def test_sidecar_runs_with_the_pod_environment_and_stops_with_the_pod(workdir: Path) -> None:
    epc = FakePlugin(4, {"KUBETEE_QUOTING_SOCKET": "/var/run/kubetee/q.sock"})
    enclave = FakePlugin(2, {"KUBETEE_ENCLAVE_SLOTS": "enclave-0"})
    runtimes = PodRuntimes(
        "node-1",
        k8s.ApiClient(),
        {"kubetee.io/epc": epc, "kubetee.io/enclave": enclave},  # type: ignore[dict-item]
        workdir,
        backoff_seconds=(0.2, 1.0),
    )
    fake = FakeCore()
    runtimes._core = fake  # type: ignore[assignment]

    await runtimes.sync_once()

    assert list(runtimes.sidecars) == [("uid-1", "kubetee-runtime")]
    sidecar = runtimes.sidecars[("uid-1", "kubetee-runtime")]
    assert epc.allocated == [["d-0", "d-1"]]
    assert enclave.allocated == [["d-0"]]
    assert sidecar.env["KUBETEE_POD_NAME"] == "payments-1"
    assert sidecar.env["PLAIN"] == "x"
    assert sidecar.env["FROM_CM"] == "print(1)\n"
    assert sidecar.env["KUBETEE_QUOTING_SOCKET"] == "/var/run/kubetee/q.sock"
    assert sidecar.env["KUBETEE_ROOT"] == str(sidecar.filesystem.root)
    assert sidecar.argv[-3:] == ["runtime", "probe", "--attested"]
    assert sidecar.process is not None
    assert await sidecar.process.wait() == 1  # not attested: the probe fails
    assert "not attested yet" in sidecar.log_path.read_text()

    await asyncio.sleep(0.3)
    first = sidecar.process
    await runtimes.sync_once()  # notices the exit, schedules a restart after back-off
    await asyncio.sleep(0.3)
    await runtimes.sync_once()
    assert sidecar.process is not None
    assert sidecar.process is not first

    fake.pods = [pod(deleting=True)]
    await runtimes.sync_once()
    assert runtimes.sidecars == {}
    assert not sidecar.filesystem.root.exists()


def test_enclave_container_runs_locally_and_its_bundle_keeps_binary_data(workdir: Path) -> None:
    sigstruct = bytes(range(256)) * 7  # binary: not UTF-8
    body = pod()
    body["spec"]["volumes"].append({"name": "bundle", "configMap": {"name": "bundle"}})
    enclave = {
        "name": "kubetee-enclave",
        "command": ["kubetee", "enclave", "run", "--bundle", "/run/kubetee/enclave-bundle"],
        "volumeMounts": [{"name": "bundle", "mountPath": "/run/kubetee/enclave-bundle"}],
    }
    body["spec"]["containers"].append(enclave)
    runtimes = PodRuntimes("node-1", k8s.ApiClient(), {}, workdir)

    class Core(FakeCore):
        def read_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> Any:
            document = {
                "data": {"enclave.manifest.json": "{}"},
                "binaryData": {"enclave.sig": base64.b64encode(sigstruct).decode()},
            }
            return SimpleNamespace(data=json.dumps(document))

    runtimes._core = Core()  # type: ignore[assignment]
    filesystem = PodFilesystem(workdir / "pod", workdir / "memory")
    filesystem.lay_out(body, enclave, runtimes._read_object, {})

    mounted = filesystem.root / "run/kubetee/enclave-bundle"
    assert (mounted / "enclave.sig").read_bytes() == sigstruct
    assert (mounted / "enclave.manifest.json").read_text() == "{}"
    names = [c["name"] for c in _local_sidecars(body)]
    assert names == ["kubetee-runtime", "kubetee-enclave"]  # not "app" nor "setup"


async def test_an_apiserver_outage_keeps_sidecars_and_their_volumes(workdir: Path) -> None:
    """Transport errors (the apiserver restarting) neither end the agent nor stop a
    sidecar: its delivered secrets must survive an outage."""
    epc = FakePlugin(4, {})
    enclave = FakePlugin(2, {})

    class FlakyCore(FakeCore):
        calls = 0

        def list_pod_for_all_namespaces(self, **kwargs: Any) -> Any:
            self.calls += 1
            if 2 <= self.calls <= 5:  # the apiserver is away for four looks
                raise urllib3.exceptions.MaxRetryError(None, "/api/v1/pods", "refused")  # type: ignore[arg-type]
            if self.calls > 8:
                stop.set()
            return super().list_pod_for_all_namespaces(**kwargs)

    runtimes = PodRuntimes(
        "node-1",
        k8s.ApiClient(),
        {"kubetee.io/epc": epc, "kubetee.io/enclave": enclave},  # type: ignore[dict-item]
        workdir,
        poll_seconds=0.01,
        retry_seconds=(0.01, 0.02),
    )
    core = FlakyCore()
    runtimes._core = core  # type: ignore[assignment]
    stopped: list[tuple[str, str]] = []
    real_stop = runtimes._stop

    async def record_stop(key: tuple[str, str]) -> None:
        stopped.append(key)
        await real_stop(key)

    runtimes._stop = record_stop  # type: ignore[method-assign]
    stop = asyncio.Event()

    await asyncio.wait_for(runtimes.run(stop), timeout=10)

    assert core.calls > 5  # it went on after the outage
    assert epc.allocated == [["d-0", "d-1"]]  # allocated once: the sidecar was kept
    assert stopped == [("uid-1", "kubetee-runtime")]  # only by the final stop
