"""Settings of ``kubetee operator``: ``KUBETEE_*`` environment variables, flags on top.

Validated once at start; a bad value stops the operator with a line naming the
variable, before it touches the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["text", "json"]


class SettingsError(ValueError):
    """Invalid operator settings; the message names each bad variable."""


class OperatorSettings(BaseSettings):
    """How the operator runs and what it puts into every replica."""

    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces whose EnclaveContainers to serve; empty serves all "
        "(EPCPool accounting needs every namespace's pods to be exact).",
    )
    runtime_image: str = Field(
        default="kubetee/kubetee:0.1.0",
        min_length=1,
        description="Image of the enclave runtime sidecar (runs `kubetee runtime`).",
    )
    default_scheduler: str = Field(
        default="kubetee-binpack",
        min_length=1,
        description="Scheduler profile of EnclaveContainers without a poolRef.",
    )
    attestation_url: str | None = Field(
        default=None,
        description="URL of the attestation service, or its replicas' URLs separated by "
        "commas (runtimes fail over between them), passed to every runtime.",
    )
    attestation_ca: Path | None = Field(
        default=None,
        description="PEM CA bundle of the attestation service's TLS certificate, passed "
        "inline to every runtime.",
    )
    attestation_probe_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds between probes of the attestation service's /readyz; while "
        "no replica can attest the status says AttestationUnavailable and no replica is "
        "replaced.",
    )
    liveness_endpoint: str | None = Field(
        default=None,
        description="URL kopf serves the liveness probe on, e.g. http://0.0.0.0:8080/healthz.",
    )
    metrics_port: int = Field(
        default=9090,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics endpoint; 0 turns it off.",
    )
    log_format: LogFormat = Field(default="text", description="text or json log lines.")
    verbose: bool = Field(default=False, description="Log at DEBUG level.")
    status_delay: float = Field(
        default=0.5,
        ge=0,
        le=30,
        description="Seconds to gather events before an EnclaveContainer's status is "
        "recomputed (one write for a burst of pod changes).",
    )
    pool_delay: float = Field(default=1.0, ge=0, le=60, description="The same, for EPCPool status.")
    workers: int = Field(
        default=16, ge=1, le=256, description="Objects reconciled at the same time."
    )


def load_settings(**overrides: object) -> OperatorSettings:
    """Settings from the environment, with the flags given (not None) on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return OperatorSettings(**given)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = [
            f"KUBETEE_{'_'.join(str(p) for p in problem['loc'][:1]).upper()}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise SettingsError("; ".join(lines)) from None
