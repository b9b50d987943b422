"""The attestation service's metrics: attestations by result and reason, their latency,
and the secrets released.

:func:`instrument_app` adds a middleware to the service's routes that times every ``POST
/kbs/v0/attest`` and counts it as ``accepted`` or ``refused`` with the refusal's
CamelCase reason (the same reason the service puts in its problem details and
Events); the service calls :meth:`AttestationMetrics.secret_released` when it hands
out a secret. Nothing here sees a nonce, a key or a secret value.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from kubetee.metrics import names

if TYPE_CHECKING:  # the service's module imports this one (its secrets counter)
    from kubetee.attestation_service.app import Handler, KbsApp, Middleware
    from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse

ATTEST_PATH = "/kbs/v0/attest"
ACCEPTED, REFUSED = "accepted", "refused"
ACCEPTED_REASON = "Attested"
# Quote verification with cached collateral takes milliseconds; a collateral fetch or a
# slow Kubernetes API seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AttestationMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.attestations = Counter(
            names.ATTESTATIONS_TOTAL,
            "Attestations (POST /kbs/v0/attest) by result (accepted, refused) and reason "
            "(Attested, or the CamelCase refusal reason such as MeasurementMismatch).",
            ("result", "reason"),
            registry=registry,
        )
        self.duration = Histogram(
            names.ATTESTATION_DURATION_SECONDS,
            "Time to answer one attestation request, by result.",
            ("result",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.secrets_released = Counter(
            names.SECRETS_RELEASED_TOTAL,
            "Secrets released to attested enclaves, per EnclaveContainer.",
            ("namespace", "enclavecontainer"),
            registry=registry,
        )

    def observe_attestation(self, result: str, reason: str, seconds: float) -> None:
        self.attestations.labels(result, reason).inc()
        self.duration.labels(result).observe(seconds)

    def secret_released(self, namespace: str, enclave_container: str) -> None:
        self.secrets_released.labels(namespace, enclave_container).inc()

    def middleware(self) -> Middleware:
        """Time and classify ``POST /kbs/v0/attest``; other requests pass untouched."""

        async def attestation_metrics(request: HttpRequest, handler: Handler) -> HttpResponse:
            if request.method != "POST" or request.path != ATTEST_PATH:
                return await handler(request)
            started = time.perf_counter()
            try:
                response = await handler(request)
            except Exception as error:
                # AttestationError and its subclasses carry the CamelCase reason.
                reason = getattr(error, "reason", None)
                label = reason if isinstance(reason, str) and reason else type(error).__name__
                self.observe_attestation(REFUSED, label, _since(started))
                raise
            if response.status < 300:
                self.observe_attestation(ACCEPTED, ACCEPTED_REASON, _since(started))
            else:
                self.observe_attestation(REFUSED, f"HTTP{response.status}", _since(started))
            return response

        return attestation_metrics


def _since(started: float) -> float:
    return time.perf_counter() - started


_default: AttestationMetrics | None = None


def attestation_metrics() -> AttestationMetrics:
    """The attestation service's metrics on the default registry (created on first use)."""
    global _default  # noqa: PLW0603 - one set of metrics per process, made lazily
    if _default is None:
        _default = AttestationMetrics()
    return _default


def instrument_app(app: KbsApp, metrics: AttestationMetrics | None = None) -> None:
    """Add the attestation middleware to ``app`` (before it starts), innermost, so it sees
    the refusal exception before the service turns it into problem details."""
    app.middlewares.append((metrics or attestation_metrics()).middleware())
