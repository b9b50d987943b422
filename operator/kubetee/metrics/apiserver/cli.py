"""``kubetee metrics-apiserver``: serve ``custom.metrics.k8s.io/v1beta2`` for the HPA.

    kubetee metrics-apiserver [serve] --tls-cert-file F --tls-private-key-file K
    kubetee metrics-apiserver serve --cert-dir DIR --tls-name NAME ...
    kubetee metrics-apiserver local [--cluster NAME] [--stop]

``serve`` runs the aggregated API server (in a cluster, behind an APIService);
``local`` starts it for a local cluster (``kubetee cluster up``) as a process and
registers its APIService, or stops and unregisters it. Exit codes: 0 stopped, 2 bad
configuration, 1 could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes import config as k8s_config
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetee.k8s.sync_client import sync_api_client
from kubetee.metrics import names
from kubetee.metrics.apiserver.app import ApiserverMetrics, Server, create_app, server_ssl_context
from kubetee.metrics.apiserver.auth import (
    AuthenticationConfigError,
    FrontProxyAuthenticator,
    RequestHeaderConfig,
)
from kubetee.metrics.apiserver.authz import SubjectAccessReviewAuthorizer
from kubetee.metrics.apiserver.kube import KubernetesReader
from kubetee.metrics.apiserver.provider import MetricsProvider
from kubetee.metrics.apiserver.scrape import (
    FileSDTargets,
    PodIPTargets,
    RuntimeScraper,
    TargetResolver,
)
from kubetee.metrics.apiserver.tls import ensure_serving_certificate
from kubetee.metrics.errors import CustomMetricsError, MetricsError
from kubetee.metrics.serve import start_metrics_server

log = logging.getLogger("kubetee.metrics_apiserver")
PROG = "kubetee metrics-apiserver"


class ApiserverSettings(BaseSettings):
    """Flags, or ``KUBETEE_METRICS_APISERVER_<FLAG>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="KUBETEE_METRICS_APISERVER_", extra="ignore")

    kubeconfig: Path | None = None
    bind_address: str = "0.0.0.0"  # noqa: S104 - the kube-apiserver connects from elsewhere
    secure_port: int = Field(default=names.METRICS_APISERVER_PORT, ge=1, le=65535)
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    cert_dir: Path | None = None
    tls_names: list[str] = Field(default_factory=list)
    tls_ip_addresses: list[str] = Field(default_factory=list)
    requestheader_client_ca_file: Path | None = None
    requestheader_allowed_names: list[str] = Field(default_factory=list)
    runtime_metrics_port: int = Field(default=names.DEFAULT_PORTS["runtime"], ge=1, le=65535)
    file_sd: list[str] = Field(default_factory=list)
    scrape_timeout: float = Field(default=2.0, gt=0, le=30)
    authorization_cache_ttl: float = Field(default=10.0, ge=0, le=300)
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @model_validator(mode="after")
    def _one_certificate_source(self) -> ApiserverSettings:
        given = self.tls_cert_file is not None, self.tls_private_key_file is not None
        if given[0] != given[1]:
            raise ValueError("--tls-cert-file and --tls-private-key-file go together")
        if not given[0] and self.cert_dir is None:
            raise ValueError(
                "a serving certificate is needed: --tls-cert-file and --tls-private-key-file, "
                "or --cert-dir (and --tls-name) to make one"
            )
        if self.cert_dir is not None and not self.tls_names:
            raise ValueError("--cert-dir needs at least one --tls-name (e.g. <svc>.<ns>.svc)")
        return self


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "metrics-apiserver",
        help="the custom metrics API (custom.metrics.k8s.io) for HPAs on EPC",
        description="Serve custom.metrics.k8s.io/v1beta2 as an aggregated API server: EPC "
        "utilization and use of pods and EnclaveContainers, scraped from their enclave "
        "runtimes, for HorizontalPodAutoscalers.",
    )
    _serve_flags(parser)
    parser.set_defaults(func=run_serve)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    # SUPPRESS: flags given before "serve" are not reset by the subparser's defaults.
    serve = actions.add_parser(
        "serve", help="run the API server (the default)", argument_default=argparse.SUPPRESS
    )
    _serve_flags(serve)
    serve.set_defaults(func=run_serve)
    local = actions.add_parser(
        "local", help="run it for a local cluster (kubetee cluster up) and register it"
    )
    local.add_argument("--cluster", default="default", help="local cluster name (default)")
    local.add_argument("--stop", action="store_true", help="stop it and remove the APIService")
    local.set_defaults(func=_run_local)


