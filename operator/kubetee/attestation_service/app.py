"""The KBS HTTP endpoints: ``/kbs/v0/auth``, ``/attest``, ``/resource`` (served by
:mod:`.http_connection`).

They speak the protocol as a stock client (CoCo's kbs_protocol) speaks it: ``/auth``
takes no project-specific parameters; the attesting pod is named by the init-data
whose digest the quote carries in CONFIGID; resources live at
``/kbs/v0/resource/<namespace>/<EnclaveContainer>/<secret>``.

``/attest`` writes nothing before the evidence has verified: the nonce record, Events
and the pod's condition follow a genuine quote that binds this session and names its
pod, and Events go only to that pod's EnclaveContainer. Handlers hold no state between
requests (see :mod:`.sessions`, :mod:`.replay`), so any number of replicas can serve
one client. Every refusal is an ``AttestationError`` turned into RFC 7807 problem
details with the protocol's problem type, KubeTEE's CamelCase ``reason`` and a detail;
client-supplied text is escaped before it is logged or echoed, and nothing a client
sends ends as a traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from json.encoder import encode_basestring_ascii as json_string  # json.dumps of a str
from typing import Protocol, TypeVar
from urllib.parse import unquote

import pybase64
from pydantic import BaseModel, JsonValue, ValidationError

from enclave_runtime.kbs_protocol import (
    KBS_PROTOCOL_VERSION,
    Attestation,
    JweResponse,
    KbsProtocolError,
    Request,
    encrypt_to_tee_key,
    report_data_for,
)
from enclave_runtime.kbs_protocol.init_data import InitDataError, pod_and_config_id
from enclave_runtime.kbs_protocol.models import (
    HASH_ALGORITHM,
    SELECTED_HASH_ALGORITHM,
    SUPPORTED_HASH_ALGORITHMS,
    TEE_SGX,
)
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.policy import refuse_sample_signer
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.errors import (
    KBS_PROBLEM_PREFIX,
    BackendUnavailableError,
    BadRequestError,
    InitDataMismatchError,
    NonceMismatchError,
    NonceReplayedError,
    PodNotNamedError,
    PolicyChangedError,
    ReportDataMismatchError,
    ResourceForbiddenError,
    ResourceNotFoundError,
    SessionMissingError,
    http_status_of,
    kbs_problem_of,
)
from kubetee.attestation_service.http_messages import HttpRequest, HttpResponse
from kubetee.attestation_service.printable import printable
from kubetee.attestation_service.replay import NonceLedger
from kubetee.attestation_service.session_cookie import session_cookie, set_session_cookie
from kubetee.attestation_service.sessions import (
    AttestedSession,
    ChallengeSession,
    PodRef,
    SessionSigner,
)
from kubetee.attestation_service.workloads import (
    AttestationReporter,
    PlatformCheck,
    Workload,
    WorkloadDirectory,
)
from kubetee.metrics.attestation import attestation_metrics
from kubetee.tcb.grace import apply_policy_in_grace

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

MAX_BODY_BYTES = 1024 * 1024
_COMPATIBLE_VERSION = KBS_PROTOCOL_VERSION.rsplit(".", 1)[0] + "."  # "0.4.": same payloads
_QUOTE = "quote"  # SgxEvidence's one field
_SELECTED_HASH = {SELECTED_HASH_ALGORITHM: HASH_ALGORITHM}
_CHALLENGE_TAIL = f', "extra-params": {json.dumps(_SELECTED_HASH)}}}'


class EvidenceVerifier(Protocol):
    """Checks that a quote is genuine (signatures, chains, TCB); the platform check and the
    policy come after, once the evidence names its pod."""

    async def verify(self, quote: bytes, now: datetime) -> VerifiedQuote: ...


@dataclass
class KbsService:
    """The service's collaborators; one instance is shared by all requests.

    ``platforms`` (optional) checks that the quote's platform is the one registered for
    the pod's node, once the evidence has verified and named its pod.
    """

    sessions: SessionSigner
    ledger: NonceLedger
    verifier: EvidenceVerifier
    workloads: WorkloadDirectory
    reporter: AttestationReporter
    clock: Callable[[], float] = field(default=time.time)
    platforms: PlatformCheck | None = None
    # Quotes come from the simulated SGX authority: policies may pin the sample key.
    simulator: bool = False
    # Why no attestation can complete now (None: it can); answered at /readyz.
    readiness: Callable[[], Awaitable[str | None]] | None = None

    def now(self) -> int:
        return int(self.clock())


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
# Wraps a handler: sees the request, calls the handler (or not), sees the answer.
Middleware = Callable[[HttpRequest, Handler], Awaitable[HttpResponse]]
_RESOURCE = "/kbs/v0/resource/"


class KbsApp:
    """The service's routes, answered with problem details for every refusal; what an
    :class:`~.http_connection.HttpConnection` serves.

    ``middlewares`` (added before serving) wrap every handler, innermost last: they see
    a refusal as its exception, before it becomes problem details.
    """

    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, service: KbsService) -> None:
        self.service = service
        self.middlewares: list[Middleware] = []
        self._routes: dict[str, dict[str, Handler]] = {
            "/kbs/v0/auth": {"POST": partial(_auth, service)},
            "/kbs/v0/attest": {"POST": partial(_attest, service)},
            "/healthz": {"GET": partial(_healthz, service)},
            "/readyz": {"GET": partial(_readyz, service)},
        }
        self._resource: dict[str, Handler] = {"GET": partial(_resource, service)}

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        methods = self._methods(request)
        # HEAD is GET without the body (the connection leaves it out).
        method = "GET" if request.method == "HEAD" else request.method
        handler = None if methods is None else methods.get(method)
        if handler is None:
            return self._not_routed(methods)
        for middleware in reversed(self.middlewares):
            handler = _wrapped(middleware, handler)
        try:
            return await handler(request)
        except AttestationError as error:
            log.warning(
                "refused %s %s: %s (%s): %s",
                request.method,
                printable(request.path, 120),
                error.reason,
                error.code,
                printable(error.message, 400),
            )
            return problem(error)

    def refusal(self, status: int, detail: str) -> HttpResponse:
        """Problem details for a request refused before any handler: its path or method
        (``InvalidRequestPath``), its shape or size (``SerdeError``), or an error of the
        service's own (``InternalError``)."""
        kind = "InvalidRequestPath" if status in {404, 405} else "SerdeError"
        if status >= 500:
            kind = "InternalError"
        return _json(
            {"type": KBS_PROBLEM_PREFIX + kind, "detail": detail, "reason": kind}, status=status
        )

    def _methods(self, request: HttpRequest) -> dict[str, Handler] | None:
        """The route's handlers by method (None: no route); decodes the path once."""
        if "%" in request.path and not request.path.startswith(_RESOURCE):
            request.path = unquote(request.path)  # as routed, for the middlewares and logs
        methods = self._routes.get(request.path)
        if methods is not None or not request.path.startswith(_RESOURCE):
            return methods
        segments = request.path[len(_RESOURCE) :].split("/")
        if len(segments) != 3:
            return None
        try:
            decoded = [unquote(segment, errors="strict") for segment in segments]
        except UnicodeDecodeError:
            return None
        if not all(decoded):
            return None
        request.match_info = dict(zip(("repository", "type", "tag"), decoded, strict=True))
        return self._resource

    def _not_routed(self, methods: dict[str, Handler] | None) -> HttpResponse:
        if methods is None:
            return self.refusal(404, "Not Found")
        response = self.refusal(405, "Method Not Allowed")
        allowed = sorted({*methods, "HEAD"} if "GET" in methods else set(methods))
        response.add_header("Allow", ", ".join(allowed))
        return response


