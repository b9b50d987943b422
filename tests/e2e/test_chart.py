"""The Helm chart on the real local cluster: server-side dry runs of every documented
option, install, upgrade, test, uninstall, and the operator at work with the chart's RBAC.

What the simulated nodes can and cannot show: KWOK runs no containers. Pods of the
chart's Deployments and DaemonSet are bound by the real scheduler and marked Running and
Ready by KWOK without running any code, so ``helm install --wait`` proves the objects are
accepted and schedulable, not that the processes start. The ``helm test`` hook is a Job:
KWOK completes pods owned by a Job (its ``pod-complete`` stage; a bare pod with
``restartPolicy: Never`` would stay Running forever and ``helm test`` would time out),
the real Job controller then marks the Job complete, and ``helm test`` passes. That
proves the hook's wiring, not the script: the script itself runs here as a local
process, against the real apiserver with a token of a ServiceAccount that has no RBAC
(as the test Job's), and in the unit tests against the attestation service started with
the chart's arguments. The operator runs here as a local process with the chart
operator's ServiceAccount token, so the apiserver enforces exactly the chart's RBAC.

The APIService is only dry-run, never installed: its Service would point at a pod that
KWOK does not run, and an unavailable aggregated API stalls namespace deletion and
discovery for every other test.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.cluster.toolchain import KUBERNETES_VERSION, binary_path
from tests.e2e.conftest import REPO_ROOT, E2ECluster
from tests.e2e.operator_support import (
    OperatorProcess,
    condition,
    enclave_container,
    epc_pool,
    install_crds,
    wait_for,
)

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "kubetee"
SCENARIOS = REPO_ROOT / "tests" / "unit" / "chart" / "scenarios"
SCRIPT = CHART / "files" / "helm-test.py"
CRDS = ("enclavecontainers.kubetee.io", "epcpools.kubetee.io")
HELM_OWNERSHIP_ANNOTATIONS = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")
# Kinds that need what the local cluster cannot have (see the module docstring).
NOT_DRY_RUN = {"ServiceMonitor"}  # its CRD is not available offline: checked structurally
NOT_INSTALLED = ("--set", "metricsAPIServer.apiService=false")


def helm(
    cluster: E2ECluster, *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(binary_path("helm")), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def render(cluster: E2ECluster, namespace: str, *options: str) -> list[dict[str, Any]]:
    text = helm(
        cluster,
        "template",
        "kt",
        str(CHART),
        f"--namespace={namespace}",
        f"--kube-version={KUBERNETES_VERSION}",
        *options,
    ).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def _ensure_namespaces(cluster: E2ECluster, names: set[str]) -> list[str]:
    """Create the namespaces a scenario names (waiting out an earlier one's deletion)."""
    core = client.CoreV1Api(cluster.api)
    created = []
    for name in sorted(names):

        def create(name: str = name) -> bool:
            try:
                core.create_namespace(
                    {"metadata": {"name": name, "labels": {"kubetee.io/e2e": "true"}}}
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                try:
                    return core.read_namespace(name).status.phase != "Terminating"
                except ApiException as gone:  # deleted meanwhile: create it on the next try
                    if gone.status != 404:
                        raise
                    return False
            created.append(name)
            return True

        wait_for(f"namespace {name} to be usable", create, timeout=120)
    return created


@pytest.mark.parametrize("scenario", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_server_side_dry_run_accepts_every_scenario(
    cluster: E2ECluster, namespace: str, scenario: Path
) -> None:
    manifests = render(cluster, namespace, "-f", str(scenario))
    checked = [m for m in manifests if m["kind"] not in NOT_DRY_RUN]
    namespaces = {m["metadata"]["namespace"] for m in checked if m["metadata"].get("namespace")}
    created = _ensure_namespaces(cluster, namespaces - {namespace, "kube-system"})
    try:
        result = cluster.kubectl(
            "apply",
            "--dry-run=server",
            "--server-side",
            "--field-manager=kubetee-chart-test",
            "--force-conflicts",
            "-f",
            "-",
            input_text=yaml.safe_dump_all(checked),
        )
    finally:
        for name in created:
            client.CoreV1Api(cluster.api).delete_namespace(name)
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(checked), result.stdout


def _crds(cluster: E2ECluster) -> dict[str, dict[str, Any]]:
    api = client.ApiextensionsV1Api(cluster.api)
    found = {}
    for name in CRDS:
        try:
            found[name] = api.read_custom_resource_definition(name).to_dict()
        except ApiException as exc:
            if exc.status != 404:
                raise
    return found


@pytest.fixture
def crds_for_helm(cluster: E2ECluster, namespace: str) -> Iterator[str]:
    """Let the release own CRDs that others applied with kubectl, and give them back after.

    The session's other tests apply crds/ with kubectl; Helm adopts existing objects only
    when they carry its ownership marks. Yields the release name.
    """
    release = f"kt-{uuid.uuid4().hex[:6]}"
    existing = _crds(cluster)
    for name in existing:
        cluster.kubectl(
            "annotate",
            "--overwrite",
            f"crd/{name}",
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )
        cluster.kubectl("label", "--overwrite", f"crd/{name}", "app.kubernetes.io/managed-by=Helm")
    try:
        yield release
    finally:
        helm(cluster, "uninstall", release, f"--namespace={namespace}", check=False)
        for name in existing:
            cluster.kubectl(
                "annotate",
                f"crd/{name}",
                *(f"{key}-" for key in (*HELM_OWNERSHIP_ANNOTATIONS, "helm.sh/resource-policy")),
                check=False,
            )


def _secret_data(cluster: E2ECluster, namespace: str, name: str) -> dict[str, str]:
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(name, namespace)
    return dict(secret.data or {})


def _release_objects(cluster: E2ECluster, release: str) -> list[str]:
    kinds = ",".join(
        (
            "deployments",
            "daemonsets",
            "services",
            "secrets",
            "serviceaccounts",
            "configmaps",
            "roles",
            "rolebindings",
            "poddisruptionbudgets",
            "jobs",
        )
    )
    found = cluster.kubectl(
        "get",
        kinds,
        "--all-namespaces",
        f"-l=app.kubernetes.io/instance={release}",
        "-o=name",
    ).stdout.split()
    cluster_scoped = cluster.kubectl(
        "get",
        "clusterroles,clusterrolebindings",
        f"-l=app.kubernetes.io/instance={release}",
        "-o=name",
    ).stdout.split()
    return found + cluster_scoped


def test_install_upgrade_test_uninstall(
    cluster: E2ECluster, namespace: str, crds_for_helm: str
) -> None:
    release = crds_for_helm
    common = (f"--namespace={namespace}", *NOT_INSTALLED)
    install = helm(cluster, "install", release, str(CHART), *common, "--wait", "--timeout=180s")
    assert "helm test" in install.stdout  # NOTES.txt tells the next step
    apps = client.AppsV1Api(cluster.api)
    names = {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items}
    assert names == {
        f"{release}-kubetee-{c}"
        for c in ("operator", "attestation", "pcs", "scheduler", "metrics-apiserver")
    }
    daemonset = apps.read_namespaced_daemon_set(f"{release}-kubetee-node", namespace)
    assert daemonset.status.number_ready == daemonset.status.desired_number_scheduled > 0
    assert set(_crds(cluster)) == set(CRDS)
    tls_before = _secret_data(cluster, namespace, f"{release}-kubetee-attestation-tls")
    session_before = _secret_data(cluster, namespace, f"{release}-kubetee-attestation-session")

    helm(
        cluster,
        "upgrade",
        release,
        str(CHART),
        *common,
        "--reuse-values",
        "--set=attestationService.replicas=3",
        "--wait",
        "--timeout=180s",
    )
    attestation = apps.read_namespaced_deployment(f"{release}-kubetee-attestation", namespace)
    assert attestation.spec.replicas == 3
    assert attestation.status.ready_replicas == 3
    # Generated once: an upgrade keeps the certificate runtimes trust and the session key.
    assert _secret_data(cluster, namespace, f"{release}-kubetee-attestation-tls") == tls_before
    assert (
        _secret_data(cluster, namespace, f"{release}-kubetee-attestation-session") == session_before
    )

    tested = helm(cluster, "test", release, f"--namespace={namespace}", "--timeout=120s")
    assert re.search(r"Phase:\s+Succeeded", tested.stdout), tested.stdout
    assert not client.BatchV1Api(cluster.api).list_namespaced_job(namespace).items  # hook-succeeded

    helm(cluster, "uninstall", release, f"--namespace={namespace}", "--wait", "--timeout=120s")
    assert _release_objects(cluster, release) == []
    kept = _crds(cluster)
    assert set(kept) == set(CRDS), "helm.sh/resource-policy: keep"
    for crd in kept.values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def _service_account_kubeconfig(
    cluster: E2ECluster, namespace: str, account: str, path: Path
) -> Path:
    token = cluster.kubectl("create", "token", account, f"--namespace={namespace}").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": server["cluster"]}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "local", "user": account}}],
                "current-context": "sa",
            }
        )
    )
    return path


