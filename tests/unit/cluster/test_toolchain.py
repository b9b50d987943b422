"""The Go build plan: replace pins derived from a release's go.mod, and a missing Go."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetee.cli import main
from kubetee.cluster.errors import ClusterError
from kubetee.cluster.toolchain import HELM, KUBERNETES, Builder, local_replaces

KUBERNETES_GO_MOD = """\
module k8s.io/kubernetes

go 1.24.0

require (
	github.com/blang/semver/v4 v4.0.0
	k8s.io/api v0.0.0
	k8s.io/client-go v0.0.0 // indirect
)

require k8s.io/kubectl v0.0.0

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/kubectl => ./staging/src/k8s.io/kubectl
	github.com/example/forked => github.com/example/forked v1.2.3
)
"""

ETCD_GO_MOD = """\
module go.etcd.io/etcd/server/v3

require go.etcd.io/etcd/api/v3 v3.6.16

replace go.etcd.io/etcd/api/v3 => ../api

// Bad imports are sometimes causing attempts to pull that code.
replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_staging_replaces_become_pins_to_published_versions() -> None:
    pins = local_replaces(KUBERNETES_GO_MOD, KUBERNETES.sibling_version("v1.34.4"))
    assert pins == [
        "k8s.io/api => k8s.io/api v0.34.4",
        "k8s.io/client-go => k8s.io/client-go v0.34.4",
        "k8s.io/kubectl => k8s.io/kubectl v0.34.4",
    ]


def test_forbidden_local_replaces_of_unrequired_modules_are_dropped() -> None:
    assert local_replaces(ETCD_GO_MOD, "v3.6.16") == [
        "go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.16"
    ]


def test_missing_go_toolchain_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("KUBETEE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ClusterError, match="install Go"):
        Builder().ensure()


def test_cached_binaries_need_no_go_toolchain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("KUBETEE_CACHE_DIR", str(tmp_path / "cache"))
    for binary in KUBERNETES.binaries:
        KUBERNETES.binary(binary).parent.mkdir(parents=True, exist_ok=True)
        KUBERNETES.binary(binary).write_bytes(b"")
    Builder().ensure([KUBERNETES])  # nothing to build, so no Go needed


def test_cluster_up_without_go_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("KUBETEE_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["cluster", "--workdir", str(tmp_path / "work"), "up", "--nodes", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "'go') is not on PATH" in err
    assert "Traceback" not in err
    assert not (tmp_path / "work" / "cluster.json").exists()


@pytest.mark.parametrize("nodes", ["0", "-2", "three"])
def test_cluster_up_rejects_bad_node_counts(nodes: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["cluster", "up", "--nodes", nodes])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--nodes" in err
    assert ("at least 1" in err) or ("whole number" in err)


def test_helm_defaults_to_the_kubernetes_version_of_its_client_go() -> None:
    flags = HELM.ldflags("v3.22.0", "require (\n\tk8s.io/client-go v0.37.0\n)\n")
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" in flags
    assert "-X helm.sh/helm/v3/internal/version.version=v3.22.0" in flags
