"""Settings of the operator's TCB recovery (``KUBETEE_*`` environment variables).

Off unless ``KUBETEE_PCCS_URL`` names the PCCS the attestation service uses too; then
the operator also needs the SGX root CA it pins and the platform registry ConfigMap.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TcbSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="ignore")

    pccs_url: str | None = Field(
        default=None,
        description="PCCS (PCCS/PCS v4 API) whose TCB Info judges the nodes; unset: the "
        "operator neither labels nodes by TCB nor recovers replicas.",
    )
    pccs_ca: Path | None = Field(default=None, description="CA bundle of the PCCS's TLS.")
    sgx_root_ca: Path | None = Field(
        default=None, description="Pinned SGX root CA (DER or PEM); default: Intel's."
    )
    platform_registry: str = Field(
        default="kubetee-system/kubetee-sgx-platforms",
        description="NAMESPACE/NAME of the ConfigMap where the PCS records each node's platform.",
    )
    tcb_sweep_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between TCB recovery sweeps."
    )
    tcb_refresh_seconds: float = Field(
        default=300.0,
        ge=1,
        le=86400,
        description="Renew the TCB Info at least this often (a newer evaluation is seen "
        "within this time).",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.pccs_url)
