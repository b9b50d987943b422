"""The KBS HTTP endpoints (aiohttp): ``/kbs/v0/auth``, ``/attest``, ``/resource``.

Handlers hold no state between requests (see :mod:`.sessions`), so any number of
replicas can serve one client. Every refusal is an ``AttestationError`` turned into
RFC 7807 problem details whose ``type`` ends in the CamelCase reason; it is logged
and reported (Event) with that reason and never with nonces, keys or secret bytes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from enclave_runtime.kbs_protocol import (
    KBS_PROTOCOL_VERSION,
    SESSION_COOKIE,
    Attestation,
    Challenge,
    Request,
    SgxEvidence,
    encrypt_to_tee_key,
    report_data_for,
)
from enclave_runtime.kbs_protocol.models import TEE_SGX
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.policy import apply_policy, refuse_sample_signer
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.errors import (
    BadRequestError,
    NonceMismatchError,
    PolicyChangedError,
    ReportDataMismatchError,
    ResourceForbiddenError,
    ResourceNotFoundError,
    http_status_of,
)
from kubetee.attestation_service.replay import NonceLedger
from kubetee.attestation_service.sessions import AttestedSession, PodRef, SessionSigner
from kubetee.attestation_service.workloads import (
    SECRET_RESOURCE_TYPE,
    AttestationReporter,
    Workload,
    WorkloadDirectory,
)
from kubetee.metrics.attestation import attestation_metrics

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

PROBLEM_TYPE_PREFIX = "https://kubetee.io/kbs/errors/"
POD_PARAM = "kubetee.io/pod"
"""Key of ``extra-params`` in the ``/auth`` request naming the attesting pod."""


class EvidenceVerifier(Protocol):
    """Checks that a quote is genuine (signatures, chains, TCB); policy comes after."""

    def verify(self, quote: bytes, now: datetime) -> VerifiedQuote: ...


@dataclass
class KbsService:
    """The service's collaborators; one instance is shared by all requests."""

    sessions: SessionSigner
    ledger: NonceLedger
    verifier: EvidenceVerifier
    workloads: WorkloadDirectory
    reporter: AttestationReporter
    clock: Callable[[], float] = field(default=time.time)
    # Quotes come from the simulated SGX authority: policies may pin the sample key.
    simulator: bool = False

    def now(self) -> int:
        return int(self.clock())


SERVICE_KEY = web.AppKey("kbs_service", KbsService)