def _serve_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--kubeconfig", type=Path, help="default: in-cluster credentials, then $KUBECONFIG")
    add("--bind-address", help="address to listen on (default 0.0.0.0)")
    add("--secure-port", type=int, help=f"HTTPS port (default {names.METRICS_APISERVER_PORT})")
    add("--tls-cert-file", type=Path, help="serving certificate (PEM)")
    add("--tls-private-key-file", type=Path, help="its key (PEM)")
    add("--cert-dir", type=Path, help="keep a CA and a serving certificate here instead")
    add("--tls-name", dest="tls_names", action="append", help="DNS name for --cert-dir")
    add("--tls-ip", dest="tls_ip_addresses", action="append", help="IP for --cert-dir")
    add(
        "--requestheader-client-ca-file",
        type=Path,
        help="front-proxy client CA (default: from kube-system/extension-apiserver-authentication)",
    )
    add(
        "--requestheader-allowed-name",
        dest="requestheader_allowed_names",
        action="append",
        help="allowed front-proxy certificate common name (repeatable)",
    )
    add(
        "--runtime-metrics-port",
        type=int,
        help="port of the runtimes' /metrics on the pod IP (default 9094)",
    )
    add(
        "--file-sd",
        action="append",
        help="glob of Prometheus file_sd files naming the runtimes' endpoints, instead of pod "
        "IPs (the local cluster)",
    )
    add("--scrape-timeout", type=float, help="seconds (default 2)")
    add("--authorization-cache-ttl", type=float, help="seconds (default 10)")
    add("--metrics-port", type=int, help="plain-HTTP /metrics of this server (default 0: off)")


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def load_settings(args: argparse.Namespace) -> ApiserverSettings:
    fields = ApiserverSettings.model_fields
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return ApiserverSettings(**given)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        settings = load_settings(args)
    except ValidationError as error:
        return _fail(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in error.errors()
            )
        )
    try:
        return asyncio.run(serve(settings))
    except (MetricsError, OSError, k8s_config.ConfigException) as error:
        return _fail(str(error), code=1)


async def request_header_config(
    settings: ApiserverSettings, reader: KubernetesReader
) -> RequestHeaderConfig:
    if settings.requestheader_client_ca_file is not None:
        return RequestHeaderConfig(
            client_ca_pem=settings.requestheader_client_ca_file.read_text(),
            allowed_names=tuple(settings.requestheader_allowed_names),
        )
    try:
        return RequestHeaderConfig.from_configmap(await reader.authentication_configmap())
    except CustomMetricsError as error:
        raise AuthenticationConfigError(
            f"cannot read the front-proxy settings: {error}. Give "
            "--requestheader-client-ca-file, or let the server read the ConfigMap "
            "(RoleBinding to extension-apiserver-authentication-reader in kube-system)"
        ) from None


def _targets(settings: ApiserverSettings) -> TargetResolver:
    if settings.file_sd:
        return FileSDTargets(settings.file_sd)
    return PodIPTargets(settings.runtime_metrics_port)


async def serve(settings: ApiserverSettings) -> int:
    cert_file, key_file = settings.tls_cert_file, settings.tls_private_key_file
    if cert_file is None or key_file is None:
        assert settings.cert_dir is not None  # noqa: S101 - the settings validator ensures it
        certificate = ensure_serving_certificate(
            settings.cert_dir, tuple(settings.tls_names), tuple(settings.tls_ip_addresses)
        )
        cert_file, key_file = certificate.cert, certificate.key
    kube = sync_api_client(settings.kubeconfig)
    reader = KubernetesReader(kube)
    header_config = await request_header_config(settings, reader)
    metrics = ApiserverMetrics()
    if settings.metrics_port:
        start_metrics_server("metrics-apiserver", settings.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with aiohttp.ClientSession() as session:
        scraper = RuntimeScraper(
            session,
            _targets(settings),
            timeout_seconds=settings.scrape_timeout,
            on_error=metrics.scrape_errors.inc,
        )
        server = Server(
            authenticator=FrontProxyAuthenticator(header_config),
            authorizer=SubjectAccessReviewAuthorizer(
                reader.send_review, ttl_seconds=settings.authorization_cache_ttl
            ),
            provider=MetricsProvider(reader, scraper),
            metrics=metrics,
        )
        runner = web.AppRunner(create_app(server), access_log=None)
        await runner.setup()
        context = server_ssl_context(str(cert_file), str(key_file), header_config.client_ca_pem)
        site = web.TCPSite(runner, settings.bind_address, settings.secure_port, ssl_context=context)
        await site.start()
        log.info(
            "serving %s on https://%s:%d (runtimes found by %s)",
            "custom.metrics.k8s.io/v1beta2",
            settings.bind_address,
            settings.secure_port,
            "file_sd " + ", ".join(settings.file_sd) if settings.file_sd else "pod IP",
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            kube.close()  # type: ignore[no-untyped-call]
    log.info("stopped")
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from kubetee.metrics import local  # noqa: PLC0415 - needs the cluster tooling

    return local.run_cli(args.cluster, stop_it=args.stop)
