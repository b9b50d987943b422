"""Attestation metrics on the real KBS application: refusals by reason, latency, releases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from enclave_runtime.kbs_protocol import KBS_PROTOCOL_VERSION, SESSION_COOKIE
from kubetee.attestation_service.app import Handler, create_app
from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse
from kubetee.metrics import names
from kubetee.metrics.attestation import AttestationMetrics, instrument_app
from kubetee.metrics.serve import MetricsServer
from tests.kbs_serving import port_of, serving, unverifying_service

from .conftest import scrape_url, value

AUTH_REQUEST = {
    "version": KBS_PROTOCOL_VERSION,
    "tee": "sgx",
    "extra-params": {"kubetee.io/pod": {"namespace": "shop", "name": "p-1", "uid": "u-1"}},
}


@pytest.fixture
async def kbs(registry: CollectorRegistry) -> AsyncIterator[tuple[str, AttestationMetrics]]:
    app = create_app(unverifying_service())
    metrics = AttestationMetrics(registry)
    instrument_app(app, metrics)
    async with serving(app) as kbs:
        yield f"http://127.0.0.1:{port_of(kbs)}", metrics


async def test_refused_attestations_are_counted_by_the_services_reason(
    kbs: tuple[str, AttestationMetrics], serve: Callable[[], MetricsServer]
) -> None:
    url, _ = kbs
    async with aiohttp.ClientSession() as session:
        # No session cookie: refused before anything else.
        async with session.post(f"{url}/kbs/v0/attest", json={}) as response:
            assert response.status == 401
            assert (await response.json())["reason"] == "SessionInvalid"
        async with session.post(f"{url}/kbs/v0/auth", json=AUTH_REQUEST) as response:
            assert response.status == 200
            cookie = response.cookies[SESSION_COOKIE].value
        # A valid challenge, then a payload that is not an attestation.
        async with session.post(
            f"{url}/kbs/v0/attest", data=b"{}", cookies={SESSION_COOKIE: cookie}
        ) as response:
            assert response.status == 400
    server = serve()

    _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")

    attestations = names.ATTESTATIONS_TOTAL
    assert value(samples, attestations, result="refused", reason="SessionInvalid") == 1
    assert value(samples, attestations, result="refused", reason="BadRequest") == 1
    histogram = names.ATTESTATION_DURATION_SECONDS
    assert value(samples, histogram + "_count", result="refused") == 2
    assert value(samples, histogram + "_bucket", result="refused", le="+Inf") == 2
    # /auth is no attestation
    assert sum(v for _, v in samples[attestations]) == 2


async def test_accepted_attestations_and_released_secrets_are_counted(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    metrics = AttestationMetrics(registry)

    async def accept(_request: HttpRequest, _handler: Handler) -> HttpResponse:
        return HttpResponse(200, b'{"token": "t"}')

    app = create_app(unverifying_service())
    instrument_app(app, metrics)
    app.middlewares.append(accept)  # inside the metrics' middleware: every attestation passes
    async with serving(app) as kbs, aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(f"http://127.0.0.1:{port_of(kbs)}/kbs/v0/attest") as response:
                assert response.status == 200
    metrics.secret_released("shop", "payments")
    metrics.secret_released("shop", "payments")
    server = serve()

    _, samples = scrape_url(f"http://127.0.0.1:{server.port}/metrics")

    assert value(samples, names.ATTESTATIONS_TOTAL, result="accepted", reason="Attested") == 3
    assert value(samples, names.ATTESTATION_DURATION_SECONDS + "_count", result="accepted") == 3
    released = value(
        samples, names.SECRETS_RELEASED_TOTAL, namespace="shop", enclavecontainer="payments"
    )
    assert released == 2