def _cluster_ca(cluster: E2ECluster, directory: Path) -> Path:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    entry = config["clusters"][0]["cluster"]
    path = directory / "ca.crt"
    if "certificate-authority-data" in entry:
        path.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
    else:
        path.write_bytes(Path(entry["certificate-authority"]).read_bytes())
    return path


def test_helm_test_script_needs_no_rbac(
    cluster: E2ECluster, namespace: str, tmp_path: Path
) -> None:
    install_crds(cluster)
    # The default ServiceAccount of a fresh namespace has no permissions, like the test Job's.
    token = tmp_path / "token"
    token.write_text(
        cluster.kubectl("create", "token", "default", f"--namespace={namespace}").stdout.strip()
    )
    server = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KUBETEE_TEST_APISERVER": server,
        "KUBETEE_TEST_TOKEN_FILE": str(token),
        "KUBETEE_TEST_APISERVER_CA": str(_cluster_ca(cluster, tmp_path)),
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: kubetee.io/v1alpha1 serves enclavecontainers, epcpools" in result.stdout


@pytest.fixture
def chart_rbac(cluster: E2ECluster, namespace: str) -> Iterator[str]:
    """The chart with only its operator, installed with Helm; yields the ServiceAccount."""
    install_crds(cluster)
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    helm(
        cluster,
        "install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--set=crds.enabled=false",
        "--set=attestationService.enabled=false",
        "--set=devicePlugin.enabled=false",
        "--set=scheduler.enabled=false",
        "--set=metricsAPIServer.enabled=false",
        "--set=tests.enabled=false",
        "--wait",
    )
    try:
        yield f"{release}-kubetee-operator"
    finally:
        helm(cluster, "uninstall", release, f"--namespace={namespace}", check=False)


