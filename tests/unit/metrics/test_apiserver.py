"""The custom metrics API server over real TLS, scraping real runtime endpoints.

The Kubernetes side is an in-memory reader (pods, EnclaveContainers) and a
SubjectAccessReview stand-in with a small RBAC-like policy; everything else is the
real server: front-proxy authentication on TLS client certificates, the aiohttp app,
file_sd discovery and scraping of runtimes that export through the runtime's own
collector. The e2e tests run it behind the real kube-apiserver.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from kubetee.metrics.apiserver.app import ApiserverMetrics, Server, create_app, server_ssl_context
from kubetee.metrics.apiserver.auth import FrontProxyAuthenticator, RequestHeaderConfig
from kubetee.metrics.apiserver.authz import SubjectAccessReviewAuthorizer
from kubetee.metrics.apiserver.kube import EnclaveContainerRef
from kubetee.metrics.apiserver.provider import MetricsProvider
from kubetee.metrics.apiserver.scrape import FileSDTargets, PodRef, RuntimeScraper
from kubetee.metrics.apiserver.tls import ensure_serving_certificate
from kubetee.metrics.errors import NotFoundError
from kubetee.metrics.runtime import EnclaveUsageCollector
from kubetee.metrics.serve import MetricsServer, start_metrics_server
from kubetee.metrics.usage import EnclaveUsage

from .conftest import CertificateFactory, Pem

MIB = 1024 * 1024
PREFIX = "/apis/custom.metrics.k8s.io/v1beta2"
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
EC_LABEL = "kubetee.io/enclave-container"


@dataclass
class InMemoryReader:
    """Pods and EnclaveContainers as the server reads them from the API."""

    pods_by_name: dict[str, tuple[PodRef, dict[str, str]]] = field(default_factory=dict)
    ecs: dict[str, EnclaveContainerRef] = field(default_factory=dict)

    async def pods(self, namespace: str, label_selector: str) -> list[PodRef]:
        wanted = dict(p.split("=", 1) for p in label_selector.split(",") if p)
        return [
            pod
            for pod, labels in self.pods_by_name.values()
            if pod.namespace == namespace and wanted.items() <= labels.items()
        ]

    async def pod(self, namespace: str, name: str) -> PodRef:
        if name not in self.pods_by_name:
            raise NotFoundError(f"pod {namespace}/{name} not found")
        return self.pods_by_name[name][0]

    async def enclave_containers(
        self, namespace: str, label_selector: str
    ) -> list[EnclaveContainerRef]:
        return [ec for ec in self.ecs.values() if ec.namespace == namespace]

    async def enclave_container(self, namespace: str, name: str) -> EnclaveContainerRef:
        if name not in self.ecs:
            raise NotFoundError(f"EnclaveContainer {namespace}/{name} not found")
        return self.ecs[name]


@dataclass
class Reviews:
    """The kube-apiserver's SubjectAccessReview endpoint, with a tiny RBAC."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(body)
        spec = body["spec"]
        discovery = "nonResourceAttributes" in spec and "system:authenticated" in spec["groups"]
        allowed = (
            "system:masters" in spec["groups"]
            or discovery  # RBAC's system:discovery role
            or (spec["user"] == HPA and spec.get("resourceAttributes", {}).get("verb") == "get")
        )
        return {**body, "status": {"allowed": allowed}}


@dataclass
class Stack:
    url: str
    reviews: Reviews
    server_ca: Path
    front_proxy: Pem
    stranger: Pem
    wrong_name: Pem

    def context(self, client: Pem | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        return context

    async def get(
        self,
        path: str,
        *,
        client: Pem | None = None,
        user: str | None = HPA,
        groups: tuple[str, ...] = ("system:serviceaccounts",),
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers: list[tuple[str, str]] = []
        if user is not None:
            headers.append(("X-Remote-User", user))
        headers += [("X-Remote-Group", g) for g in groups]
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                self.url + path,
                ssl=self.context(client if client is not None else self.front_proxy),
                headers=headers,
                params=params,
            ) as response,
        ):
            return response.status, json.loads(await response.text())


