"""TCB recovery (:mod:`kubetee.reconcile.tcb_upkeep`): its start and stop (each replica's
TCB recovery facts are in :mod:`kubetee.handlers.replicas`). Nothing runs unless
``KUBETEE_PCCS_URL`` is set."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from kubetee.attestation.roots import intel_sgx_root_ca_der, root_ca_der
from kubetee.attestation_service.pccs import PccsCollateral
from kubetee.handlers import replicas
from kubetee.handlers.lifecycle import attestation_health
from kubetee.k8s.client import connect
from kubetee.k8s.sync_client import sync_api_client
from kubetee.pcs.registry import ConfigMapRegistry, parse_registry
from kubetee.reconcile.tcb_upkeep import TcbIndexes, TcbUpkeep
from kubetee.tcb.metrics import TcbMetrics
from kubetee.tcb.settings import TcbSettings
from kubetee.tcb.source import TcbEvaluations

logger = logging.getLogger(__name__)


@kopf.on.startup()
async def start_tcb_upkeep(memo: kopf.Memo, **kwargs: Any) -> None:
    settings = TcbSettings()
    if not settings.enabled or settings.pccs_url is None:
        logger.info("TCB recovery is off: set KUBETEE_PCCS_URL to label nodes and recover")
        return

    root = (
        root_ca_der(settings.sgx_root_ca.read_bytes())
        if settings.sgx_root_ca is not None
        else intel_sgx_root_ca_der()
    )
    collateral = PccsCollateral(
        settings.pccs_url, ca_file=settings.pccs_ca, max_age_seconds=settings.tcb_refresh_seconds
    )
    namespace, name = parse_registry(settings.platform_registry, "kubetee-system")
    # $KUBECONFIG as the operator's --kubeconfig set it (the client's default path is
    # fixed at import, before that).
    registry = ConfigMapRegistry(
        sync_api_client(os.environ.get("KUBECONFIG") or None), namespace, name
    )
    upkeep = TcbUpkeep(
        await connect(),
        settings,
        TcbEvaluations(collateral, root),
        registry,
        attestation_health(memo),
        TcbMetrics(),
    )
    memo["tcb_upkeep"] = upkeep
    indexes = TcbIndexes(
        replicas=replicas.tcb_replicas(kwargs),
        enclave_containers=kwargs["ec_index"],
        pods=replicas.pods(kwargs),
        deployments=kwargs["deployment_index"],
        nodes=kwargs["node_index"],
    )
    upkeep.start(indexes)
    logger.info(
        "TCB recovery: nodes judged by the TCB Info of %s every %ss, platforms from %s/%s",
        settings.pccs_url,
        settings.tcb_sweep_seconds,
        namespace,
        name,
    )


@kopf.on.cleanup()
async def stop_tcb_upkeep(memo: kopf.Memo, **_: Any) -> None:
    upkeep: TcbUpkeep | None = memo.get("tcb_upkeep")
    if upkeep is not None:
        await upkeep.close()
