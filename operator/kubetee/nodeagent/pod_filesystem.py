"""A container's view of the filesystem, laid out in a directory, as a kubelet mounts it.

Simulated nodes run no containers, so the node agent runs a pod's runtime sidecar as a
local process with ``KUBETEE_ROOT`` pointing here: ``<root>/<mountPath>`` is each
volume mount (a symlink to the volume's directory), so the process sees the files the
container would see. Volume kinds: ``emptyDir`` (``medium: Memory`` under ``/dev/shm``
when the host has it), ``configMap``, ``secret``, ``projected`` (configMap, secret,
downwardAPI sources), ``downwardAPI`` and ``hostPath``; plus the mounts a device
plugin's Allocate asks for.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MEMORY_ROOT = Path("/dev/shm")  # noqa: S108  # the host's tmpfs, like kubelet's Memory medium
Reader = Callable[[str, str, str], Mapping[str, str | bytes] | None]
"""(kind "configmap"|"secret", namespace, name) -> data, text or bytes (None: missing)."""


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward API ``fieldRef`` of a pod (the paths the kubelet supports)."""
    metadata = pod.get("metadata") or {}
    if path in {"metadata.annotations", "metadata.labels"}:
        values = metadata.get(path.split(".")[1]) or {}
        # The kubelet writes one key="value" line per entry, sorted, Go-quoted.
        return "".join(f"{key}={json.dumps(values[key])}\n" for key in sorted(values))
    for prefix in ("metadata.annotations", "metadata.labels"):
        if path.startswith(prefix + "['") and path.endswith("']"):
            key = path[len(prefix) + 2 : -2]
            return str((metadata.get(prefix.split(".")[1]) or {}).get(key, ""))
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": (pod.get("status") or {}).get("podIP"),
        "status.hostIP": (pod.get("status") or {}).get("hostIP"),
    }
    return str(simple.get(path) or "")


class PodFilesystem:
    """The mounts of one container of one pod, under ``pod_dir``."""

    def __init__(self, pod_dir: Path, memory_dir: Path) -> None:
        self.pod_dir = pod_dir
        self.root = pod_dir / "root"
        self.volumes_dir = pod_dir / "volumes"
        self.memory_dir = memory_dir

    def lay_out(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        read: Reader,
        device_mounts: Mapping[str, str],
    ) -> None:
        """Create every volume the container mounts and link it at its mount path."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        self.root.mkdir(parents=True, exist_ok=True)
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                logger.warning("volume %s of the mount %s is not in the pod", mount["name"], mount)
                continue
            self._link(Path(mount["mountPath"]), self._volume(pod, volume, read))
        for container_path, host_path in device_mounts.items():
            self._link(Path(container_path), Path(host_path))

    def refresh_downward_api(self, pod: Mapping[str, Any]) -> None:
        """Rewrite downward API files (annotations change; the kubelet follows them)."""
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            items = _downward_items(volume)
            if items:
                _write_files(self.volumes_dir / volume["name"], _downward_files(pod, items))

    def remove(self) -> None:
        """Delete the volumes (secrets included); keep the directory for logs."""
        shutil.rmtree(self.memory_dir, ignore_errors=True)
        shutil.rmtree(self.volumes_dir, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def _link(self, container_path: Path, target: Path) -> None:
        link = self.root / container_path.relative_to(container_path.anchor)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            return
        link.symlink_to(target, target_is_directory=target.is_dir())

    def _volume(self, pod: Mapping[str, Any], volume: Mapping[str, Any], read: Reader) -> Path:
        name = str(volume["name"])
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        if "hostPath" in volume:
            return Path(str(volume["hostPath"]["path"]))
        if "emptyDir" in volume:
            memory = (volume["emptyDir"] or {}).get("medium") == "Memory"
            base = self.memory_dir if memory and MEMORY_ROOT.is_dir() else self.volumes_dir
            directory = base / name
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            return directory
        directory = self.volumes_dir / name
        files: dict[str, tuple[bytes, int]] = {}
        if "configMap" in volume:
            files.update(_object_files(read, "configmap", namespace, volume["configMap"]))
        elif "secret" in volume:
            source = dict(volume["secret"])
            source["name"] = source.get("secretName", "")
            files.update(_object_files(read, "secret", namespace, source))
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                if "configMap" in source:
                    files.update(_object_files(read, "configmap", namespace, source["configMap"]))
                elif "secret" in source:
                    files.update(_object_files(read, "secret", namespace, source["secret"]))
        files.update(_downward_files(pod, _downward_items(volume)))
        _write_files(directory, files)
        return directory


def _object_files(
    read: Reader, kind: str, namespace: str, source: Mapping[str, Any]
) -> dict[str, tuple[bytes, int]]:
    data = read(kind, namespace, source.get("name", ""))
    if data is None:
        if not source.get("optional"):
            logger.warning("%s %s/%s is missing; its files stay absent", kind, namespace, source)
        return {}
    mode = 0o400 if kind == "secret" else 0o444
    items = source.get("items")
    if items:
        return {
            item["path"]: (_bytes(data[item["key"]]), mode) for item in items if item["key"] in data
        }
    return {key: (_bytes(value), mode) for key, value in data.items()}


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _downward_items(volume: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = list((volume.get("downwardAPI") or {}).get("items") or [])
    for source in (volume.get("projected") or {}).get("sources") or []:
        items.extend((source.get("downwardAPI") or {}).get("items") or [])
    return items


def _downward_files(
    pod: Mapping[str, Any], items: list[Mapping[str, Any]]
) -> dict[str, tuple[bytes, int]]:
    return {
        item["path"]: (field_value(pod, item["fieldRef"]["fieldPath"]).encode(), 0o444)
        for item in items
        if "fieldRef" in item
    }


def _write_files(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    for relative, (content, mode) in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        temporary.replace(path)
