"""The demo's access to the cluster: the real kubectl and helm, and the Python client."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.cluster.toolchain import binary_path
from kubetee.demo.errors import DemoError
from kubetee.k8s.sync_client import sync_api_client

T = TypeVar("T")


class Kube:
    """kubectl, helm and API clients for one kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.api = sync_api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def _run(self, tool: str, args: tuple[str, ...], input_text: str | None) -> str:
        command = [str(binary_path(tool)), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            command, capture_output=True, text=True, input=input_text, timeout=300, check=False
        )
        if result.returncode != 0:
            raise DemoError(f"{tool} {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        return self._run("kubectl", args, input_text)

    def helm(self, *args: str) -> str:
        return self._run("helm", args, None)

    def enclave_container(self, namespace: str, name: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            "kubetee.io", "v1alpha1", namespace, "enclavecontainers", name
        )
        return cast(dict[str, Any], body)

    def epc_pool(self, name: str) -> dict[str, Any]:
        body = self.custom.get_cluster_custom_object("kubetee.io", "v1alpha1", "epcpools", name)
        return cast(dict[str, Any], body)

    def recreate_namespace(self, name: str, timeout: float) -> bool:
        """Delete namespace ``name`` if it exists, wait until it is gone, create it anew;
        whether an earlier one was removed."""
        try:
            self.core.delete_namespace(name)
            existed = True
        except ApiException as exc:
            if exc.status != 404:
                raise
            existed = False
        wait_for(lambda: not self._namespace_exists(name), timeout, f"namespace {name} to go")
        self.core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
        return existed

    def _namespace_exists(self, name: str) -> bool:
        try:
            self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pods(self, namespace: str, selector: str) -> list[client.V1Pod]:
        return [
            p
            for p in self.core.list_namespaced_pod(namespace, label_selector=selector).items
            if p.metadata is not None and p.metadata.deletion_timestamp is None
        ]


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
