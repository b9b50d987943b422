"""The second scheduler's configuration: the local cluster's KubeTEE profiles, accepted by
the real kube-scheduler, with a leader-election lock of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from kubetee.cluster.toolchain import KUBERNETES_VERSION, binary_path
from tests.unit.chart.conftest import CHART, NAMESPACE, REPO_ROOT, Manifest, find

LOCAL_CONFIG = REPO_ROOT / "deploy" / "cluster" / "scheduler-config.yaml"
KUBETEE_PROFILES = {"kubetee-binpack", "kubetee-spread"}


def _scheduler_config(manifests: list[Manifest]) -> dict[str, object]:
    config_map = next(
        cm
        for cm in find(manifests, "ConfigMap")
        if cm["metadata"]["labels"]["app.kubernetes.io/component"] == "scheduler"
    )
    config: dict[str, object] = yaml.safe_load(config_map["data"]["config.yaml"])
    return config


def test_profiles_equal_the_local_clusters(defaults: list[Manifest]) -> None:
    local = yaml.safe_load(LOCAL_CONFIG.read_text())
    expected = [p for p in local["profiles"] if p["schedulerName"] in KUBETEE_PROFILES]
    assert {p["schedulerName"] for p in expected} == KUBETEE_PROFILES
    assert yaml.safe_load((CHART / "files" / "scheduler-profiles.yaml").read_text()) == expected
    # The cluster's own scheduler keeps default-scheduler: two would race for every pod.
    assert _scheduler_config(defaults)["profiles"] == expected


def test_leader_election_uses_its_own_lease(defaults: list[Manifest]) -> None:
    election = _scheduler_config(defaults)["leaderElection"]
    assert election == {
        "leaderElect": True,
        "resourceName": "kt-kubetee-scheduler-leader",
        "resourceNamespace": NAMESPACE,
    }


_UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: unused}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def _load_with_kube_scheduler(
    config: dict[str, object], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run kube-scheduler --write-config-to: it loads, defaults and validates the
    configuration (building every profile's plugins), writes it and exits, before it
    contacts the apiserver. Outside a pod it needs some kubeconfig to get that far."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_UNREACHABLE_KUBECONFIG)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config, "clientConnection": {"kubeconfig": str(kubeconfig)}}))
    return subprocess.run(
        [
            str(binary_path("kube-scheduler")),
            f"--config={path}",
            f"--write-config-to={tmp_path / 'effective.yaml'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_real_kube_scheduler_accepts_the_config(defaults: list[Manifest], tmp_path: Path) -> None:
    result = _load_with_kube_scheduler(_scheduler_config(defaults), tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "effective.yaml"
    effective = yaml.safe_load(written.read_text())
    assert {p["schedulerName"] for p in effective["profiles"]} == KUBETEE_PROFILES


def test_real_kube_scheduler_rejects_a_broken_config(tmp_path: Path) -> None:
    # Proves the check above can fail: an unknown scoring strategy is refused.
    config = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["profiles"][1]["pluginConfig"][0]["args"]["scoringStrategy"]["type"] = "Random"
    result = _load_with_kube_scheduler(config, tmp_path)
    assert result.returncode != 0
    assert 'scoringStrategy.type: Unsupported value: \\"Random' in result.stderr


def test_image_matches_the_cluster_version(defaults: list[Manifest]) -> None:
    deployment = next(
        d
        for d in find(defaults, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "scheduler"
    )
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"registry.k8s.io/kube-scheduler:{KUBERNETES_VERSION}"