def create_app(service: KbsService) -> web.Application:
    app = web.Application(middlewares=[_problem_details], client_max_size=1024 * 1024)
    app[SERVICE_KEY] = service
    app.router.add_post("/kbs/v0/auth", _auth)
    app.router.add_post("/kbs/v0/attest", _attest)
    app.router.add_get("/kbs/v0/resource/{repository}/{type}/{tag}", _resource)
    app.router.add_get("/healthz", _healthz)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _problem_details(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AttestationError as error:
        log.warning(
            "refused %s %s: %s (%s): %s",
            request.method,
            request.path,
            error.reason,
            error.code,
            error.message,
        )
        return problem(error)


def problem(error: AttestationError) -> web.Response:
    return web.json_response(
        {"type": PROBLEM_TYPE_PREFIX + error.reason, "detail": error.message},
        status=http_status_of(error),
    )


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _auth(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    kbs_request = await _parse_body(request, Request)
    if kbs_request.version != KBS_PROTOCOL_VERSION:
        raise BadRequestError(
            f"KBS protocol version {kbs_request.version!r} is not supported; "
            f"this service speaks {KBS_PROTOCOL_VERSION}"
        )
    if kbs_request.tee != TEE_SGX:
        raise BadRequestError(f"TEE {kbs_request.tee!r} is not supported; only {TEE_SGX!r}")
    pod = _pod_of(kbs_request)
    session, cookie = service.sessions.new_challenge(pod, service.now())
    response = web.json_response(Challenge(nonce=session.nonce).to_wire())
    _set_session_cookie(response, cookie, service.sessions.nonce_ttl_seconds)
    return response


async def _attest(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    now = service.now()
    challenge = service.sessions.read_challenge(request.cookies.get(SESSION_COOKIE))
    workload: Workload | None = None
    try:
        service.sessions.check_fresh(challenge, now)
        attestation = await _parse_body(request, Attestation)
        if attestation.runtime_data.nonce != challenge.nonce:
            raise NonceMismatchError(
                "runtime-data.nonce is not the nonce of this session's challenge"
            )
        quote = _quote_of(attestation)
        # Claimed before verification: a nonce is spent by any attempt, good or bad.
        await service.ledger.claim(challenge.nonce, challenge.expires_at)
        workload = await service.workloads.workload_of(challenge.pod)
        verified = service.verifier.verify(quote, datetime.fromtimestamp(now, UTC))
        expected = report_data_for(
            attestation.runtime_data, attestation.tee_evidence.additional_evidence
        )
        if verified.report_data != expected:
            raise ReportDataMismatchError(
                "the quote's report data does not bind this session's nonce and tee-pubkey: "
                "the quote was made for another attestation"
            )
        apply_policy(verified, workload.enclave_container.policy)
        if not service.simulator:
            refuse_sample_signer(workload.enclave_container.policy)
    except AttestationError as error:
        await service.reporter.refused(challenge.pod, workload, error)
        raise
    attested = AttestedSession(
        pod=challenge.pod,
        enclave_container=workload.enclave_container.name,
        policy_hash=workload.enclave_container.policy_hash,
        tee_pubkey=attestation.runtime_data.tee_pubkey,
        expires_at=now + service.sessions.token_ttl_seconds,
    )
    token = service.sessions.issue_token(attested, now)
    await service.reporter.attested(
        workload, verified, datetime.fromtimestamp(attested.expires_at, UTC)
    )
    log.info(
        "attested pod %s of EnclaveContainer %s: mrenclave %s, isvSvn %d, TCB %s",
        challenge.pod,
        workload.enclave_container.name,
        verified.mrenclave.hex()[:16],
        verified.isv_svn,
        verified.tcb_status,
    )
    response = web.json_response({"token": token})
    _set_session_cookie(response, token, service.sessions.token_ttl_seconds)
    return response


async def _resource(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    session = service.sessions.read_token(_token_of(request), service.now())
    repository = request.match_info["repository"]
    kind = request.match_info["type"]
    tag = request.match_info["tag"]
    if repository != session.enclave_container or kind != SECRET_RESOURCE_TYPE:
        raise ResourceForbiddenError(
            f"this attestation releases only {session.enclave_container}/"
            f"{SECRET_RESOURCE_TYPE}/<name>, not {repository}/{kind}/{tag}"
        )
    current = await service.workloads.enclave_container(
        session.pod.namespace, session.enclave_container
    )
    if current.policy_hash != session.policy_hash:
        raise PolicyChangedError(
            f"the attestation policy of {current.name} changed since this attestation; attest again"
        )
    ref = current.secrets.get(tag)
    if ref is None:
        raise ResourceNotFoundError(f"{current.name} has no secret named {tag!r}")
    value = await service.workloads.secret_value(current.namespace, ref)
    log.info("released secret %s of %s to pod %s", tag, current.name, session.pod)
    attestation_metrics().secret_released(current.namespace, current.name)
    return web.json_response(encrypt_to_tee_key(value, session.tee_pubkey).to_wire())


async def _parse_body(request: web.Request, model: type[_M]) -> _M:
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
        raise BadRequestError(f"malformed {model.__name__} payload (check: {fields})") from None


def _pod_of(kbs_request: Request) -> PodRef:
    params = kbs_request.extra_params
    pod = params.get(POD_PARAM) if isinstance(params, dict) else None
    if not isinstance(pod, dict) or not all(
        isinstance(pod.get(k), str) and pod.get(k) for k in ("namespace", "name", "uid")
    ):
        raise BadRequestError(
            f"extra-params must name the attesting pod: {{{POD_PARAM!r}: {{namespace, name, uid}}}}"
        )
    return PodRef(namespace=str(pod["namespace"]), name=str(pod["name"]), uid=str(pod["uid"]))


def _quote_of(attestation: Attestation) -> bytes:
    try:
        evidence = SgxEvidence.model_validate(attestation.tee_evidence.primary_evidence)
        return base64.b64decode(evidence.quote, validate=True)
    except (ValidationError, binascii.Error) as exc:
        raise BadRequestError(
            'tee-evidence.primary_evidence must be {"quote": <base64 SGX quote>}'
        ) from exc


def _token_of(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip()
    return request.cookies.get(SESSION_COOKIE)


def _set_session_cookie(response: web.Response, value: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        secure=True,
        samesite="Strict",
        path="/kbs/v0",
    )
