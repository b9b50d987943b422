"""EPC metrics and autoscaling on the real local cluster.

The real kube-controller-manager's HPA (5s sync, 15s downscale stabilization) scales
an EnclaveContainer through its scale subresource on ``epc_utilization``, which the
custom metrics API server (an APIService behind the real kube-apiserver's
aggregation layer) scrapes from the replicas' enclave runtimes. The runtimes run as
local processes of the node agents; a pod annotation stands in for the workload's
EPC use (docs/metrics.md).
"""

from __future__ import annotations

import json
import math
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubetee.metrics import local, names
from kubetee.metrics.apiserver import manifests
from tests.e2e.attestation_support import (
    AttestingOperator,
    attestation_service,
    attesting_operator,
    pod_dir,
)
from tests.e2e.conftest import REPO_ROOT, E2ECluster
from tests.e2e.operator_support import Api, api, enclave_container, free_nodes, pools, wait_for

pytestmark = pytest.mark.e2e
__all__ = ["api", "attestation_service", "attesting_operator", "free_nodes", "pools"]

RAW = "/apis/custom.metrics.k8s.io/v1beta2"
EC_LABEL = "kubetee.io/enclave-container"
USAGE = names.SIMULATED_USAGE_ANNOTATION


def _server_address(api: Api) -> str:
    """Where the APIService sends the kube-apiserver (an ExternalName Service's port)."""
    registry = client.ApiregistrationV1Api(api.cluster.api)
    service = registry.read_api_service(manifests.api_service_name()).spec.service
    return f"127.0.0.1:{service.port}"


@pytest.fixture(scope="module")
def custom_metrics(cluster: E2ECluster) -> Iterator[None]:
    """The custom metrics API registered and Available (started here unless it runs)."""
    layout = cluster.local_layout()
    already = local.process(layout).pid() is not None
    local.start(layout)
    try:
        yield
    finally:
        if not already:
            local.stop(layout)


def _apply_ec(api: Api, namespace: str, name: str, replicas: int, pool: str) -> None:
    api.apply(enclave_container(name, replicas, epc="16Mi", pool=pool), namespace)


def _running_pods(api: Api, namespace: str, name: str, count: int) -> Callable[[], list | None]:
    def probe() -> list[client.V1Pod] | None:
        pods = [p for p in api.pods(namespace, name) if p.status.phase == "Running"]
        return pods if len(pods) == count else None

    return probe


def _annotate(cluster: E2ECluster, namespace: str, name: str, usage: str) -> None:
    cluster.kubectl(
        "annotate", "pods", "-n", namespace, "-l", f"{EC_LABEL}={name}", f"{USAGE}={usage}",
        "--overwrite",
    )  # fmt: skip


def _raw(cluster: E2ECluster, path: str) -> dict[str, Any]:
    result = cluster.kubectl("get", "--raw", path)
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _pod_values(cluster: E2ECluster, namespace: str, name: str, metric: str) -> dict[str, str]:
    selector = urllib.parse.quote(f"{EC_LABEL}={name}")
    body = _raw(cluster, f"{RAW}/namespaces/{namespace}/pods/*/{metric}?labelSelector={selector}")
    return {item["describedObject"]["name"]: item["value"] for item in body["items"]}


