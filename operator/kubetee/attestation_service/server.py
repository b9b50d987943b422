"""Running the attestation service: wiring settings to the app, TLS, nonce collection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import secrets
import signal
import time
from pathlib import Path

import uvloop
from kubernetes import client
from prometheus_client import REGISTRY

from kubetee.attestation.roots import intel_sgx_root_ca_der, root_ca_der
from kubetee.attestation_service.app import KbsApp, KbsService, create_app
from kubetee.attestation_service.cluster_cache import ClusterCache
from kubetee.attestation_service.connections import ConnectionLimits, start
from kubetee.attestation_service.evidence import (
    CollateralSource,
    DcapEvidenceVerifier,
    FileCollateral,
    RegisteredPlatforms,
)
from kubetee.attestation_service.kubernetes_backend import KubernetesBackend
from kubetee.attestation_service.pccs import PccsCollateral
from kubetee.attestation_service.readiness import ApiReadiness, first_problem
from kubetee.attestation_service.replay import LeaseNonceLedger, MemoryNonceLedger, NonceLedger
from kubetee.attestation_service.sessions import SessionSigner
from kubetee.attestation_service.settings import MAX_WORKERS, ServiceSettings
from kubetee.attestation_service.tls import server_context
from kubetee.attestation_service.usable_cpus import usable_cpus
from kubetee.k8s.sync_client import sync_api_client
from kubetee.metrics import multiprocess, start_metrics_server
from kubetee.metrics.attestation import instrument_app
from kubetee.pcs.registry import ConfigMapRegistry, parse_registry

log = logging.getLogger(__name__)

_COLLECT_EVERY_SECONDS = 60.0
_REFRESH_COLLATERAL_EVERY_SECONDS = 30.0


def _collateral(settings: ServiceSettings) -> CollateralSource:
    if settings.pccs_url is not None:
        return PccsCollateral(
            settings.pccs_url,
            ca_file=settings.pccs_ca,
            max_age_seconds=settings.collateral_refresh_seconds,
        )
    if settings.collateral is None:
        raise ValueError("configure --pccs-url or --collateral")
    return FileCollateral(settings.collateral)


def _root(settings: ServiceSettings) -> bytes:
    if settings.root_ca is None:
        return intel_sgx_root_ca_der()
    return root_ca_der(settings.root_ca.read_bytes())


def _platforms(settings: ServiceSettings, api: client.ApiClient) -> RegisteredPlatforms | None:
    if not settings.platform_registry:
        log.warning(
            "no --platform-registry: a quote from any node's platform attests a pod on any node"
        )
        return None
    namespace, name = parse_registry(settings.platform_registry, settings.namespace)
    return RegisteredPlatforms(ConfigMapRegistry(api, namespace, name))


def build_service(settings: ServiceSettings) -> tuple[KbsService, NonceLedger]:
    api = sync_api_client(settings.kubeconfig)
    cache = ClusterCache(api, settings.secret_namespace_list)
    cache.start()  # attestations are refused (and /readyz says so) until it has synced
    backend = KubernetesBackend(api, cache, instance=settings.instance)
    root = _root(settings)
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
        # Drawn afresh per process: a restarted replica refuses the nonces of its past.
        replica=secrets.token_hex(16) if settings.replay_ledger == "replica" else None,
    )
    service = KbsService(
        sessions=sessions,
        ledger=ledger,
        verifier=DcapEvidenceVerifier(root, _collateral(settings)),
        platforms=_platforms(settings, api),
        workloads=backend,
        reporter=backend,
        # Any root but Intel's is a simulated authority's: its quotes may carry the sample key.
        simulator=root != intel_sgx_root_ca_der(),
        readiness=first_problem(
            cache.problem, ApiReadiness(client.CoordinationV1Api(api), settings.namespace).problem
        ),
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


async def _refresh_collateral(source: PccsCollateral) -> None:
    """Renew cached collateral before its nextUpdate, and keep its freshness metrics current."""
    while True:
        await asyncio.sleep(_REFRESH_COLLATERAL_EVERY_SECONDS)
        try:
            await source.refresh_due()
        except Exception:
            log.exception("renewing collateral failed; retrying later")


def worker_count(settings: ServiceSettings) -> int:
    """--workers, where 0 means one per whole CPU this process may use (its affinity,
    bounded by its container's CPU limit), at most ``MAX_WORKERS``."""
    return settings.workers or min(usable_cpus(), MAX_WORKERS)


def run(settings: ServiceSettings) -> None:
    """Serve; with several workers, the others are child processes on the same port (the
    kernel spreads connections over them), stopped when this one stops. All keep their
    metrics in one per-run directory, which this one serves on --metrics-port."""
    count = worker_count(settings)
    log.info(
        "%d worker process(es) serve port %d%s",
        count,
        settings.port,
        " (--workers=0: one per whole CPU of this container's affinity and CPU limit)"
        if settings.workers == 0
        else "",
    )
    shared_port = count > 1
    metrics_dir = multiprocess.enable("kubetee-kbs") if shared_port else None
    context = multiprocessing.get_context("spawn")
    others = [
        context.Process(
            target=_run_worker,
            # A port has one listener: this process serves every worker's metrics.
            args=(settings.model_copy(update={"metrics_port": 0}), shared_port, None),
            name=f"kbs-worker-{index}",
            daemon=True,
        )
        for index in range(1, count)
    ]
    for process in others:
        process.start()
    try:
        _run_worker(settings, shared_port, metrics_dir)
    finally:
        for process in others:
            process.terminate()
        for process in others:
            process.join(timeout=10)
        if metrics_dir is not None:
            multiprocess.remove(metrics_dir)


def _run_worker(settings: ServiceSettings, shared_port: bool, metrics_dir: Path | None) -> None:
    if shared_port and multiprocessing.parent_process() is not None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    service, ledger = build_service(settings)
    app = create_app(service)
    instrument_app(app)
    if settings.metrics_port:
        registry = (
            REGISTRY if metrics_dir is None else multiprocess.collecting_registry(metrics_dir)
        )
        start_metrics_server("attestation-service", settings.metrics_port, registry=registry)
    # uvloop: its TLS transport and loop cost a fraction of asyncio's per request, which
    # dominated the service's time on kept connections (docs/attestation.md).
    uvloop.run(_serve(app, service, ledger, settings, reuse_port=shared_port))


async def _serve(
    app: KbsApp,
    service: KbsService,
    ledger: NonceLedger,
    settings: ServiceSettings,
    *,
    reuse_port: bool = False,
) -> None:
    limits = ConnectionLimits(
        max_connections=settings.max_connections,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        handshake_timeout=settings.tls_handshake_timeout_seconds,
    )
    serving = await start(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=server_context(settings.tls_cert, settings.tls_key),
        limits=limits,
        reuse_port=reuse_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(_collect_nonces(ledger))]
    collateral = getattr(service.verifier, "collateral", None)
    if isinstance(collateral, PccsCollateral):
        tasks.append(asyncio.create_task(_refresh_collateral(collateral)))
    log.info(
        "attestation service %s listening on https://%s:%d (nonces %ds, attestations %ds, "
        "at most %d connections)",
        settings.instance,
        settings.host,
        settings.port,
        settings.nonce_ttl_seconds,
        settings.token_ttl_seconds,
        settings.max_connections,
    )
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if isinstance(collateral, PccsCollateral):
            await collateral.close()
        await serving.close()
