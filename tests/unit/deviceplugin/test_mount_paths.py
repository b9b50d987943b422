"""Allocate's mounts never cover, nor sit under, what the operator's pod template mounts.

On a real node the kubelet applies Allocate's mounts to the replica's containers. A
mount at /var/run/kubetee (which is /run/kubetee in Debian-based images) covered the
secrets volume at /run/kubetee/secrets and runc refused to start every replica. KWOK
starts no container, so only this comparison of paths can see it before a real node.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from enclave_runtime.runtime.settings import DEFAULT_QUOTING_SOCKET as RUNTIME_DEFAULT
from kubetee.api.v1alpha1 import EnclaveContainerSpec, EPCPoolSpec
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.node_services import quoting_socket
from kubetee.controller.deployment import Owner, Placement, build_deployment
from kubetee.controller.sidecar import RuntimeSettings
from kubetee.deviceplugin.allocation import NodeContext, epc_response
from kubetee.deviceplugin.constants import DEFAULT_QUOTING_SOCKET, POD_RESERVED_DIR
from kubetee.deviceplugin.errors import ConfigurationError
from kubetee.deviceplugin.settings import DevicePluginSettings, container_view, load_settings
from tests.unit.controller.builders import pool_spec

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = REPO_ROOT / "deploy" / "examples" / "enclavecontainer.yaml"
CHART_VALUES = REPO_ROOT / "charts" / "kubetee" / "values.yaml"
KIND_VALUES = REPO_ROOT / "deploy" / "kind" / "values.yaml"


def _example_spec() -> dict[str, Any]:
    documents = yaml.safe_load_all(EXAMPLE.read_text())
    (ec,) = [d for d in documents if d and d["kind"] == "EnclaveContainer"]
    spec: dict[str, Any] = ec["spec"]
    return spec


def _pod_mount_paths() -> set[PurePosixPath]:
    """Every mountPath of every container of the replicas' pod template (example EC)."""
    placement = Placement.of_pool("sgx", EPCPoolSpec.model_validate(pool_spec()))
    deployment = build_deployment(
        Owner("default", "demo", "uid"),
        EnclaveContainerSpec.model_validate(_example_spec()),
        placement,
        RuntimeSettings(image="kubetee/kubetee:test", attestation_url="https://kbs:8443"),
    )
    pod = deployment["spec"]["template"]["spec"]
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    paths = {
        PurePosixPath(container_view(Path(mount["mountPath"])))
        for container in containers
        for mount in container.get("volumeMounts") or []
    }
    assert paths, "the pod template mounts nothing: the comparison would prove nothing"
    return paths


def _chart_socket(values_file: Path) -> Path | None:
    values = yaml.safe_load(values_file.read_text()) or {}
    directory = (values.get("devicePlugin") or {}).get("quotingSocketDir")
    return None if directory is None else Path(directory.rstrip("/")) / "quoting.sock"


def _sockets(tmp_path: Path) -> dict[str, Path]:
    """The quoting socket each way of running the device plugin uses by default."""
    layout = ClusterLayout.for_name("mounts", tmp_path / "cluster")
    sockets = {
        "device plugin default": DevicePluginSettings(node_name="n").quoting_socket,
        "local cluster": quoting_socket(layout, "kwok-node-0"),
    }
    for name, values in (("chart default", CHART_VALUES), ("kind values", KIND_VALUES)):
        socket = _chart_socket(values)
        if socket is not None:
            sockets[name] = socket
    return sockets


def _overlaps(a: PurePosixPath, b: PurePosixPath) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def test_no_allocate_mount_covers_or_sits_under_a_pod_template_mount(tmp_path: Path) -> None:
    pod_paths = _pod_mount_paths()
    # The enclave container's private directory is among them (what the old default hid).
    assert PurePosixPath("/run/kubetee/enclave") in pod_paths
    sockets = _sockets(tmp_path)
    assert "chart default" in sockets
    for source, socket in sockets.items():
        answer = epc_response(NodeContext("n", socket), ["epc-0"])
        assert answer.mounts, source
        for mount in answer.mounts:
            allocated = PurePosixPath(container_view(Path(mount.container_path)))
            clashes = [str(p) for p in pod_paths if _overlaps(allocated, p)]
            assert not clashes, f"{source}: Allocate mounts {allocated} over {clashes}"
            assert not _overlaps(allocated, PurePosixPath(POD_RESERVED_DIR)), source


def test_the_comparison_catches_the_old_default() -> None:
    old = epc_response(NodeContext("n", Path("/var/run/kubetee/quoting.sock")), ["epc-0"])
    (mount,) = old.mounts
    allocated = PurePosixPath(container_view(Path(mount.container_path)))
    assert any(_overlaps(allocated, p) for p in _pod_mount_paths())


def test_runtime_and_plugin_agree_on_the_default_socket() -> None:
    assert RUNTIME_DEFAULT == DEFAULT_QUOTING_SOCKET
    assert _chart_socket(CHART_VALUES) == DEFAULT_QUOTING_SOCKET


@pytest.mark.parametrize(
    "socket",
    [
        "/var/run/kubetee/quoting.sock",
        "/run/kubetee/quoting.sock",
        "/run/kubetee/secrets/quoting.sock",
        "/run/quoting.sock",
        "/var/run/quoting.sock",
        "/quoting.sock",
    ],
)
def test_a_socket_directory_over_the_pod_paths_is_refused(socket: str) -> None:
    with pytest.raises(ConfigurationError, match=r"--quoting-socket / KUBETEE_QUOTING_SOCKET"):
        load_settings(node_name="n", quoting_socket=Path(socket))


@pytest.mark.parametrize(
    "socket", ["/var/run/kubetee-quoting/quoting.sock", "/run/kubetee-node/quoting/q.sock"]
)
def test_a_socket_directory_of_its_own_is_accepted(socket: str) -> None:
    assert load_settings(node_name="n", quoting_socket=Path(socket)).quoting_socket == Path(socket)