def _wrapped(middleware: Middleware, handler: Handler) -> Handler:
    async def call(request: HttpRequest) -> HttpResponse:
        return await middleware(request, handler)

    return call


def create_app(service: KbsService) -> KbsApp:
    return KbsApp(service)


def _json(document: object, *, status: int = 200) -> HttpResponse:
    """A JSON answer of ``document`` as ``json.dumps`` writes it."""
    return _json_text(json.dumps(document), status=status)


def _json_text(text: str, *, status: int = 200) -> HttpResponse:
    """A JSON response whose body ``text`` is already written as ``json.dumps`` would."""
    return HttpResponse(status, text.encode())


def _json_strings(members: Iterable[tuple[str, str]]) -> str:
    """``json.dumps`` of an object whose values are all strings (tokens, nonces, a JWE's
    members), without the general encoder on the way of every attestation."""
    return "{" + ", ".join(f"{json_string(k)}: {json_string(v)}" for k, v in members) + "}"


def _challenge_json(nonce: str) -> str:
    """``Challenge(nonce=..., extra_params=...).to_wire()`` as ``json.dumps`` writes it."""
    return '{"nonce": ' + json_string(nonce) + _CHALLENGE_TAIL


def _jwe_members(jwe: JweResponse) -> Iterable[tuple[str, str]]:
    """``jwe.to_wire()``'s members in its order (no aliases; ``aad`` only when set),
    read from the model without serializing it."""
    yield from (
        ("protected", jwe.protected),
        ("encrypted_key", jwe.encrypted_key),
        ("iv", jwe.iv),
        ("ciphertext", jwe.ciphertext),
        ("tag", jwe.tag),
    )
    if jwe.aad is not None:
        yield "aad", jwe.aad


