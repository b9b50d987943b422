"""The simulated PCS over HTTPS: the PCCS v4 collateral API, and platform registration.

The collateral endpoints (:mod:`kubetee.pcs.api`) are public, as Intel's are: the
collateral is signed, a verifier checks it against its pinned root. Registration
(:mod:`enclave_runtime.quoting.registration`) exists only with the simulated authority:
it authenticates the node first (:mod:`kubetee.pcs.auth`), then checks the request,
issues the PCK certificate and records the platform for that node
(:mod:`kubetee.pcs.registry`). Every refusal is ``{"error": CODE, "message"}``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from enclave_runtime.quoting.registration import (
    MAX_REQUEST_BYTES,
    REGISTRATION_PATH,
    RegistrationError,
    parse_registration_request,
)
from enclave_runtime.sgx.authority import SimulatedAuthority
from kubetee.pcs import api
from kubetee.pcs.auth import AuthenticationError, NodeIdentity
from kubetee.pcs.registry import PlatformRecord, RegistryUnavailableError, record_for
from kubetee.pcs.stores import CollateralStore, UnknownCollateralError

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> NodeIdentity: ...


class RecordingRegistry(Protocol):
    async def record(self, record: PlatformRecord) -> None: ...


@dataclass
class Registrar:
    """Issues PCK certificates to authenticated nodes and records them."""

    authority: SimulatedAuthority
    authenticator: Authenticator
    registry: RecordingRegistry


STORE_KEY = web.AppKey("store", CollateralStore)
REGISTRAR_KEY = web.AppKey("registrar", Registrar)


def create_app(store: CollateralStore, registrar: Registrar | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STORE_KEY] = store
    app.router.add_get(api.TCB_PATH, _tcb_info)
    app.router.add_get(api.QE_IDENTITY_PATH, _qe_identity)
    app.router.add_get(api.PCK_CRL_PATH, _pck_crl)
    app.router.add_get(api.ROOT_CA_CRL_PATH, _root_ca_crl)
    app.router.add_get("/healthz", _healthz)
    if registrar is not None:
        app[REGISTRAR_KEY] = registrar
        app.router.add_post(REGISTRATION_PATH, _register)
    return app


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _tcb_info(request: web.Request) -> web.Response:
    value = request.query.get("fmspc", "")
    try:
        fmspc = bytes.fromhex(value) if value.isascii() else b""
    except ValueError:
        fmspc = b""
    if len(fmspc) != 6:
        return _error(400, "INVALID_REQUEST", "fmspc must be 12 hex digits")
    try:
        text, signature, chain = request.app[STORE_KEY].tcb_info(fmspc)
    except UnknownCollateralError as error:
        return _error(404, "NOT_FOUND", str(error))
    return web.Response(
        body=api.signed_body(api.TCB_INFO_KEY, text, signature),
        content_type="application/json",
        headers={api.TCB_INFO_ISSUER_CHAIN: api.encode_chain(chain)},
    )


async def _qe_identity(request: web.Request) -> web.Response:
    text, signature, chain = request.app[STORE_KEY].qe_identity()
    return web.Response(
        body=api.signed_body(api.ENCLAVE_IDENTITY_KEY, text, signature),
        content_type="application/json",
        headers={api.ENCLAVE_IDENTITY_ISSUER_CHAIN: api.encode_chain(chain)},
    )


async def _pck_crl(request: web.Request) -> web.Response:
    ca = request.query.get("ca", "").lower()
    if ca not in api.CA_TYPES:
        return _error(400, "INVALID_REQUEST", "ca must be processor or platform")
    try:
        der, chain = request.app[STORE_KEY].pck_crl(ca)
    except UnknownCollateralError as error:
        return _error(404, "NOT_FOUND", str(error))
    headers = {api.PCK_CRL_ISSUER_CHAIN: api.encode_chain(chain)}
    wants_der = request.query.get("encoding", "").lower() == "der" or (
        api.CRL_MEDIA_TYPE in request.headers.get("Accept", "")
    )
    if wants_der:
        return web.Response(body=der, content_type=api.CRL_MEDIA_TYPE, headers=headers)
    pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    return web.Response(body=pem, content_type="application/x-pem-file", headers=headers)


async def _root_ca_crl(request: web.Request) -> web.Response:
    return web.Response(text=request.app[STORE_KEY].root_ca_crl().hex(), content_type="text/plain")


async def _register(request: web.Request) -> web.Response:
    registrar = request.app[REGISTRAR_KEY]
    try:
        # Authenticated before the body is even read: strangers learn nothing.
        node = await registrar.authenticator.authenticate(request.headers.get("Authorization"))
    except AuthenticationError as error:
        log.warning("registration refused: %s", error.code)
        return _error(error.status, error.code, error.message)
    try:
        raw = await request.read()
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise RegistrationError(
                "the registration request is not JSON", code="REGISTRATION_MALFORMED"
            ) from None
        registration = parse_registration_request(document)
        chain = registrar.authority.issue_pck_chain(
            registration.identity, registration.pck_public_key
        )
    except RegistrationError as error:
        log.warning("registration from node %s refused: %s", node.node, error.code)
        return _error(400, error.code, error.message)
    except ValueError as error:
        log.warning("registration from node %s refused: unsupported platform", node.node)
        return _error(400, "PLATFORM_UNSUPPORTED", str(error))
    record = record_for(node.node, chain[0], chain[1], node.username)
    try:
        await registrar.registry.record(record)
    except RegistryUnavailableError as error:
        log.error("cannot record the platform of node %s: %s", node.node, error)  # noqa: TRY400
        return _error(503, "REGISTRY_UNAVAILABLE", str(error))
    log.info(
        "registered the platform of node %s: FMSPC %s, %s CA, PCK serial %s",
        node.node,
        record.fmspc,
        record.ca,
        record.pck_serial,
    )
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain).decode()
    return web.json_response(
        {
            "node": node.node,
            "pck_certificate_chain": pem,
            "quoting_enclave": registrar.authority.settings.quoting_enclave.to_json(),
        },
        status=201,
        headers={api.FMSPC_HEADER: record.fmspc, api.CA_TYPE_HEADER: record.ca.upper()},
    )
