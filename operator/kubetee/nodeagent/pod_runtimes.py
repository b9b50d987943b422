"""Running pods' ``kubetee`` sidecars as local processes, as a kubelet would run them.

Simulated (KWOK) nodes run no containers, yet a replica's enclave runtime must run
for its pod to attest. For each pod bound to this node, every native sidecar (an init
container with ``restartPolicy: Always``) and every container whose command is
``kubetee`` runs here (the enclave container, ``kubetee enclave run``, runs its workload
as its own child process):

1. devices are allocated from the registered plugins, and the plugins' ``Allocate``
   answers add environment and mounts, as the kubelet's device manager does;
2. the container's volumes are laid out under the pod's directory
   (:mod:`.pod_filesystem`) and its environment is resolved (values, downward API,
   ConfigMap and Secret keys); ``KUBETEE_ROOT`` points the process at its mounts;
3. the process is restarted with a growing back-off when it exits (its
   ``restartPolicy: Always``), its downward API files follow the pod's annotations,
   and it is stopped (SIGTERM) and its volumes removed when the pod goes away;
4. a sidecar still running from an agent that died (``kill -9``) is adopted, not
   started twice, and one whose pod went away meanwhile is stopped
   (:mod:`.adoption`).

As a kubelet does, the agent rides out an unreachable apiserver (restarting, or
etcd gone): a failed sync is retried with a growing back-off and changes nothing, so
running sidecars keep running and their delivered secrets stay. Only a pod the
apiserver says is gone (or finished) has its sidecars stopped.

Output goes to ``<pods dir>/<namespace>_<pod>_<uid>/<container>.log``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubetee.deviceplugin.constants import HEALTHY
from kubetee.nodeagent.adoption import (
    AdoptedProcess,
    SidecarRecord,
    record_path,
    records,
    start_ticks,
)
from kubetee.nodeagent.plugin_client import PluginClient
from kubetee.nodeagent.pod_filesystem import MEMORY_ROOT, PodFilesystem, field_value

logger = logging.getLogger(__name__)

LOCAL_COMMAND = "kubetee"
STOP_GRACE_SECONDS = 5.0
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
_RAW: dict[str, Any] = {"_preload_content": False, "_request_timeout": 10}
# What a sync can meet while the apiserver or a device plugin restarts: each is
# retried, none may end the agent.
_TRANSIENT = (ApiException, urllib3.exceptions.HTTPError, grpc.RpcError, OSError, TimeoutError)


@dataclass
class _Sidecar:
    """One sidecar process of one pod."""

    key: tuple[str, str]  # (pod uid, container name)
    pod_label: str
    filesystem: PodFilesystem
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    allocations: dict[str, list[str]]
    plugin_env: dict[str, str] = field(default_factory=dict)
    plugin_mounts: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | AdoptedProcess | None = None
    started_at: float = 0.0
    failures: int = 0
    next_start: float = 0.0
    annotations: str = field(default="")


class PodRuntimes:
    """Keeps the local sidecars of this node's pods running."""

    def __init__(
        self,
        node_name: str,
        api_client: k8s.ApiClient,
        plugins: Mapping[str, PluginClient],
        pods_dir: Path,
        *,
        poll_seconds: float = 1.0,
        backoff_seconds: tuple[float, float] = (2.0, 30.0),
        retry_seconds: tuple[float, float] = (1.0, 10.0),
    ) -> None:
        self.node_name = node_name
        self._core = k8s.CoreV1Api(api_client)
        self._plugins = plugins
        self.pods_dir = pods_dir
        self._poll = poll_seconds
        self._backoff = backoff_seconds
        self._retry = retry_seconds
        self._last_error = ""
        self.sidecars: dict[tuple[str, str], _Sidecar] = {}
        # Sidecars left running by a previous agent whose pods are gone are stopped
        # once, at the first look at the pods.
        self._orphans_checked = False

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("running kubetee sidecars of node %s under %s", self.node_name, self.pods_dir)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await self.sync_once()
                    failures = 0
                except _TRANSIENT as error:
                    failures += 1
                    self._say_failure(error)
                else:
                    if self._last_error:
                        logger.info("node %s: its pods sync again", self.node_name)
                        self._last_error = ""
                # Sidecars keep running meanwhile; only the next look is delayed.
                delay = (
                    min(self._retry[0] * 2 ** (failures - 1), self._retry[1])
                    if failures
                    else self._poll
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # wait_for may swallow a cancel
                        await stop.wait()
        finally:
            for key in list(self.sidecars):
                await self._stop(key)

    def _say_failure(self, error: BaseException) -> None:
        """Log once per distinct failure: an apiserver outage must not flood the log."""
        message = (
            f"HTTP {error.status} {error.reason}"
            if isinstance(error, ApiException)
            else f"{type(error).__name__}: {error}"
        )
        if message != self._last_error:
            self._last_error = message
            logger.warning(
                "node %s: cannot sync its pods (retrying; running sidecars keep running): %s",
                self.node_name,
                message,
            )

    async def sync_once(self) -> None:
        pods = await asyncio.to_thread(self._list_pods)
        wanted: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        for pod in pods:
            if _finished(pod):
                continue
            for container in _local_sidecars(pod):
                wanted[(pod["metadata"]["uid"], container["name"])] = (pod, container)
        if not self._orphans_checked:
            await self._stop_orphans(set(wanted))
            self._orphans_checked = True
        for key in [k for k in self.sidecars if k not in wanted]:
            await self._stop(key)
        for key, (pod, container) in wanted.items():
            sidecar = self.sidecars.get(key)
            if sidecar is None:
                try:
                    sidecar = await self._prepare(pod, container)
                except _TRANSIENT as error:  # one pod's trouble holds no other pod back
                    self._say_failure(error)
                    continue
                if sidecar is None:
                    continue
                self.sidecars[key] = sidecar
            self._follow_annotations(sidecar, pod)
            await self._keep_running(sidecar)

    def _list_pods(self) -> list[dict[str, Any]]:
        response = self._core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", **_RAW
        )
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    async def _prepare(self, pod: dict[str, Any], container: dict[str, Any]) -> _Sidecar | None:
        metadata = pod["metadata"]
        label = f"{metadata['namespace']}/{metadata['name']}"
        pod_dir = pod_directory(
            self.pods_dir, metadata["namespace"], metadata["name"], metadata["uid"]
        )
        running = self._running_record(pod_dir, metadata["uid"], container["name"])
        if running is not None:  # it keeps the devices it was given
            allocations = running.allocations
            envs, mounts = running.plugin_env, running.plugin_mounts
        else:
            allocated = await self._allocate(label, container)
            if allocated is None:
                return None
            allocations, envs, mounts = allocated
        memory_dir = memory_directory(self.node_name, metadata["uid"])
        filesystem = PodFilesystem(pod_dir, memory_dir)
        await asyncio.to_thread(filesystem.lay_out, pod, container, self._read_object, mounts)
        env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
        env.update(await asyncio.to_thread(self._resolve_env, pod, container))
        env.update(envs)
        env["KUBETEE_ROOT"] = str(filesystem.root)
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        argv = [sys.executable, "-m", "kubetee.cli", *command[1:]]
        sidecar = _Sidecar(
            key=(metadata["uid"], container["name"]),
            pod_label=label,
            filesystem=filesystem,
            argv=argv,
            env=env,
            log_path=pod_dir / f"{container['name']}.log",
            allocations=allocations,
            plugin_env=dict(envs),
            plugin_mounts=dict(mounts),
        )
        if running is not None:
            sidecar.process = AdoptedProcess(running)
            sidecar.started_at = time.monotonic()
            logger.info(
                "pod %s: adopted sidecar %s, still running as pid %d",
                label,
                container["name"],
                running.pid,
            )
        else:
            logger.info(
                "pod %s: running sidecar %s locally (%s)", label, container["name"], pod_dir
            )
        return sidecar

    def _running_record(self, pod_dir: Path, uid: str, container: str) -> SidecarRecord | None:
        """The record of this container's process, if a previous agent left it running."""
        record = SidecarRecord.load(record_path(pod_dir, container))
        if record is None or (record.node, record.pod_uid) != (self.node_name, uid):
            return None
        return record if record.running() else None

    async def _stop_orphans(self, wanted: set[tuple[str, str]]) -> None:
        """Stop what a previous agent left running for pods that are gone or finished."""
        for path, record in await asyncio.to_thread(records, self.pods_dir):
            key = (record.pod_uid, record.container)
            if record.node != self.node_name or key in wanted or key in self.sidecars:
                continue
            if record.running():
                await _terminate(AdoptedProcess(record))
                logger.info(
                    "stopped sidecar %s (pid %d) left running for pod uid %s, which is gone",
                    record.container,
                    record.pid,
                    record.pod_uid,
                )
            memory_dir = memory_directory(self.node_name, record.pod_uid)
            await asyncio.to_thread(PodFilesystem(path.parent, memory_dir).remove)
            path.unlink(missing_ok=True)

    async def _allocate(
        self, label: str, container: Mapping[str, Any]
    ) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]] | None:
        """Devices per resource, and the merged envs and mounts of the plugins' answers."""
        requests = (container.get("resources") or {}).get("limits") or {}
        taken = {
            device
            for sidecar in self.sidecars.values()
            for devices in sidecar.allocations.values()
            for device in devices
        }
        allocations: dict[str, list[str]] = {}
        envs: dict[str, str] = {}
        mounts: dict[str, str] = {}
        for resource, quantity in requests.items():
            plugin = self._plugins.get(resource)
            if plugin is None:
                if "/" in resource and not resource.startswith("kubernetes.io/"):
                    logger.info("pod %s waits for the %s device plugin", label, resource)
                    return None
                continue
            count = int(str(quantity))
            free = [d for d, h in plugin.devices.items() if h == HEALTHY and d not in taken]
            if len(free) < count:
                logger.warning("pod %s: only %d of %d %s free", label, len(free), count, resource)
                return None
            allocations[resource] = free[:count]
            answer = (await plugin.allocate([free[:count]])).container_responses[0]
            envs.update(answer.envs)
            mounts.update({m.container_path: m.host_path for m in answer.mounts})
        return allocations, envs, mounts

    def _read_object(self, kind: str, namespace: str, name: str) -> dict[str, str | bytes] | None:
        try:
            if kind == "configmap":
                body = _json(self._core.read_namespaced_config_map(name, namespace, **_RAW))
                data: dict[str, str | bytes] = dict(body.get("data") or {})
                # binaryData (an enclave bundle's SIGSTRUCT and files) stays bytes.
                for key, value in (body.get("binaryData") or {}).items():
                    data[key] = base64.b64decode(value)
                return data
            body = _json(self._core.read_namespaced_secret(name, namespace, **_RAW))
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return {
            key: base64.b64decode(value).decode(errors="replace")
            for key, value in (body.get("data") or {}).items()
        }

    def _resolve_env(self, pod: dict[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for entry in container.get("env") or []:
            source = entry.get("valueFrom")
            if source is None:
                env[entry["name"]] = str(entry.get("value", ""))
            elif "fieldRef" in source:
                env[entry["name"]] = field_value(pod, source["fieldRef"]["fieldPath"])
            else:
                kind, ref = (
                    ("configmap", source["configMapKeyRef"])
                    if "configMapKeyRef" in source
                    else ("secret", source.get("secretKeyRef") or {})
                )
                data = self._read_object(kind, namespace, ref.get("name", "")) or {}
                if ref.get("key") in data:
                    value = data[ref["key"]]
                    env[entry["name"]] = (
                        value.decode(errors="replace") if isinstance(value, bytes) else value
                    )
        return env

    def _follow_annotations(self, sidecar: _Sidecar, pod: Mapping[str, Any]) -> None:
        annotations = json.dumps(
            (pod.get("metadata") or {}).get("annotations") or {}, sort_keys=True
        )
        if annotations != sidecar.annotations:
            sidecar.annotations = annotations
            sidecar.filesystem.refresh_downward_api(pod)

    async def _keep_running(self, sidecar: _Sidecar) -> None:
        process = sidecar.process
        now = time.monotonic()
        if process is not None and process.returncode is None:
            return
        if process is not None:
            ran = now - sidecar.started_at
            sidecar.failures = 0 if ran > self._backoff[1] else sidecar.failures + 1
            delay = min(self._backoff[0] * 2 ** max(sidecar.failures - 1, 0), self._backoff[1])
            sidecar.next_start = now + delay
            sidecar.process = None
            logger.warning(
                "pod %s: sidecar %s exited with code %s; restarting in %.0fs",
                sidecar.pod_label,
                sidecar.key[1],
                "unknown (adopted)" if isinstance(process, AdoptedProcess) else process.returncode,
                delay,
            )
        if now < sidecar.next_start:
            return
        sidecar.log_path.parent.mkdir(parents=True, exist_ok=True)
        with sidecar.log_path.open("ab") as log:
            sidecar.process = await asyncio.create_subprocess_exec(
                *sidecar.argv,
                env=sidecar.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # it outlives an agent that dies: see .adoption
            )
        sidecar.started_at = now
        ticks = start_ticks(sidecar.process.pid)
        if ticks is not None:
            record = SidecarRecord(
                node=self.node_name,
                pod_uid=sidecar.key[0],
                container=sidecar.key[1],
                pid=sidecar.process.pid,
                start_ticks=ticks,
                allocations=sidecar.allocations,
                plugin_env=sidecar.plugin_env,
                plugin_mounts=sidecar.plugin_mounts,
            )
            record.save(sidecar.filesystem.pod_dir)

    async def _stop(self, key: tuple[str, str]) -> None:
        sidecar = self.sidecars.pop(key)
        if sidecar.process is not None:
            await _terminate(sidecar.process)
        record_path(sidecar.filesystem.pod_dir, key[1]).unlink(missing_ok=True)
        await asyncio.to_thread(sidecar.filesystem.remove)
        logger.info("pod %s: sidecar %s stopped", sidecar.pod_label, key[1])


async def _terminate(process: asyncio.subprocess.Process | AdoptedProcess) -> None:
    """SIGTERM, then SIGKILL after the grace: as a kubelet stops a container."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


def pod_directory(pods_dir: Path, namespace: str, name: str, uid: str) -> Path:
    """Where a pod's local sidecar runs; its container paths live under ``root/``."""
    return pods_dir / f"{namespace}_{name}_{uid}"


def memory_directory(node: str, uid: str) -> Path:
    """Where a pod's ``medium: Memory`` volumes (its delivered secrets) live."""
    return MEMORY_ROOT / f"kubetee-{node}-{uid}"


def _json(response: Any) -> dict[str, Any]:
    """The JSON object of a response read with ``_preload_content=False``."""
    document: dict[str, Any] = json.loads(response.data)
    return document


def _finished(pod: Mapping[str, Any]) -> bool:
    metadata = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return metadata.get("deletionTimestamp") is not None or phase in {"Succeeded", "Failed"}


def _local_sidecars(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Native sidecars and containers whose command is ``kubetee``: what this agent can
    run (the enclave runtime sidecar, or the enclave container running the workload)."""
    spec = pod.get("spec") or {}
    sidecars = [
        container
        for container in spec.get("initContainers") or []
        if container.get("restartPolicy") == "Always"
    ]
    return [
        container
        for container in [*sidecars, *(spec.get("containers") or [])]
        if (container.get("command") or [""])[0] == LOCAL_COMMAND
    ]


async def run_with_pod_runtimes(agent: Any, pods: PodRuntimes, stop: asyncio.Event) -> None:
    """Run the device manager and the pod sidecars together until ``stop``."""
    await asyncio.gather(agent.run(stop), pods.run(stop))