def test_operator_works_with_exactly_the_charts_rbac(
    cluster: E2ECluster, namespace: str, chart_rbac: str, tmp_path: Path
) -> None:
    apps = client.AppsV1Api(cluster.api)
    # The chart's operator Deployment runs nothing under KWOK: the real operator runs here,
    # authenticated as the chart's operator ServiceAccount.
    kubeconfig = _service_account_kubeconfig(cluster, namespace, chart_rbac, tmp_path / "sa")
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log")
    pool_name = f"chart-{uuid.uuid4().hex[:6]}"
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_cluster_custom_object("kubetee.io", "v1alpha1", "epcpools", epc_pool(pool_name))
    operator.start()
    try:
        custom.create_namespaced_custom_object(
            "kubetee.io",
            "v1alpha1",
            namespace,
            "enclavecontainers",
            enclave_container("rbac", 1, pool=pool_name),
        )
        deployment = wait_for(
            "the operator's Deployment (server-side apply: patch + create)",
            lambda: _read_deployment(apps, namespace, "rbac"),
            operator=operator,
        )
        assert deployment.spec.replicas == 1
        wait_for(
            "the EnclaveContainer's status (patch enclavecontainers/status)",
            lambda: condition(
                custom.get_namespaced_custom_object(
                    "kubetee.io", "v1alpha1", namespace, "enclavecontainers", "rbac"
                ),
                "Scheduled",
            ),
            operator=operator,
        )
        wait_for(
            "the EPCPool's status (patch epcpools/status)",
            lambda: (
                custom.get_cluster_custom_object(
                    "kubetee.io", "v1alpha1", "epcpools", pool_name
                ).get("status")
                or {}
            ).get("observedGeneration"),
            operator=operator,
        )
    finally:
        operator.kill(signal.SIGTERM)
        custom.delete_cluster_custom_object("kubetee.io", "v1alpha1", "epcpools", pool_name)
    log = (tmp_path / "operator.log").read_text(errors="replace")
    assert "403" not in log, log[-3000:]
    assert "forbidden" not in log.lower(), log[-3000:]


def _read_deployment(apps: client.AppsV1Api, namespace: str, name: str) -> Any:
    try:
        return apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_chart_objects_carry_no_secret_in_plain_sight(cluster: E2ECluster, namespace: str) -> None:
    # ConfigMaps are readable more widely than Secrets: no key material may land in one.
    for manifest in render(cluster, namespace):
        if manifest["kind"] == "ConfigMap":
            text = json.dumps(manifest)
            assert "PRIVATE KEY" not in text, manifest["metadata"]["name"]
