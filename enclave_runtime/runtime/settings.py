"""The runtime's configuration: the environment the operator, the kubelet and the device
plugin give the sidecar container.

From the operator's pod template:

* ``KUBETEE_ENCLAVE_CONFIG``: one JSON document, the runtime's view of the
  EnclaveContainer: ``enclaveContainer`` {namespace, name}, ``debug``, ``heapMiB``,
  ``threads``, ``isvProdId``, ``isvSvn``, ``files`` ({path, content} or {path,
  mountedAt}), ``secrets`` ({name, file} or {name, env}; never values), ``secretsDir``;
* ``KUBETEE_POD_NAME``, ``KUBETEE_POD_UID`` (downward API);
* ``KUBETEE_ATTESTATION_URL``: the attestation service, or several of its replicas
  separated by commas (the runtime fails over to any that answers), and the service's CA
  as a file ``KUBETEE_ATTESTATION_CA`` or inline PEM ``KUBETEE_ATTESTATION_CA_PEM``;
* ``KUBETEE_PODINFO_DIR``: a downward API volume with the pod's ``annotations``.

From the device plugin's Allocate: ``KUBETEE_QUOTING_SOCKET`` (and ``KUBETEE_EPC_MIB``).

Overrides for running outside a container (the local cluster's node agent):
``KUBETEE_ROOT`` (every absolute path above is taken relative to this directory, where
the node agent lays out the container's mounts), ``KUBETEE_SECRETS_DIR``,
``KUBETEE_ENCLAVE_FILES_DIR`` (files at ``<dir>/<path>`` instead of ``mountedAt``),
``KUBETEE_STATE_DIR``. Tuning:
``KUBETEE_REATTEST_INTERVAL_SECONDS``, ``KUBETEE_ATTEST_TIMEOUT_SECONDS``,
``KUBETEE_UNAVAILABLE_RETRY_SECONDS`` (first retry of a re-attestation no service
answered, doubling up to the interval),
``KUBETEE_SIGNER_KEY``, ``KUBETEE_TEE_KEY_CURVE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from enclave_runtime.runtime.errors import RuntimeConfigError
from enclave_runtime.runtime.marker import DEFAULT_SECRETS_DIR

DEFAULT_QUOTING_SOCKET = Path("/var/run/kubetee-quoting/quoting.sock")


class _Spec(BaseModel):
    # The operator's JSON; fields the runtime does not need are ignored.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class EnclaveContainerRef(_Spec):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)


class EnclaveFileSpec(_Spec):
    path: str = Field(min_length=1)
    content: str | None = None
    mounted_at: str | None = None


class SecretSpec(_Spec):
    """One entry of ``spec.secrets``: its name and where the workload gets it."""

    name: str = Field(min_length=1)
    file: str | None = None
    env: str | None = None


class EnclaveConfig(_Spec):
    """``KUBETEE_ENCLAVE_CONFIG``: what is measured into MRENCLAVE, and the secrets."""

    enclave_container: EnclaveContainerRef
    debug: bool = False
    heap_mi_b: int | None = Field(default=None, alias="heapMiB")
    threads: int = 4
    isv_prod_id: int = 0
    isv_svn: int = 0
    files: list[EnclaveFileSpec] = Field(default_factory=list)
    secrets: list[SecretSpec] = Field(default_factory=list)
    secrets_dir: Path = DEFAULT_SECRETS_DIR


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="ignore")

    enclave_config: EnclaveConfig
    pod_name: str = Field(min_length=1)
    pod_uid: str = Field(min_length=1)
    # One URL, or the replicas' URLs separated by commas.
    attestation_url: str = Field(pattern=r"^\s*https://[^,\s]+(\s*,\s*https://[^,\s]+)*\s*$")
    attestation_ca: Path | None = None
    attestation_ca_pem: str | None = None
    root: Path | None = None
    quoting_socket: Path = DEFAULT_QUOTING_SOCKET
    secrets_dir: Path | None = None
    enclave_files_dir: Path | None = None
    state_dir: Path | None = None
    podinfo_dir: Path | None = None
    signer_key: Path | None = None
    # Below the service's attestation validity (token TTL, 300s by default).
    reattest_interval_seconds: float = Field(default=120.0, gt=0)
    attest_timeout_seconds: float = Field(default=120.0, gt=0)
    unavailable_retry_seconds: float = Field(default=5.0, gt=0)
    tee_key_curve: Literal["P-256", "P-384"] = "P-256"

    @model_validator(mode="after")
    def _reroot(self) -> Self:
        """Take every absolute path relative to ``root``, as inside a container's mounts."""
        root = self.root
        if root is None:
            return self

        def inside(path: Path | None) -> Path | None:
            return None if path is None else root / path.relative_to(path.anchor)

        for name in (
            "attestation_ca",
            "quoting_socket",
            "secrets_dir",
            "enclave_files_dir",
            "state_dir",
            "podinfo_dir",
            "signer_key",
        ):
            object.__setattr__(self, name, inside(getattr(self, name)))
        config = self.enclave_config
        config.secrets_dir = root / config.secrets_dir.relative_to(config.secrets_dir.anchor)
        for entry in config.files:
            if entry.mounted_at is not None:
                entry.mounted_at = str(inside(Path(entry.mounted_at)))
        return self

    @property
    def attestation_urls(self) -> list[str]:
        """Every attestation service URL the runtime may use, in the order given."""
        return [url.strip() for url in self.attestation_url.split(",")]

    @property
    def pod_namespace(self) -> str:
        return self.enclave_config.enclave_container.namespace

    @property
    def enclave_container(self) -> str:
        return self.enclave_config.enclave_container.name

    @property
    def secrets(self) -> list[SecretSpec]:
        return self.enclave_config.secrets

    @property
    def delivery_dir(self) -> Path:
        """Where secrets go: the memory-backed volume shared with the workload."""
        return self.secrets_dir or self.enclave_config.secrets_dir

    @property
    def marker_dir(self) -> Path:
        """Where the startup marker goes (the secrets volume: the root filesystem is
        read-only and the volume is the sidecar's only writable, pod-lived place)."""
        return self.state_dir or self.delivery_dir


def load_settings() -> RuntimeSettings:
    """Settings from the environment; a clear :class:`RuntimeConfigError` if unusable."""
    try:
        return RuntimeSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"KUBETEE_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise RuntimeConfigError(f"the runtime's environment is incomplete: {problems}") from None
    except ValueError as exc:  # a JSON-valued variable that is not JSON
        raise RuntimeConfigError(f"the runtime's environment is malformed: {exc}") from None