def _runtime(pod: PodRef, used: str | None, podinfo: Path) -> MetricsServer:
    """A runtime's metrics endpoint for ``pod`` reporting ``used`` through its annotation."""
    podinfo.mkdir(parents=True)
    lines = f"kubetee.io/simulated-epc-usage={json.dumps(used)}\n" if used else ""
    (podinfo / "annotations").write_text(lines)
    registry = CollectorRegistry()
    usage = EnclaveUsage(pod.epc_request_bytes, podinfo_dir=podinfo)
    labels = (pod.namespace, pod.name, pod.enclave_container or "")
    server = start_metrics_server(
        "runtime",
        0,
        address="127.0.0.1",
        registry=registry,
        collectors=(EnclaveUsageCollector(labels, usage),),
    )
    assert server is not None
    return server


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[tuple[InMemoryReader, Path]]:
    reader = InMemoryReader()
    servers = []
    targets = []
    for name, used in (("payments-a", "75%"), ("payments-b", "8Mi"), ("payments-c", None)):
        pod = PodRef("shop", name, f"uid-{name}", "10.0.0.1", 64 * MIB, "payments")
        reader.pods_by_name[name] = (pod, {EC_LABEL: "payments"})
        if used is None:
            continue  # its runtime has not started
        server = _runtime(pod, used, tmp_path / name)
        servers.append(server)
        targets.append(
            {"targets": [f"127.0.0.1:{server.port}"], "labels": {"namespace": "shop", "pod": name}}
        )
    plain = PodRef("shop", "web", "uid-web", "10.0.0.2", 0, None)
    reader.pods_by_name["web"] = (plain, {"app": "web"})
    reader.ecs["payments"] = EnclaveContainerRef(
        "shop", "payments", f"{EC_LABEL}=payments", 192 * MIB
    )
    sd_file = tmp_path / "targets" / "runtimes.json"
    sd_file.parent.mkdir()
    sd_file.write_text(json.dumps(targets))
    yield reader, sd_file
    for server in servers:
        server.close()


@pytest.fixture
async def stack(
    runtimes: tuple[InMemoryReader, Path], certificates: CertificateFactory, tmp_path: Path
) -> AsyncIterator[Stack]:
    reader, sd_file = runtimes
    front_proxy_ca = certificates.ca("front-proxy-ca")
    other_ca = certificates.ca("cluster-ca")
    serving = ensure_serving_certificate(tmp_path / "serving", ("localhost",), ("127.0.0.1",))
    config = RequestHeaderConfig(
        client_ca_pem=front_proxy_ca.cert.read_text(), allowed_names=("front-proxy-client",)
    )
    reviews = Reviews()
    async with aiohttp.ClientSession() as session:
        scraper = RuntimeScraper(session, FileSDTargets([str(sd_file.parent / "*.json")]))
        server = Server(
            authenticator=FrontProxyAuthenticator(config),
            authorizer=SubjectAccessReviewAuthorizer(reviews.send),
            provider=MetricsProvider(reader, scraper),
            metrics=ApiserverMetrics(CollectorRegistry()),
        )
        runner = web.AppRunner(create_app(server))
        await runner.setup()
        context = server_ssl_context(str(serving.cert), str(serving.key), config.client_ca_pem)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield Stack(
            url=f"https://127.0.0.1:{port}",
            reviews=reviews,
            server_ca=serving.ca_cert,
            front_proxy=certificates.leaf(front_proxy_ca, "proxy", "front-proxy-client"),
            stranger=certificates.leaf(other_ca, "admin", "front-proxy-client"),
            wrong_name=certificates.leaf(front_proxy_ca, "other", "someone-else"),
        )
        await runner.cleanup()


async def test_discovery_lists_each_metric_of_each_resource(stack: Stack) -> None:
    status, body = await stack.get(PREFIX)

    assert status == 200
    assert body["kind"] == "APIResourceList"
    assert body["groupVersion"] == "custom.metrics.k8s.io/v1beta2"
    assert {r["name"] for r in body["resources"]} == {
        "pods/epc_utilization",
        "pods/epc_used_bytes",
        "enclavecontainers.kubetee.io/epc_utilization",
        "enclavecontainers.kubetee.io/epc_used_bytes",
        "enclavecontainers.kubetee.io/epc_requested_bytes",
    }
    assert all(r["kind"] == "MetricValueList" and r["verbs"] == ["get"] for r in body["resources"])