def problem(error: AttestationError) -> HttpResponse:
    return _json(
        {
            "type": KBS_PROBLEM_PREFIX + kbs_problem_of(error),
            "detail": printable(error.message, 1000),
            "reason": error.reason,
        },
        status=http_status_of(error),
    )


async def _healthz(_service: KbsService, _request: HttpRequest) -> HttpResponse:
    """Liveness: the process serves requests (restarting it cures nothing else)."""
    return _json({"status": "ok"})


async def _readyz(service: KbsService, _request: HttpRequest) -> HttpResponse:
    """Readiness: an attestation could complete now (its Kubernetes API and etcd
    answer). 503 with the cause otherwise, so a Service sends clients elsewhere and the
    operator reports the cause."""
    check = service.readiness
    problem = await check() if check is not None else None
    if problem is None:
        return _json({"status": "ok"})
    return _json(
        {"status": "unavailable", "reason": "BackendUnavailable", "detail": problem}, status=503
    )


async def _auth(service: KbsService, request: HttpRequest) -> HttpResponse:
    kbs_request = _parse_body(request, Request)
    if not kbs_request.version.startswith(_COMPATIBLE_VERSION):
        raise BadRequestError(
            f"KBS protocol version {printable(kbs_request.version, 40)!r} is not supported; "
            f"this service speaks {KBS_PROTOCOL_VERSION}"
        )
    if kbs_request.tee != TEE_SGX:
        raise BadRequestError(
            f"TEE {printable(kbs_request.tee, 40)!r} is not supported; only {TEE_SGX!r}"
        )
    _check_hash_algorithms(kbs_request.extra_params)
    session, cookie = service.sessions.new_challenge(service.now())
    response = _json_text(_challenge_json(session.nonce))
    set_session_cookie(response, cookie, service.sessions.nonce_ttl_seconds)
    return response


def _check_hash_algorithms(extra_params: JsonValue) -> None:
    """kbs_protocol lists the hashes it can bind runtime data with; this service uses
    SHA-384 (the protocol's default), so a client that cannot is told at once."""
    offered = (
        extra_params.get(SUPPORTED_HASH_ALGORITHMS) if isinstance(extra_params, dict) else None
    )
    if not isinstance(offered, list):
        return
    names = {str(name).lower() for name in offered if isinstance(name, str)}
    if HASH_ALGORITHM not in names:
        raise BadRequestError(
            f"extra-params.{SUPPORTED_HASH_ALGORITHMS} does not offer {HASH_ALGORITHM}, the "
            "only runtime-data hash this service accepts"
        )


