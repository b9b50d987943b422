"""Connecting to the apiserver: the service account in a pod, else the kubeconfig."""

from __future__ import annotations

import os
import urllib.request
from typing import Any
from urllib.parse import urlsplit

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
    read_environment_once(configuration)
    return ApiClient(configuration=configuration)


def read_environment_once(configuration: Any) -> None:
    """Take the proxy for the apiserver from the environment now, not on every request.

    The client's aiohttp session trusts the environment by default, and then looks up
    the proxy variables (in a thread) and parses ``~/.netrc`` on every request: about a
    twentieth of the operator's CPU under load (py-spy, ``benchmarks/operator_scale.py``).
    The apiserver authenticates by token or certificate, never netrc, and the proxy
    variables do not change while the process runs.
    """
    configuration.client_session_kwargs = {
        **(configuration.client_session_kwargs or {}),
        "trust_env": False,
    }
    if configuration.proxy:
        return  # the kubeconfig's proxy-url comes first, as with the environment
    host = urlsplit(configuration.host)
    if host.hostname is None or urllib.request.proxy_bypass(host.hostname):
        return
    proxy = urllib.request.getproxies().get(host.scheme or "https")
    if proxy:
        configuration.proxy = proxy
