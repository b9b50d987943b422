"""Configuration of ``kubetee attestation-service serve``: flags, or ``KUBETEE_KBS_*`` env."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MAX_WORKERS = 64  # also for --workers=0 on a bigger node


def _default_namespace() -> str:
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "kubetee-system"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETEE_KBS_", extra="ignore")

    host: str = Field(default="0.0.0.0", description="Address to listen on.")  # noqa: S104  # a service
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert: Path = Field(description="PEM serving certificate (chain).")
    tls_key: Path = Field(description="PEM private key of the serving certificate.")
    session_key_file: Path = Field(
        description="Shared secret (>= 32 bytes) all replicas sign sessions with, "
        "from a Kubernetes Secret."
    )
    namespace: str = Field(
        default_factory=_default_namespace,
        description="Namespace of the service, where nonce Leases are recorded.",
    )
    instance: str = Field(default_factory=socket.gethostname, description="This replica's name.")
    nonce_ttl_seconds: int = Field(default=60, ge=1, le=3600)
    token_ttl_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="How long an attestation holds: the token's and the pod condition's "
        "validity. Runtimes re-attest more often than this.",
    )
    root_ca: Path | None = Field(
        default=None,
        description="Trusted SGX root CA (DER or PEM). Default: Intel's SGX Root CA; for the "
        "simulator, the root_ca.pem of `kubetee pcs init`.",
    )
    pccs_url: str | None = Field(
        default=None,
        description="Fetch collateral from this PCCS (PCCS/PCS v4 API: Intel's PCCS, or "
        "`kubetee pcs serve`), e.g. https://pccs:8081.",
    )
    pccs_ca: Path | None = Field(
        default=None, description="CA bundle for the PCCS's TLS certificate (default: system)."
    )
    collateral_refresh_seconds: float = Field(
        default=300.0,
        ge=1,
        le=86400,
        description="Renew cached PCCS collateral at least this often, so a newer TCB "
        "evaluation is used within this time (nextUpdate alone may be weeks away).",
    )
    collateral: Path | None = Field(
        default=None,
        description="Instead of a PCCS: nine-field collateral JSON of the platforms' one FMSPC.",
    )
    platform_registry: str = Field(
        default="kubetee-sgx-platforms",
        description="ConfigMap [NAMESPACE/]NAME where the PCS records each node's platform; a "
        "quote must come from the pod's node's platform. Empty: no binding (not recommended).",
    )
    secret_namespaces: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(,[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$",
        description="Comma-separated namespaces whose Secrets EnclaveContainers may name "
        "(the service watches only these); empty: every namespace.",
    )
    kubeconfig: Path | None = Field(default=None, description="Default: in-cluster config.")
    metrics_port: int = Field(
        default=9091, ge=0, le=65535, description="Port of Prometheus /metrics; 0 turns it off."
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Open HTTPS connections at most (about 50 KiB each); more are closed.",
    )
    keepalive_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="Close a connection without a whole request, or idle, this long.",
    )
    tls_handshake_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    workers: int = Field(
        default=1,
        ge=0,
        le=MAX_WORKERS,
        description="Processes serving the port (SO_REUSEPORT), each verifying on its own "
        "core with its own nonces (--replay-ledger=replica); 0: one per whole CPU this "
        "process may use (its affinity, bounded by its container's CPU limit), at most "
        f"{MAX_WORKERS}. The first serves the metrics of all on --metrics-port.",
    )
    replay_ledger: Literal["replica", "lease", "memory"] = Field(
        default="replica",
        description="replica: each nonce bound to the process that issued it and kept in "
        "its memory (no apiserver write; clients keep the exchange on one connection); "
        "lease: shared by all replicas through a Lease per nonce; memory: one replica only.",
    )
    nonce_owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="ConfigMap in --namespace that owns the nonce Leases, so they are "
        "deleted with it (the chart's, removed by helm uninstall).",
    )

    @property
    def secret_namespace_list(self) -> tuple[str, ...]:
        return tuple(n for n in self.secret_namespaces.split(",") if n)

    @model_validator(mode="after")
    def _workers_need_bound_nonces(self) -> Self:
        if self.workers != 1 and self.replay_ledger == "memory":
            raise ValueError(
                "--replay-ledger=memory keeps nonces in one process: use --replay-ledger=replica "
                "(or lease) with several --workers"
            )
        return self

    @model_validator(mode="after")
    def _one_collateral_source(self) -> Self:
        if (self.pccs_url is None) == (self.collateral is None):
            raise ValueError(
                "configure collateral either with --pccs-url (a PCCS) or with --collateral (a file)"
            )
        if self.pccs_url is not None and not self.pccs_url.startswith(("https://", "http://")):
            raise ValueError("--pccs-url must be an http(s) URL")
        return self
