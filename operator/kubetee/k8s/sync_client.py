"""The synchronous Kubernetes client for components outside the operator's event loop.

Same rule as :func:`kubetee.k8s.client.connect` for the asyncio client: the given
kubeconfig; with none, the service account when running in a pod, else ``$KUBECONFIG``
or ``~/.kube/config``.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config


def sync_api_client(kubeconfig: Path | str | None = None) -> client.ApiClient:
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig) if kubeconfig is not None else None
    )
    return api
