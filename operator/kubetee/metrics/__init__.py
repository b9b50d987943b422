"""Prometheus metrics of every KubeTEE component, and the custom metrics API.

* :mod:`.names`: every metric name, the default ports, the usage annotation;
* :mod:`.serve`: one ``/metrics`` endpoint per component, with ``kubetee_build_info``;
* :mod:`.operator`, :mod:`.attestation`, :mod:`.node`, :mod:`.runtime`: each
  component's metrics (the runtime's EPC use comes from :mod:`.usage`);
* :mod:`.apiserver`: ``kubetee metrics-apiserver``, the aggregated API server serving
  ``custom.metrics.k8s.io/v1beta2`` so an HPA can scale an EnclaveContainer on EPC;
* :mod:`.local`: run that server for the local cluster and register its APIService.

Counters export no ``_created`` series: nothing here reads them, and they double the
series count of every counter.
"""

from prometheus_client import disable_created_metrics

from kubetee.metrics.serve import MetricsServer, register_build_info, start_metrics_server

disable_created_metrics()  # type: ignore[no-untyped-call]

__all__ = ["MetricsServer", "register_build_info", "start_metrics_server"]