def _hpa(api: Api, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = api.cluster.api.sanitize_for_serialization(
        client.AutoscalingV2Api(api.cluster.api).read_namespaced_horizontal_pod_autoscaler(
            name, namespace
        )
    )
    return found


def _pool_allocated(api: Api, pool: str) -> str:
    return str(((api.pool(pool).get("status") or {}).get("totals") or {}).get("allocated"))


def _scaled_to(
    api: Api, namespace: str, name: str, pool: str, replicas: int
) -> Callable[[], dict[str, Any] | None]:
    """The EnclaveContainer at ``replicas``, its pods running and its pool counting them."""

    def probe() -> dict[str, Any] | None:
        ec = api.ec(namespace, name)
        pods = [p for p in api.pods(namespace, name) if p.status.phase == "Running"]
        if (
            ec["spec"]["replicas"] == replicas
            and len(pods) == replicas
            and (ec.get("status") or {}).get("replicas") == replicas
            and _pool_allocated(api, pool) == f"{16 * replicas}Mi"
        ):
            return ec
        return None

    return probe


@pytest.mark.usefixtures("free_nodes", "custom_metrics")
def test_hpa_scales_an_enclave_container_up_and_down_on_epc_utilization(
    cluster: E2ECluster,
    namespace: str,
    api: Api,
    attesting_operator: AttestingOperator,
    pools: Callable[..., str],
) -> None:
    pool = pools(f"hpa-{namespace}"[:60])
    _apply_ec(api, namespace, "demo", 1, pool)
    wait_for("1 running replica", _running_pods(api, namespace, "demo", 1), timeout=120)
    hpa = yaml.safe_load((REPO_ROOT / "deploy" / "examples" / "hpa.yaml").read_text())
    hpa["spec"]["maxReplicas"] = 4
    api.apply(hpa, namespace)

    # Up: one replica at 100% of its EPC against a 50% target wants two.
    _annotate(cluster, namespace, "demo", "100%")
    wait_for(
        "the replica's runtime to report 100%",
        lambda: (
            _pod_values(cluster, namespace, "demo", "epc_utilization")
            == {p.metadata.name: "100" for p in api.pods(namespace, "demo")}
        ),
        timeout=120,
        operator=attesting_operator,
    )
    ec = wait_for(
        "the HPA to scale demo to 2 and the pool to count 32Mi",
        _scaled_to(api, namespace, "demo", pool, 2),
        timeout=120,
        operator=attesting_operator,
    )
    assert ec["status"]["selector"] == f"{EC_LABEL}=demo"
    scaled_up = _hpa(api, namespace, "demo")
    assert scaled_up["status"]["desiredReplicas"] == 2
    table = cluster.kubectl("get", "hpa", "demo", "-n", namespace).stdout
    assert "EnclaveContainer/demo" in table
    current = scaled_up["status"]["currentMetrics"][0]["pods"]
    assert current["metric"]["name"] == "epc_utilization"
    assert f"{current['current']['averageValue']}/50" in table  # kubectl shows current/target

    # Down: every replica at 10% wants ceil(2 x 10 / 50) = 1, after the 15s stabilization.
    _annotate(cluster, namespace, "demo", "10%")
    wait_for(
        "the HPA to scale demo back to 1 and the pool to count 16Mi",
        _scaled_to(api, namespace, "demo", pool, 1),
        timeout=150,
        operator=attesting_operator,
    )
    scaled_down = _hpa(api, namespace, "demo")
    value = scaled_down["status"]["currentMetrics"][0]["pods"]["current"]["averageValue"]
    assert math.isclose(float(value), 10.0)
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    reasons = [
        e["message"]
        for e in json.loads(events)["items"]
        if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"
        and e["reason"] == "SuccessfulRescale"
    ]
    assert any("New size: 2" in m and "pods metric epc_utilization" in m for m in reasons)
    assert any("New size: 1" in m for m in reasons)


def _direct(url: str, context: ssl.SSLContext, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - https, test cluster
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.usefixtures("free_nodes", "custom_metrics")
def test_custom_metrics_answer_kubectl_and_refuse_requests_without_front_proxy_credentials(
    cluster: E2ECluster,
    namespace: str,
    api: Api,
    attesting_operator: AttestingOperator,
    pools: Callable[..., str],
) -> None:
    pool = pools(f"raw-{namespace}"[:60])
    _apply_ec(api, namespace, "ledger", 2, pool)
    pods = wait_for("2 running replicas", _running_pods(api, namespace, "ledger", 2), timeout=120)
    _annotate(cluster, namespace, "ledger", "4Mi")  # 25% of 16Mi

    utilization = wait_for(
        "both replicas' utilization through the kube-apiserver",
        lambda: (
            (found := _pod_values(cluster, namespace, "ledger", "epc_utilization"))
            and len(found) == 2
            and set(found.values()) == {"25"}
            and found
        ),
        timeout=120,
        operator=attesting_operator,
    )
    assert set(utilization) == {p.metadata.name for p in pods}
    used = _pod_values(cluster, namespace, "ledger", "epc_used_bytes")
    assert set(used.values()) == {str(4 * 1024 * 1024)}
    whole = _raw(
        cluster, f"{RAW}/namespaces/{namespace}/enclavecontainers.kubetee.io/ledger/epc_utilization"
    )
    assert [(i["describedObject"]["kind"], i["value"]) for i in whole["items"]] == [
        ("EnclaveContainer", "25")
    ]
    discovery = _raw(cluster, RAW)
    assert "pods/epc_utilization" in {r["name"] for r in discovery["resources"]}

    # The runtime itself exports the figures the server read (file_sd target of a local runtime).
    target = pod_dir(cluster, pods[0]) / "root" / "run" / "kubetee" / "metrics-target.json"
    address = json.loads(target.read_text())[0]["targets"][0]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        exported = response.read().decode()
    pod_labels = f'enclavecontainer="ledger",namespace="{namespace}",pod="{pods[0].metadata.name}"'
    assert f"{names.ENCLAVE_EPC_USED_BYTES}{{{pod_labels}}} 4.194304e+06" in exported
    assert f"{names.ENCLAVE_EPC_SIZE_BYTES}{{{pod_labels}}} 1.6777216e+07" in exported

    # Through the kube-apiserver, RBAC decides: a user without a grant is forbidden.
    forbidden = cluster.kubectl(
        "--as=jane", "get", "--raw", f"{RAW}/namespaces/{namespace}/pods/*/epc_utilization",
        check=False,
    )  # fmt: skip
    assert forbidden.returncode != 0
    assert 'User "jane" cannot get resource "pods/epc_utilization"' in forbidden.stderr

    # Straight to the server, claiming to be an admin: refused without the proxy's certificate.
    url = f"https://{_server_address(api)}{RAW}/namespaces/{namespace}/pods/*/epc_utilization"
    claim = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}
    anonymous = ssl.create_default_context()
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    status, body = _direct(url, anonymous, claim)
    assert status == 401
    assert json.loads(body)["reason"] == "Unauthorized"
    pki = cluster.local_layout().pki_dir
    admin = ssl.create_default_context()
    admin.check_hostname = False
    admin.verify_mode = ssl.CERT_NONE
    admin.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))  # the cluster CA's
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _direct(url, admin, claim)


def test_kubectl_autoscale_targets_the_enclave_containers_scale_subresource(
    cluster: E2ECluster, namespace: str, api: Api
) -> None:
    from tests.e2e.operator_support import install_crds  # noqa: PLC0415

    install_crds(cluster)
    api.apply(enclave_container("web", 1, epc="16Mi"), namespace)

    cluster.kubectl("autoscale", "ec/web", "-n", namespace, "--min=1", "--max=3")

    hpa = _hpa(api, namespace, "web")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "kubetee.io/v1alpha1",
        "kind": "EnclaveContainer",
        "name": "web",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    scale = _raw(
        cluster, f"/apis/kubetee.io/v1alpha1/namespaces/{namespace}/enclavecontainers/web/scale"
    )
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 1)
