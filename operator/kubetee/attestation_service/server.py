"""Running the attestation service: wiring settings to the app, TLS, nonce collection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from kubernetes import client

from kubetee.attestation.roots import root_ca_der
from kubetee.attestation_service.app import KbsService, create_app
from kubetee.attestation_service.evidence import DcapEvidenceVerifier, FileCollateral
from kubetee.attestation_service.kubernetes_backend import KubernetesBackend
from kubetee.attestation_service.replay import LeaseNonceLedger, MemoryNonceLedger, NonceLedger
from kubetee.attestation_service.sessions import SessionSigner
from kubetee.attestation_service.settings import ServiceSettings
from kubetee.attestation_service.tls import server_context
from kubetee.k8s.sync_client import sync_api_client
from kubetee.metrics import start_metrics_server
from kubetee.metrics.attestation import instrument_app

log = logging.getLogger(__name__)

_COLLECT_EVERY_SECONDS = 60.0


def _verifier(settings: ServiceSettings) -> DcapEvidenceVerifier:
    if settings.simulator_authority_dir is not None:
        return DcapEvidenceVerifier.for_simulator(settings.simulator_authority_dir)
    if settings.root_ca is None or settings.collateral is None:
        raise ValueError("--root-ca and --collateral go together")
    return DcapEvidenceVerifier(
        root_ca_der(settings.root_ca.read_bytes()), FileCollateral(settings.collateral)
    )


def build_service(settings: ServiceSettings) -> tuple[KbsService, NonceLedger]:
    api = sync_api_client(settings.kubeconfig)
    backend = KubernetesBackend(api, instance=settings.instance)
    ledger: NonceLedger
    if settings.replay_ledger == "lease":
        ledger = LeaseNonceLedger(
            client.CoordinationV1Api(api),
            settings.namespace,
            settings.instance,
            core_api=client.CoreV1Api(api),
            owner=settings.nonce_owner,
        )
    else:
        ledger = MemoryNonceLedger()
    sessions = SessionSigner(
        settings.session_key_file.read_bytes().strip(),
        nonce_ttl_seconds=settings.nonce_ttl_seconds,
        token_ttl_seconds=settings.token_ttl_seconds,
    )
    service = KbsService(
        sessions=sessions,
        ledger=ledger,
        verifier=_verifier(settings),
        workloads=backend,
        reporter=backend,
    )
    return service, ledger


async def _collect_nonces(ledger: NonceLedger) -> None:
    while True:
        await asyncio.sleep(_COLLECT_EVERY_SECONDS)
        collect = getattr(ledger, "collect_expired", None)
        if collect is None:
            return
        try:
            result = collect(int(time.time()))
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                log.info("collected %d expired nonce record(s)", result)
        except Exception:
            log.exception("collecting expired nonces failed; retrying later")


def run(settings: ServiceSettings) -> None:
    service, ledger = build_service(settings)
    app = create_app(service)
    instrument_app(app)
    if settings.metrics_port:
        start_metrics_server("attestation-service", settings.metrics_port)

    async def background(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_collect_nonces(ledger))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(background)
    log.info(
        "attestation service %s listening on https://%s:%d (nonces %ds, attestations %ds)",
        settings.instance,
        settings.host,
        settings.port,
        settings.nonce_ttl_seconds,
        settings.token_ttl_seconds,
    )
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=server_context(settings.tls_cert, settings.tls_key),
        access_log=None,
        print=None,
    )