async def _attest(service: KbsService, request: HttpRequest) -> HttpResponse:
    now = service.now()
    challenge = service.sessions.read_challenge(session_cookie(request))
    service.sessions.check_fresh(challenge, now)
    service.sessions.check_issued_here(challenge)
    if service.ledger.known_used(challenge.nonce):
        raise NonceReplayedError("this nonce was already used for an attestation")
    attestation = _parse_body(request, Attestation)
    if attestation.runtime_data.nonce != challenge.nonce:
        raise NonceMismatchError("runtime-data.nonce is not the nonce of this session's challenge")
    quote = _quote_of(attestation)
    pod, config_id = _pod_and_config_id(attestation)
    verified = await _verify(service, quote, now)
    expected = report_data_for(
        attestation.runtime_data, attestation.tee_evidence.additional_evidence
    )
    if verified.report_data != expected:
        raise ReportDataMismatchError(
            "the quote's report data does not bind this session's nonce and tee-pubkey: "
            "the quote was made for another attestation"
        )
    if verified.config_id != config_id:
        raise InitDataMismatchError(
            "the quote's CONFIGID is not the digest of the init-data sent with it: the "
            "enclave was launched for another pod"
        )
    workload = await service.workloads.workload_of(pod)
    # The evidence is genuine, fresh and names this workload: its outcome is recorded.
    return await _conclude(service, challenge, attestation, workload, verified, now)


async def _conclude(  # noqa: PLR0917  # one step of _attest, split for size
    service: KbsService,
    challenge: ChallengeSession,
    attestation: Attestation,
    workload: Workload,
    verified: VerifiedQuote,
    now: int,
) -> HttpResponse:
    refusal: AttestationError | None = None
    try:
        if service.platforms is not None:
            await service.platforms.check(workload, verified)
        graced = apply_policy_in_grace(
            verified,
            workload.enclave_container.policy,
            workload.tcb_recovery_deadline,
            datetime.fromtimestamp(now, UTC),
            pending_since=workload.tcb_recovery_since,
        )
        if graced:
            log.info(
                "pod %s: platform %s refused by the policy, accepted until its TCB recovery "
                "deadline %s",
                printable(workload.pod, 160),
                verified.tcb_status,
                workload.tcb_recovery_deadline,
            )
        if not service.simulator:
            refuse_sample_signer(workload.enclave_container.policy)
    except BackendUnavailableError:
        raise
    except AttestationError as error:
        refusal = error
    attested = AttestedSession(
        pod=workload.pod,
        enclave_container=workload.enclave_container.name,
        policy_hash=workload.enclave_container.policy_hash,
        tee_pubkey=attestation.runtime_data.tee_pubkey,
        expires_at=now + service.sessions.token_ttl_seconds,
    )
    keep_until = max(challenge.expires_at, attested.expires_at)
    # One write per nonce, whatever the outcome: a replay is refused without an Event.
    if refusal is not None:
        await service.ledger.record(challenge.nonce, keep_until, None)
        await service.reporter.refused(workload, refusal)
        raise refusal
    token = service.sessions.issue_token(attested, now)
    await service.ledger.record(challenge.nonce, keep_until, token)
    await service.reporter.attested(
        workload, verified, datetime.fromtimestamp(attested.expires_at, UTC)
    )
    log.info(
        "attested pod %s of EnclaveContainer %s: mrenclave %s, isvSvn %d, TCB %s",
        printable(workload.pod, 160),
        workload.enclave_container.name,
        verified.mrenclave.hex()[:16],
        verified.isv_svn,
        verified.tcb_status,
    )
    response = _json_text(_json_strings((("token", token),)))
    set_session_cookie(response, token, service.sessions.token_ttl_seconds)
    return response


async def _verify(service: KbsService, quote: bytes, now: int) -> VerifiedQuote:
    try:
        return await service.verifier.verify(quote, datetime.fromtimestamp(now, UTC))
    except AttestationError:
        raise
    except (OSError, ValueError) as exc:
        # The collateral source failed (file unreadable, service down): not the client's fault.
        raise BackendUnavailableError(
            f"quote collateral is unavailable ({type(exc).__name__}); retry later"
        ) from None


