"""``kubetee operator``: run the KubeTEE operator (kopf) against the current cluster.

The kubeconfig comes from ``$KUBECONFIG`` (or ``--kubeconfig``), or the service account
when running in a pod. Flags override the ``KUBETEE_*`` environment (see
``kubetee.settings``).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kubetee.settings import SettingsError, load_settings


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "operator",
        help="run the operator for EnclaveContainers and EPCPools",
        description="Reconcile EnclaveContainers into Deployments of enclave replicas and "
        "keep every EPCPool's EPC accounting in its status.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NAMESPACE",
        help="serve EnclaveContainers of this namespace only (repeatable; glob patterns too)",
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="serve every namespace (the default)",
    )
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "--liveness",
        dest="liveness_endpoint",
        metavar="URL",
        help="e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="port of Prometheus /metrics (default 9090; 0: off)"
    )
    parser.add_argument("--log-format", choices=["text", "json"], help="log line format")
    parser.add_argument("--verbose", "-v", action="store_true", default=None, help="debug logs")
    parser.add_argument("--runtime-image", help="image of the enclave runtime sidecar")
    parser.add_argument("--attestation-url", help="URL of the attestation service")
    parser.add_argument("--attestation-ca", help="PEM CA bundle of the attestation service")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            namespaces=[] if args.all_namespaces else args.namespaces,
            liveness_endpoint=args.liveness_endpoint,
            metrics_port=args.metrics_port,
            log_format=args.log_format,
            verbose=args.verbose,
            runtime_image=args.runtime_image,
            attestation_url=args.attestation_url,
            attestation_ca=args.attestation_ca,
        )
    except SettingsError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    if args.kubeconfig is not None:
        if not args.kubeconfig.is_file():
            sys.stderr.write(f"error: kubeconfig {args.kubeconfig} does not exist\n")
            return 2
        # Both kopf's login and the operator's own client read it from here.
        os.environ["KUBECONFIG"] = str(args.kubeconfig)

    import kopf  # noqa: PLC0415 - kopf and the handlers load only for this subcommand

    from kubetee.metrics import start_metrics_server  # noqa: PLC0415

    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    if not settings.verbose:
        # kopf logs every handled watch event at INFO: thousands of lines a minute here.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    importlib.import_module("kubetee.handlers")  # registers the handlers
    if settings.metrics_port:
        start_metrics_server("operator", settings.metrics_port)
    tune_garbage_collector()
    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint,
        memo=kopf.Memo(settings=settings),
    )
    return 0


# Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Collect cycles less often, and never scan what was loaded at start.

    kopf allocates thousands of short-lived objects per watch event; at CPython's default
    thresholds the collector ran many times a second, each older-generation pass walking
    every cached view and every loaded module's objects: about a sixth of the operator's
    CPU in ``benchmarks/operator_events.py``. Cycles are still collected, later.
    """
    gc.collect()
    gc.freeze()  # what is loaded by now lives as long as the process
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
