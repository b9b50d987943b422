"""The operator's writes take the apiserver's answer without the client's models and
still report its failures through the error hierarchy (a real HTTP server answers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes.aio.client import ApiClient, Configuration

from kubetee.k8s.errors import ApiNotFoundError, ApiRefusedError, ApiUnavailableError
from kubetee.k8s.writes import KubeWriter, ObjectRef

Answer = tuple[int, dict[str, Any], dict[str, str]]


class FakeApiserver:
    """Records each request and answers with the next canned answer."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.requests: list[tuple[str, str, str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.method, request.path_qs, request.content_type, body))
        status, answer, headers = self.answers.pop(0)
        return web.json_response(answer, status=status, headers=headers)


@pytest.fixture
async def apiserver() -> AsyncIterator[tuple[FakeApiserver, KubeWriter]]:
    fake = FakeApiserver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api = ApiClient(configuration=Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        yield fake, KubeWriter(api)
    finally:
        await api.close()
        await runner.cleanup()


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "status": "Failure", "code": code, "message": message}


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "demo", "namespace": "ns"},
    "spec": {"replicas": 1},
}


async def test_apply_is_a_server_side_apply_and_its_answer_is_taken(
    apiserver: tuple[FakeApiserver, KubeWriter],
) -> None:
    fake, writer = apiserver
    fake.answers.append((201, DEPLOYMENT, {}))
    await writer.apply_deployment(DEPLOYMENT)
    method, path, content_type, body = fake.requests[0]
    assert (method, content_type, body) == ("PATCH", "application/apply-patch+yaml", DEPLOYMENT)
    assert path.startswith("/apis/apps/v1/namespaces/ns/deployments/demo?")
    assert "fieldManager=kubetee-operator" in path
    assert "force=true" in path


async def test_refused_apply_names_the_apiservers_message(
    apiserver: tuple[FakeApiserver, KubeWriter],
) -> None:
    fake, writer = apiserver
    message = 'Deployment.apps "demo" is invalid: spec.template.spec.containers[0].image: Required'
    fake.answers.append((422, _status(422, message), {}))
    with pytest.raises(ApiRefusedError) as refused:
        await writer.apply_deployment(DEPLOYMENT)
    assert str(refused.value) == f"applying the Deployment: {message}"
    assert refused.value.status == 422


async def test_status_patch_of_a_gone_object_is_not_found(
    apiserver: tuple[FakeApiserver, KubeWriter],
) -> None:
    fake, writer = apiserver
    fake.answers.append((404, _status(404, 'enclavecontainers "demo" not found'), {}))
    with pytest.raises(ApiNotFoundError, match=r"writing the status: .*not found"):
        await writer.patch_status("enclavecontainers", "ns", "demo", {"replicas": 1})
    method, path, content_type, body = fake.requests[0]
    assert (method, content_type, body) == (
        "PATCH",
        "application/merge-patch+json",
        {"status": {"replicas": 1}},
    )
    assert path == "/apis/kubetee.io/v1alpha1/namespaces/ns/enclavecontainers/demo/status"


async def test_busy_apiserver_is_retried_after_the_time_it_asks(
    apiserver: tuple[FakeApiserver, KubeWriter],
) -> None:
    fake, writer = apiserver
    fake.answers.append((429, _status(429, "too many requests"), {"Retry-After": "3"}))
    with pytest.raises(ApiUnavailableError) as busy:
        await writer.patch_status("epcpools", "", "pool", {"nodes": 1})
    assert busy.value.delay == 3.0
    assert fake.requests[0][1] == "/apis/kubetee.io/v1alpha1/epcpools/pool/status"


async def test_event_is_posted_and_its_answer_taken(
    apiserver: tuple[FakeApiserver, KubeWriter],
) -> None:
    fake, writer = apiserver
    fake.answers.append((201, {"kind": "Event"}, {}))
    ref = ObjectRef("kubetee.io/v1alpha1", "EnclaveContainer", "demo", "ns", "uid-1")
    await writer.post_event(ref, "Warning", "PoolNotFound", "EPCPool 'x' does not exist")
    method, path, _, body = fake.requests[0]
    assert (method, path) == ("POST", "/api/v1/namespaces/ns/events")
    assert (body["reason"], body["involvedObject"]["uid"]) == ("PoolNotFound", "uid-1")
    assert json.dumps(body).count("EPCPool 'x' does not exist") == 1