def _pod_and_config_id(attestation: Attestation) -> tuple[PodRef, bytes]:
    init_data = attestation.init_data
    if init_data is None:
        raise PodNotNamedError(
            "the attestation carries no init-data naming the pod: launch the enclave with "
            "CONFIGID = the digest of init-data naming namespace, pod and pod UID, and "
            "send that init-data"
        )
    try:
        pod, config_id = pod_and_config_id(init_data)
    except InitDataError as exc:
        raise PodNotNamedError(f"init-data: {exc}") from None
    return PodRef(namespace=pod.namespace, name=pod.name, uid=pod.uid), config_id


async def _resource(service: KbsService, request: HttpRequest) -> HttpResponse:
    session = await _attested_session(request, service)
    namespace = request.match_info["repository"]
    name = request.match_info["type"]
    secret = request.match_info["tag"]
    if namespace != session.pod.namespace or name != session.enclave_container:
        raise ResourceForbiddenError(
            f"this attestation releases only {session.pod.namespace}/"
            f"{session.enclave_container}/<secret>, not "
            f"{printable(namespace, 63)}/{printable(name, 63)}/{printable(secret, 63)}"
        )
    current = await service.workloads.enclave_container(namespace, name)
    if current.policy_hash != session.policy_hash:
        raise PolicyChangedError(
            f"the attestation policy of {current.name} changed since this attestation; attest again"
        )
    ref = current.secrets.get(secret)
    if ref is None:
        raise ResourceNotFoundError(f"{current.name} has no secret named {printable(secret, 63)!r}")
    value = await service.workloads.secret_value(current.namespace, ref)
    try:
        wrapped = encrypt_to_tee_key(value, session.tee_pubkey)
    except KbsProtocolError:
        raise SessionMissingError("the attested tee-pubkey cannot be wrapped to") from None
    log.info("released secret %s of %s to pod %s", secret, current.name, printable(session.pod))
    attestation_metrics().secret_released(current.namespace, current.name)
    return _json_text(_json_strings(_jwe_members(wrapped)))


async def _attested_session(request: HttpRequest, service: KbsService) -> AttestedSession:
    """The attestation a resource request presents: the attested token (bearer or cookie)
    or the ``/auth`` cookie of a session that attested (looked up in the ledger)."""
    now = service.now()
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("Bearer "):
        return service.sessions.read_token(authorization.removeprefix("Bearer ").strip(), now)
    cookie = session_cookie(request)
    if cookie and service.sessions.is_challenge(cookie):
        challenge = service.sessions.read_challenge(cookie)
        if not service.sessions.issued_here(challenge):
            raise SessionMissingError(
                "this session's challenge was issued by another attestation service replica, "
                "which alone keeps its outcome: send the attestation token /attest returned "
                "(its cookie, or Authorization: Bearer), or keep the exchange on one connection"
            )
        token = await service.ledger.attested_token(challenge.nonce)
        if token is None:
            raise SessionMissingError(
                "this session has not attested successfully; attest at /kbs/v0/attest first"
            )
        return service.sessions.read_token(token, now)
    return service.sessions.read_token(cookie, now)


def _parse_body(request: HttpRequest, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(request.body)
    except ValidationError as exc:
        fields = ", ".join(
            printable(".".join(str(p) for p in e["loc"]), 60) or "body" for e in exc.errors()[:5]
        )
        raise BadRequestError(f"malformed {model.__name__} payload (check: {fields})") from None


def _quote_of(attestation: Attestation) -> bytes:
    # What SgxEvidence accepts from parsed JSON (its only field, a non-empty string),
    # checked without validating the parsed body a second time.
    evidence = attestation.tee_evidence.primary_evidence
    quote = evidence.get(_QUOTE) if isinstance(evidence, dict) and len(evidence) == 1 else None
    try:
        if isinstance(quote, str) and quote:
            return _strict_base64(quote)
    except (binascii.Error, ValueError):
        pass
    raise BadRequestError('tee-evidence.primary_evidence must be {"quote": <base64 SGX quote>}')


def _strict_base64(text: str) -> bytes:
    """``base64.b64decode(text, validate=True)``. Canonical base64 (every quote a client
    sends: about 6 KB) is decoded by pybase64's vectorised decoder, a twentieth of the
    standard library's time; anything it refuses goes the standard library's way, which
    accepts or refuses it as before."""
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return base64.b64decode(text, validate=True)
