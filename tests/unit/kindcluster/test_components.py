"""The kind components: what they build, and cgo only where a program needs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetee.cluster.toolchain import KUBERNETES, Builder, Component
from kubetee.kindcluster.components import FLANNEL, KIND_COMPONENTS, KUBERNETES_NODE

# Stands in for `go`: answers `go mod download -json` and writes CGO_ENABLED as the binary.
FAKE_GO = """\
#!/bin/sh
case "$1" in
mod) printf '{"GoMod": "%s"}' "$FAKE_GOMOD" ;;
build) while [ "$1" != "-o" ]; do shift; done; echo "CGO_ENABLED=$CGO_ENABLED" > "$2" ;;
esac
"""


def test_node_components_come_from_the_control_planes_kubernetes_release() -> None:
    assert KUBERNETES_NODE.module == KUBERNETES.module
    assert KUBERNETES_NODE.version == KUBERNETES.version
    assert set(KUBERNETES_NODE.binaries) == {"kubelet", "kubeadm", "kube-proxy"}
    # a separate wrapper module: building it never rewrites the control plane's go.mod
    assert KUBERNETES_NODE.name != KUBERNETES.name


def test_only_flannel_needs_cgo() -> None:
    assert [c.name for c in KIND_COMPONENTS if c.cgo] == [FLANNEL.name]


def test_cgo_is_enabled_for_that_component_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    go_mod = tmp_path / "release.mod"
    go_mod.write_text("module example.com/x\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_GOMOD", str(go_mod))
    monkeypatch.setenv("KUBETEE_CACHE_DIR", str(tmp_path / "cache"))
    with_cgo = Component("c", "example.com/c", "v1", {"c": "example.com/c"}, cgo=True)
    without = Component("g", "example.com/g", "v1", {"g": "example.com/g"})
    Builder().ensure([with_cgo, without])
    assert with_cgo.binary("c").read_text() == "CGO_ENABLED=1\n"
    assert without.binary("g").read_text() == "CGO_ENABLED=0\n"
