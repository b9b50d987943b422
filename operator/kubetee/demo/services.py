"""KubeTEE's own services on the local cluster: installed by the chart, run as processes.

KWOK nodes run no containers, so the chart's Deployments there are Running without any
code behind them. The demo runs the operator and two attestation-service replicas as
local processes of the cluster instead (``kubetee cluster status`` lists them,
``kubetee cluster down`` stops them, the next ``up`` starts them again, and the
cluster's supervisor restarts one that dies or, for the operator, stops answering),
each authenticated as the ServiceAccount the chart made for it: the apiserver
enforces exactly the chart's RBAC on them.
"""

from __future__ import annotations

import os
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubetee.attestation_service.tls import TlsFiles, generate
from kubetee.cluster import pcs
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.processes import ManagedProcess, free_port
from kubetee.demo.errors import DemoError
from kubetee.demo.kube import Kube

RELEASE_NAMESPACE = "kubetee-system"
ATTESTATION_REPLICAS = ("a", "b")
SERVICE_ACCOUNT_TOKEN_LIFETIME = "24h"  # noqa: S105 - a duration, not a secret


@dataclass(frozen=True)
class LocalServices:
    """Where the demo's local services answer."""

    attestation_urls: list[str]
    attestation_ca: Path
    operator_metrics: str
    attestation_metrics: list[str]


def _service_dir(layout: ClusterLayout) -> Path:
    path = layout.workdir / "kubetee-services"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _process(layout: ClusterLayout, name: str) -> ManagedProcess:
    return ManagedProcess(name, layout.run_dir, layout.log_dir)


def _port(layout: ClusterLayout, name: str) -> int:
    port = layout.ports.setdefault(name, free_port())
    layout.save()
    return port


def service_account_kubeconfig(kube: Kube, layout: ClusterLayout, account: str) -> Path:
    """A kubeconfig that authenticates as ``account`` of the chart, by a bound token."""
    token = kube.kubectl(
        "create", "token", account, f"--namespace={RELEASE_NAMESPACE}",
        f"--duration={SERVICE_ACCOUNT_TOKEN_LIFETIME}",
    ).strip()  # fmt: skip
    path = _service_dir(layout) / f"{account}.kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": layout.apiserver_url,
                    "certificate-authority": str(layout.pki_dir / "ca.crt"),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "local", "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _tls(layout: ClusterLayout) -> TlsFiles:
    directory = _service_dir(layout) / "attestation-tls"
    existing = TlsFiles.in_dir(directory)
    if all(p.exists() for p in (existing.ca, existing.certificate, existing.key)):
        return existing
    return generate(directory, ["127.0.0.1", "localhost"])


def _session_key(layout: ClusterLayout) -> Path:
    """The key every replica signs sessions with (the chart keeps it in a Secret)."""
    path = _service_dir(layout) / "session.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path


def start(kube: Kube, layout: ClusterLayout) -> LocalServices:
    """Start (or keep) the attestation service replicas and the operator; wait for them."""
    tls = _tls(layout)
    attestation_kubeconfig = service_account_kubeconfig(kube, layout, "kubetee-attestation")
    urls, metrics = [], []
    for replica in ATTESTATION_REPLICAS:
        port = _port(layout, f"attestation-{replica}")
        metrics_port = _port(layout, f"attestation-{replica}-metrics")
        url = f"https://127.0.0.1:{port}"
        process = _process(layout, f"kubetee-attestation-{replica}")
        if process.pid() is None:
            process.start(
                [
                    sys.executable, "-m", "kubetee.cli", "attestation-service", "serve",
                    "--host=127.0.0.1", f"--port={port}",
                    f"--tls-cert={tls.certificate}", f"--tls-key={tls.key}",
                    f"--session-key-file={_session_key(layout)}",
                    f"--namespace={RELEASE_NAMESPACE}", f"--instance=local-{replica}",
                    f"--pccs-url={pcs.url(layout)}", f"--pccs-ca={pcs.tls_files(layout).ca}",
                    f"--root-ca={pcs.root_ca(layout)}", f"--platform-registry={pcs.REGISTRY}",
                    f"--kubeconfig={attestation_kubeconfig}",
                    f"--metrics-port={metrics_port}",
                ],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        _wait_healthy(url, tls.ca, process)
        urls.append(url)
        metrics.append(f"http://127.0.0.1:{metrics_port}/metrics")

    operator_kubeconfig = service_account_kubeconfig(kube, layout, "kubetee-operator")
    operator_metrics = _port(layout, "operator-metrics")
    liveness = _port(layout, "operator-liveness")
    operator = _process(layout, "kubetee-operator")
    if operator.pid() is None:
        operator.start(
            [
                sys.executable, "-m", "kubetee.cli", "operator",
                f"--kubeconfig={operator_kubeconfig}",
                f"--liveness=http://127.0.0.1:{liveness}/healthz",
                f"--metrics-port={operator_metrics}",
                # Every replica: runtimes fail over to any that answers.
                f"--attestation-url={','.join(urls)}", f"--attestation-ca={tls.ca}",
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **_tcb_recovery_env(layout)},
            # The cluster's supervisor restarts an operator that stops answering.
            liveness=f"http://127.0.0.1:{liveness}/healthz",
        )  # fmt: skip
    _wait_http(f"http://127.0.0.1:{liveness}/healthz", None, operator)
    return LocalServices(urls, tls.ca, f"http://127.0.0.1:{operator_metrics}/metrics", metrics)


def _tcb_recovery_env(layout: ClusterLayout) -> dict[str, str]:
    """TCB recovery as the chart configures it: nodes judged by the local PCS's TCB Info,
    platforms read from its registry (the chart's Role lets the operator read it)."""
    return {
        "KUBETEE_PCCS_URL": pcs.url(layout),
        "KUBETEE_PCCS_CA": str(pcs.tls_files(layout).ca),
        "KUBETEE_SGX_ROOT_CA": str(pcs.root_ca(layout)),
        "KUBETEE_PLATFORM_REGISTRY": pcs.REGISTRY,
    }


def _wait_healthy(url: str, ca: Path, process: ManagedProcess) -> None:
    _wait_http(f"{url}/healthz", ssl.create_default_context(cafile=str(ca)), process)


def _wait_http(url: str, context: ssl.SSLContext | None, process: ManagedProcess) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.pid() is None:
            raise DemoError(
                f"{process.name} exited while starting; its log {process.log_file} ends:\n"
                f"{process.last_log_lines()}"
            )
        try:
            with urllib.request.urlopen(url, context=context, timeout=2):  # noqa: S310 - loopback
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise DemoError(f"{process.name} did not answer at {url} within 90s; see {process.log_file}")
