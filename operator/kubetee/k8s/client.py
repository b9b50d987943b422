"""Connecting to the apiserver: the service account in a pod, else the kubeconfig."""

from __future__ import annotations

import os
from typing import Any

from kubernetes.aio import config
from kubernetes.aio.client import ApiClient, Configuration


async def connect(kubeconfig: str | None = None) -> Any:
    """An asyncio ``ApiClient``; close it with ``await client.close()``.

    ``kubeconfig`` (else ``$KUBECONFIG``, else ``~/.kube/config``) unless running in a
    pod, where the service account's token and CA are used.
    """
    configuration = Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or os.environ.get("KUBECONFIG"),
            client_configuration=configuration,
        )
    return ApiClient(configuration=configuration)
