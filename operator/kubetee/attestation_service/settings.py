"""Configuration of ``kubetee attestation-service serve``: flags, or ``KUBETEE_KBS_*`` env."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


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
    simulator_authority_dir: Path | None = Field(
        default=None,
        description="Trust the cluster's simulated SGX authority (root and collateral).",
    )
    root_ca: Path | None = Field(
        default=None, description="Trusted root CA (DER or PEM); with --collateral."
    )
    collateral: Path | None = Field(
        default=None, description="Nine-field collateral JSON for the platforms' FMSPC."
    )
    kubeconfig: Path | None = Field(default=None, description="Default: in-cluster config.")
    metrics_port: int = Field(
        default=9091, ge=0, le=65535, description="Port of Prometheus /metrics; 0 turns it off."
    )
    replay_ledger: Literal["lease", "memory"] = Field(
        default="lease",
        description="lease: shared by all replicas (Leases); memory: one replica only.",
    )
    nonce_owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="ConfigMap in --namespace that owns the nonce Leases, so they are "
        "deleted with it (the chart's, removed by helm uninstall).",
    )

    @model_validator(mode="after")
    def _one_trust_source(self) -> Self:
        simulator = self.simulator_authority_dir is not None
        files = self.root_ca is not None or self.collateral is not None
        if simulator == files:
            raise ValueError(
                "configure trust either with --simulator-authority-dir or with both "
                "--root-ca and --collateral"
            )
        if files and (self.root_ca is None or self.collateral is None):
            raise ValueError("--root-ca and --collateral go together")
        return self
