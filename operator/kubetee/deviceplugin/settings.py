"""Configuration of ``kubetee device-plugin``: flags override ``KUBETEE_*`` env vars.

Validated once at start; an invalid value stops the plugin with a message naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetee.deviceplugin.constants import (
    DEFAULT_PLUGIN_DIR,
    DEFAULT_QUOTING_SOCKET,
    POD_RESERVED_DIR,
)
from kubetee.deviceplugin.errors import ConfigurationError

# One device per MiB: 64 GiB of EPC makes a ListAndWatch message of about 1.5 MB,
# well inside gRPC's default 4 MB limit on the kubelet side.
MAX_EPC_MIB = 65536
MAX_ENCLAVES = 4096

LogFormat = Literal["json", "text"]


class DevicePluginSettings(BaseSettings):
    """What the plugin advertises and where it listens."""

    model_config = SettingsConfigDict(env_prefix="KUBETEE_", extra="forbid")

    node_name: str = Field(min_length=1, description="Name of the Node this plugin serves.")
    plugin_dir: Path = Field(default=DEFAULT_PLUGIN_DIR, description="Kubelet device-plugin dir.")
    epc_mib: int = Field(default=128, ge=1, le=MAX_EPC_MIB, description="EPC size in MiB.")
    enclaves: int = Field(default=16, ge=1, le=MAX_ENCLAVES, description="Enclave slots.")
    quoting_socket: Path = Field(
        default=DEFAULT_QUOTING_SOCKET, description="Unix socket of the node's quoting service."
    )
    log_format: LogFormat = "text"
    metrics_port: int = Field(
        default=9092, ge=0, le=65535, description="Port of Prometheus /metrics; 0 turns it off."
    )
    poll_interval: float = Field(
        default=0.2, gt=0, le=10, description="Seconds between checks of the plugin dir."
    )
    check_quoting: bool = Field(
        default=True,
        description="Mark every enclave device unhealthy while the quoting service's socket "
        "accepts no connection: no enclave placed here could attest.",
    )
    quoting_check_interval: float = Field(
        default=2.0, gt=0, le=60, description="Seconds between checks of the quoting socket."
    )

    @field_validator("quoting_socket")
    @classmethod
    def _socket_dir_leaves_the_pod_paths_alone(cls, socket: Path) -> Path:
        directory = container_view(socket.parent)
        if directory in {POD_RESERVED_DIR, *POD_RESERVED_DIR.parents} or directory.is_relative_to(
            POD_RESERVED_DIR
        ):
            message = (
                f"the socket's directory {socket.parent} would be mounted over {POD_RESERVED_DIR},"
                " where replicas get their secrets; use e.g. /var/run/kubetee-quoting/quoting.sock"
            )
            raise ValueError(message)
        return socket


def container_view(path: Path) -> Path:
    """``path`` as a Debian-based container resolves it: /var/run is a link to /run."""
    if path == Path("/var/run") or path.is_relative_to("/var/run"):
        return Path("/run") / path.relative_to("/var/run")
    return path


def describe_validation_error(error: ValidationError, prefix: str = "KUBETEE_") -> str:
    """One line per bad setting, naming both the flag and the env var."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        flag = "--" + field.replace("_", "-")
        lines.append(f"{flag} / {prefix}{field.upper()}: {problem['msg']}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> DevicePluginSettings:
    """Settings from env, with the flags actually given (non-None) on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return DevicePluginSettings(**given)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None