async def test_pods_selected_by_label_get_their_utilization_as_the_hpa_asks(
    stack: Stack,
) -> None:
    status, body = await stack.get(
        f"{PREFIX}/namespaces/shop/pods/*/epc_utilization",
        params={"labelSelector": f"{EC_LABEL}=payments"},
    )

    assert status == 200
    assert body["kind"] == "MetricValueList"
    assert body["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    items = {item["describedObject"]["name"]: item for item in body["items"]}
    assert set(items) == {"payments-a", "payments-b"}  # payments-c's runtime is not up
    assert items["payments-a"]["value"] == "75"
    assert items["payments-b"]["value"] == "12500m"  # 8Mi of 64Mi
    first = items["payments-a"]
    assert first["describedObject"] == {
        "kind": "Pod",
        "namespace": "shop",
        "name": "payments-a",
        "apiVersion": "v1",
    }
    assert first["metric"] == {"name": "epc_utilization"}
    assert first["windowSeconds"] == 0
    assert first["timestamp"].endswith("Z")


async def test_one_pod_and_one_enclave_container(stack: Stack) -> None:
    _, used = await stack.get(f"{PREFIX}/namespaces/shop/pods/payments-b/epc_used_bytes")
    _, utilization = await stack.get(
        f"{PREFIX}/namespaces/shop/enclavecontainers.kubetee.io/payments/epc_utilization"
    )
    _, requested = await stack.get(
        f"{PREFIX}/namespaces/shop/enclavecontainers.kubetee.io/*/epc_requested_bytes"
    )

    assert [i["value"] for i in used["items"]] == [str(8 * MIB)]
    # (48Mi + 8Mi) of (64Mi + 64Mi), over the replicas that reported
    assert [i["value"] for i in utilization["items"]] == ["43750m"]
    assert utilization["items"][0]["describedObject"]["kind"] == "EnclaveContainer"
    assert utilization["items"][0]["describedObject"]["apiVersion"] == "kubetee.io/v1alpha1"
    assert [i["value"] for i in requested["items"]] == [str(192 * MIB)]


@pytest.mark.parametrize(
    ("path", "params", "code", "reason", "words"),
    [
        ("/namespaces/shop/pods/payments-c/epc_utilization", None, 404, "NotFound", "not reported"),
        ("/namespaces/shop/pods/web/epc_utilization", None, 404, "NotFound", "no kubetee.io/epc"),
        ("/namespaces/shop/pods/nope/epc_used_bytes", None, 404, "NotFound", "nope not found"),
        ("/namespaces/shop/pods/*/cpu_usage", None, 404, "NotFound", "epc_utilization"),
        ("/namespaces/shop/services/*/epc_used_bytes", None, 404, "NotFound", "pods"),
        ("/nodes/node-1/epc_used_bytes", None, 404, "NotFound", "cluster-scoped"),
        (
            "/namespaces/shop/pods/*/epc_used_bytes",
            {"metricLabelSelector": "a=b"},
            400,
            "BadRequest",
            "metricLabelSelector",
        ),
    ],
)
async def test_what_cannot_be_answered_is_a_status_saying_why(  # noqa: PLR0917
    stack: Stack,
    path: str,
    params: dict[str, str] | None,
    code: int,
    reason: str,
    words: str,
) -> None:
    status, body = await stack.get(PREFIX + path, params=params)

    assert (status, body["kind"], body["code"], body["reason"]) == (code, "Status", code, reason)
    assert words in body["message"]


async def test_requests_without_front_proxy_credentials_are_refused(stack: Stack) -> None:
    path = f"{PREFIX}/namespaces/shop/pods/*/epc_used_bytes"
    forged = {"user": "system:admin", "groups": ("system:masters",)}

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            stack.url + path,
            ssl=stack.context(None),
            headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"},
        ) as response,
    ):
        no_certificate = response.status, await response.json()
    wrong_name = await stack.get(path, client=stack.wrong_name, **forged)  # type: ignore[arg-type]
    no_user = await stack.get(path, user=None)
    with pytest.raises(aiohttp.ClientError):
        await stack.get(path, client=stack.stranger, **forged)  # type: ignore[arg-type]

    assert no_certificate[0] == 401
    assert no_certificate[1]["reason"] == "Unauthorized"
    assert "no client certificate" in no_certificate[1]["message"]
    assert wrong_name[0] == 401
    assert "not an allowed front-proxy name" in wrong_name[1]["message"]
    assert no_user[0] == 401
    assert stack.reviews.sent == []  # nothing unauthenticated reaches authorization


async def test_rbac_decides_through_subject_access_reviews_cached_per_caller(
    stack: Stack,
) -> None:
    path = f"{PREFIX}/namespaces/shop/pods/*/epc_utilization"

    denied = await stack.get(path, user="jane", groups=("developers",))
    allowed = [await stack.get(path) for _ in range(3)]

    assert denied[0] == 403
    assert denied[1]["message"] == (
        'User "jane" cannot get resource "pods/epc_utilization" in API group '
        '"custom.metrics.k8s.io" in the namespace "shop"'
    )
    assert [status for status, _ in allowed] == [200, 200, 200]
    hpa_reviews = [r["spec"] for r in stack.reviews.sent if r["spec"]["user"] == HPA]
    assert len(hpa_reviews) == 1  # one review, then the cached decision
    assert hpa_reviews[0]["resourceAttributes"] == {
        "namespace": "shop",
        "verb": "get",
        "group": "custom.metrics.k8s.io",
        "version": "v1beta2",
        "resource": "pods",
        "subresource": "epc_utilization",
        "name": "*",
    }
    assert "system:authenticated" in hpa_reviews[0]["groups"]


async def test_health_needs_no_credentials_and_openapi_is_served(stack: Stack) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(stack.url + "/healthz", ssl=stack.context(None)) as health,
    ):
        assert (health.status, await health.text()) == (200, "ok")
    status, spec = await stack.get(
        "/openapi/v2", user="system:aggregator", groups=("system:masters",)
    )

    assert status == 200
    assert spec["swagger"] == "2.0"
    assert any("custom.metrics.k8s.io" in path for path in spec["paths"])
