"""Names fixed by the kubelet device-plugin API v1beta1, and KubeTEE's own."""

from pathlib import Path
from typing import Final

# From k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/constants.go
API_VERSION: Final = "v1beta1"
HEALTHY: Final = "Healthy"
UNHEALTHY: Final = "Unhealthy"
DEFAULT_PLUGIN_DIR: Final = Path("/var/lib/kubelet/device-plugins")
KUBELET_SOCKET_NAME: Final = "kubelet.sock"

EPC_RESOURCE: Final = "kubetee.io/epc"
ENCLAVE_RESOURCE: Final = "kubetee.io/enclave"

# Socket file names inside the plugin directory, one per resource.
ENDPOINTS: Final = {
    EPC_RESOURCE: "kubetee-epc.sock",
    ENCLAVE_RESOURCE: "kubetee-enclave.sock",
}

# Device ID prefixes; IDs are "<prefix>-<index>", index from 0.
DEVICE_PREFIXES: Final = {EPC_RESOURCE: "epc", ENCLAVE_RESOURCE: "enclave"}

# Allocate mounts the socket's directory into every enclave replica, so it must not be
# /run/kubetee or hold it: that is where the operator's pod template mounts the secrets,
# the enclave files and the pod info (and /var/run is /run in Debian-based images).
DEFAULT_QUOTING_SOCKET: Final = Path("/var/run/kubetee-quoting/quoting.sock")
POD_RESERVED_DIR: Final = Path("/run/kubetee")
FAULT_FILE_NAME: Final = "kubetee-faults.json"

# Simulated SGX device nodes, named as the in-kernel SGX driver (Linux >= 5.11) names them.
SGX_ENCLAVE_DEVICE: Final = "/dev/sgx_enclave"
SGX_PROVISION_DEVICE: Final = "/dev/sgx_provision"

# Environment the enclave runtime reads, set by Allocate.
ENV_EPC_MIB: Final = "KUBETEE_EPC_MIB"
ENV_QUOTING_SOCKET: Final = "KUBETEE_QUOTING_SOCKET"
ENV_NODE_NAME: Final = "KUBETEE_NODE_NAME"
ENV_ENCLAVE_SLOTS: Final = "KUBETEE_ENCLAVE_SLOTS"
