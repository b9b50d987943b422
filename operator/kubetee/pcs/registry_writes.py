"""Recording registrations in the platform registry ConfigMap: the PCS's part alone.

Kept apart from :mod:`.registry` (which the attestation service reads with) so that only
the PCS's code, and so only its ServiceAccount, needs to create and update ConfigMaps.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.pcs.registry import ConfigMapRegistry, PlatformRecord, RegistryUnavailableError

_CONFLICT = 409
_UPDATE_ATTEMPTS = 5


class ConfigMapRegistryWriter:
    """Adds or replaces one node's record, with optimistic concurrency."""

    def __init__(self, api_client: Any, registry: ConfigMapRegistry) -> None:
        self._core = client.CoreV1Api(api_client)
        self._registry = registry

    async def record(self, record: PlatformRecord) -> None:
        await asyncio.to_thread(self._record, record)

    def _record(self, record: PlatformRecord) -> None:
        namespace, name = self._registry.namespace, self._registry.name
        for _ in range(_UPDATE_ATTEMPTS):
            version, data = self._registry.read()
            data[record.node] = record.to_json()
            body = {
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/component": "pcs"},
                    **({"resourceVersion": version} if version else {}),
                },
                "data": data,
            }
            try:
                if version is None:
                    self._core.create_namespaced_config_map(namespace, cast(Any, body))
                else:
                    self._core.replace_namespaced_config_map(name, namespace, cast(Any, body))
            except ApiException as exc:
                if exc.status == _CONFLICT:
                    continue  # another registration won the race: read again
                raise RegistryUnavailableError(
                    f"cannot write ConfigMap {namespace}/{name}: {exc.status} {exc.reason}"
                ) from None
            self._registry.remember(data)
            return
        raise RegistryUnavailableError(
            f"ConfigMap {namespace}/{name} kept changing; registration not recorded"
        )
