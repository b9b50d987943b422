"""Fixtures for tests on a real kind cluster (`kubetee kind up`; needs a Docker engine).

The cluster named ``kubetee`` is created once (or reused if it exists) and left
running for the next session: creating it takes about a minute, building its node image
the first time much longer (docs/kind-cluster.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetee.kindcluster.cluster import DEFAULT_NAME, KindCluster, default_config


@dataclass(frozen=True)
class Kind:
    cluster: KindCluster

    def run_kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.cluster.kubectl), "--kubeconfig", str(self.cluster.paths.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        proc = self.run_kubectl(*args, stdin=stdin)
        if proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def docker_json(self, *args: str) -> Any:
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, check=True, timeout=60
        )
        return json.loads(proc.stdout)

    def node_exec(self, node: str, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            ["docker", "exec", "-i", node, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} on {node} failed: {proc.stderr}")
        return proc.stdout


@pytest.fixture(scope="session")
def kind() -> Kind:
    # KUBETEE_KIND_CLUSTER: another cluster than the default 'kubetee' (e.g. beside one
    # that someone else is using on the same Docker engine).
    cluster = KindCluster(os.environ.get("KUBETEE_KIND_CLUSTER", DEFAULT_NAME), out=sys.stderr)
    cluster.up(default_config())
    return Kind(cluster)


@pytest.fixture
def kind_namespace(kind: Kind) -> Iterator[str]:
    name = f"kind-e2e-{uuid.uuid4().hex[:8]}"
    kind.kubectl("create", "namespace", name)
    yield name
    kind.run_kubectl("delete", "namespace", name, "--wait=false")


def workers(kind: Kind) -> list[str]:
    nodes = kind.json("get", "nodes", "-l", "kubetee.io/sgx=true")["items"]
    return sorted(n["metadata"]["name"] for n in nodes)


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parents[2].joinpath(*parts)
