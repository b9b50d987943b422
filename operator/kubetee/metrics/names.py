"""Every Prometheus metric KubeTEE exports, by name, and the ports that serve them.

One list, so the Grafana dashboard, the prometheus-adapter rules and the custom
metrics API can be checked against what the components really export. Names follow
the Prometheus conventions: a ``kubetee_`` prefix, base units in the name
(``_bytes``, ``_seconds``), ``_total`` on counters, ``_info`` on the build info.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "kubetee_"

# -- operator (EPCPool and EnclaveContainer accounting, reconciles) -----------------------
EPC_CAPACITY_BYTES: Final = "kubetee_epc_capacity_bytes"
EPC_ALLOCATABLE_BYTES: Final = "kubetee_epc_allocatable_bytes"
EPC_ALLOCATED_BYTES: Final = "kubetee_epc_allocated_bytes"
NODE_ENCLAVES: Final = "kubetee_node_enclaves"
POOL_NODES_READY: Final = "kubetee_pool_nodes_ready"
EC_EPC_REQUESTED_BYTES: Final = "kubetee_enclavecontainer_epc_requested_bytes"
EC_EPC_ALLOCATED_BYTES: Final = "kubetee_enclavecontainer_epc_allocated_bytes"
EC_REPLICAS: Final = "kubetee_enclavecontainer_replicas"
RECONCILES_TOTAL: Final = "kubetee_reconciles_total"
RECONCILE_ERRORS_TOTAL: Final = "kubetee_reconcile_errors_total"
RECONCILE_DURATION_SECONDS: Final = "kubetee_reconcile_duration_seconds"
TCB_NODES: Final = "kubetee_tcb_nodes"
TCB_EVALUATION_DATA_NUMBER: Final = "kubetee_tcb_evaluation_data_number"
TCB_RECOVERY_REPLICAS: Final = "kubetee_tcb_recovery_replicas"
TCB_RECOVERY_STEPS_TOTAL: Final = "kubetee_tcb_recovery_steps_total"

# -- attestation service --------------------------------------------------------------
ATTESTATIONS_TOTAL: Final = "kubetee_attestations_total"
ATTESTATION_DURATION_SECONDS: Final = "kubetee_attestation_duration_seconds"
SECRETS_RELEASED_TOTAL: Final = "kubetee_secrets_released_total"
COLLATERAL_TIME_TO_NEXT_UPDATE_SECONDS: Final = "kubetee_collateral_time_to_next_update_seconds"
COLLATERAL_NEXT_UPDATE_TIMESTAMP_SECONDS: Final = "kubetee_collateral_next_update_timestamp_seconds"
COLLATERAL_FETCHES_TOTAL: Final = "kubetee_collateral_fetches_total"

# -- EPC device plugin and node agent -------------------------------------------------
DEVICE_PLUGIN_DEVICES: Final = "kubetee_device_plugin_devices"
NODE_EPC_CAPACITY_BYTES: Final = "kubetee_node_epc_capacity_bytes"
NODE_EPC_ALLOCATABLE_BYTES: Final = "kubetee_node_epc_allocatable_bytes"

# -- enclave runtime (one per replica) ------------------------------------------------
ENCLAVE_EPC_SIZE_BYTES: Final = "kubetee_enclave_epc_size_bytes"
ENCLAVE_EPC_USED_BYTES: Final = "kubetee_enclave_epc_used_bytes"
ENCLAVE_USAGE_READ_ERRORS_TOTAL: Final = "kubetee_enclave_usage_read_errors_total"

# -- custom metrics API server --------------------------------------------------------
CUSTOM_METRICS_REQUESTS_TOTAL: Final = "kubetee_custom_metrics_requests_total"
CUSTOM_METRICS_SCRAPE_ERRORS_TOTAL: Final = "kubetee_custom_metrics_scrape_errors_total"

# -- every component ------------------------------------------------------------------
BUILD_INFO: Final = "kubetee_build_info"

HISTOGRAMS: Final = frozenset({RECONCILE_DURATION_SECONDS, ATTESTATION_DURATION_SECONDS})

ALL_METRICS: Final = frozenset(
    {
        EPC_CAPACITY_BYTES,
        EPC_ALLOCATABLE_BYTES,
        EPC_ALLOCATED_BYTES,
        NODE_ENCLAVES,
        POOL_NODES_READY,
        EC_EPC_REQUESTED_BYTES,
        EC_EPC_ALLOCATED_BYTES,
        EC_REPLICAS,
        RECONCILES_TOTAL,
        RECONCILE_ERRORS_TOTAL,
        RECONCILE_DURATION_SECONDS,
        TCB_NODES,
        TCB_EVALUATION_DATA_NUMBER,
        TCB_RECOVERY_REPLICAS,
        TCB_RECOVERY_STEPS_TOTAL,
        ATTESTATIONS_TOTAL,
        ATTESTATION_DURATION_SECONDS,
        SECRETS_RELEASED_TOTAL,
        COLLATERAL_TIME_TO_NEXT_UPDATE_SECONDS,
        COLLATERAL_NEXT_UPDATE_TIMESTAMP_SECONDS,
        COLLATERAL_FETCHES_TOTAL,
        DEVICE_PLUGIN_DEVICES,
        NODE_EPC_CAPACITY_BYTES,
        NODE_EPC_ALLOCATABLE_BYTES,
        ENCLAVE_EPC_SIZE_BYTES,
        ENCLAVE_EPC_USED_BYTES,
        ENCLAVE_USAGE_READ_ERRORS_TOTAL,
        CUSTOM_METRICS_REQUESTS_TOTAL,
        CUSTOM_METRICS_SCRAPE_ERRORS_TOTAL,
        BUILD_INFO,
    }
)


def series_names() -> frozenset[str]:
    """Names a PromQL query may use: metric names plus the series of each histogram."""
    suffixes = ("_bucket", "_sum", "_count")
    return ALL_METRICS | {name + suffix for name in HISTOGRAMS for suffix in suffixes}


# -- the custom metrics API (custom.metrics.k8s.io) -------------------------------------
# Metric names as the HPA asks for them; prometheus-adapter's rules map the same names.
CM_EPC_UTILIZATION: Final = "epc_utilization"  # percent of the enclave's EPC in use
CM_EPC_USED_BYTES: Final = "epc_used_bytes"
CM_EPC_REQUESTED_BYTES: Final = "epc_requested_bytes"

# -- default ports of each component's /metrics endpoint -------------------------------
DEFAULT_PORTS: Final = {
    "operator": 9090,
    "attestation-service": 9091,
    "device-plugin": 9092,
    "node-agent": 9093,
    "runtime": 9094,
}
METRICS_APISERVER_PORT: Final = 6443  # HTTPS, the aggregated custom metrics API

# Pod annotation that stands in for the workload's EPC use where no workload runs (the
# local cluster's simulated nodes): a size such as ``48Mi`` or a percentage such as ``75%``.
SIMULATED_USAGE_ANNOTATION: Final = "kubetee.io/simulated-epc-usage"
