"""End-to-end fixtures: one real local cluster per test session, a namespace per test.

The session starts its own cluster (named ``e2e-<pid>``, in a temporary work directory,
on free ports) and tears it down at the end. To reuse a running local cluster instead,
point ``KUBETEE_E2E_KUBECONFIG`` (or ``KUBECONFIG``, when its server is on 127.0.0.1)
at its kubeconfig.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetee.cluster.cluster import LocalCluster
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.toolchain import binary_path

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class E2ECluster:
    """What a test needs to talk to the session's cluster."""

    kubeconfig: Path
    api: client.ApiClient
    layout: ClusterLayout | None  # None when reusing a cluster we did not start

    def local_layout(self) -> ClusterLayout:
        """The `kubetee cluster up` cluster behind the kubeconfig (also when reused)."""
        if self.layout is not None:
            return self.layout
        workdir = self.kubeconfig.resolve().parent
        state = workdir / "cluster.json"
        if not state.is_file():
            pytest.fail(
                f"{self.kubeconfig} is not in the work directory of a `kubetee cluster up` "
                "cluster; this test needs the cluster's local files (node sockets, PKI)"
            )
        return ClusterLayout.for_name(json.loads(state.read_text())["name"], workdir)

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; failures show its stderr."""
        result = subprocess.run(
            [
                str(binary_path("kubectl")),
                f"--kubeconfig={self.kubeconfig}",
                # Its own discovery cache: kubectl keys the shared one by host:port, and
                # a later cluster on the same port would read another cluster's.
                f"--cache-dir={self.kubeconfig.parent / '.kube-cache'}",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            input=input_text,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result


def _reusable_kubeconfig() -> Path | None:
    explicit = os.environ.get("KUBETEE_E2E_KUBECONFIG")
    if explicit:
        return Path(explicit)
    candidate = os.environ.get("KUBECONFIG")
    if candidate and Path(candidate).is_file():
        servers = [
            c["cluster"]["server"]
            for c in yaml.safe_load(Path(candidate).read_text()).get("clusters", [])
        ]
        if servers and all("://127.0.0.1:" in s for s in servers):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ECluster]:
    reuse = _reusable_kubeconfig()
    if reuse is not None:
        yield E2ECluster(reuse, config.new_client_from_config(str(reuse)), None)
        return
    workdir = tmp_path_factory.mktemp("cluster")
    layout = ClusterLayout.for_name(f"e2e-{os.getpid()}", workdir)
    local = LocalCluster(layout, out=sys.stderr)
    try:
        local.up(nodes=3)
        yield E2ECluster(
            layout.kubeconfig, config.new_client_from_config(str(layout.kubeconfig)), layout
        )
    finally:
        local.down()


@pytest.fixture
def namespace(cluster: E2ECluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": name, "labels": {"kubetee.io/e2e": "true"}}})
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def eventually(check: Callable[[], T | None], within: float = 60.0, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {within}s (last value: {last!r})")
