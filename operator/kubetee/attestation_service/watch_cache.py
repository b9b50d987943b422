"""One kind of Kubernetes object kept current in memory by a list and a watch.

A thread lists the objects (a consistent read), then watches from the list's
resourceVersion, applying every ADDED, MODIFIED and DELETED as it arrives; a watch that
ends on its timeout resumes from the last resourceVersion seen (bookmarks move it on). A
watch the apiserver can no longer resume (410 Gone, an ``ERROR`` event) or any failure
(connection lost, apiserver away) starts again from a fresh list: until that list has
been read the cache is not synced, and readers are refused rather than served what may
be stale (fail closed).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

T = TypeVar("T")
_GONE = 410
# The apiserver ends a watch after this long (a new one resumes from where it ended) ...
WATCH_TIMEOUT_SECONDS = 240
# ... and a watch that hears nothing, not even a bookmark, this long is taken as lost.
_READ_TIMEOUT_SECONDS = WATCH_TIMEOUT_SECONDS + 30
_RETRY_SECONDS = (0.5, 10.0)

Key = tuple[str, str]  # (namespace, name)
# list_objects() -> the raw response of a list; watch_objects(resource_version, timeouts)
# -> the raw (streaming) response of a watch from that version.
ListObjects = Callable[[], Any]
WatchObjects = Callable[[str, int, float], Any]


class WatchExpiredError(Exception):
    """The apiserver cannot resume the watch from our resourceVersion: list again."""


class WatchCache(Generic[T]):
    """Objects of one kind by (namespace, name), each as ``convert`` made it."""

    def __init__(
        self,
        kind: str,
        list_objects: ListObjects,
        watch_objects: WatchObjects,
        convert: Callable[[dict[str, Any]], T],
    ) -> None:
        self.kind = kind
        self._list = list_objects
        self._watch = watch_objects
        self._convert = convert
        self._objects: dict[Key, T] = {}
        self._resource_version: str | None = None
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        self.relists = 0  # how many times the objects were listed (tests, logs)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def get(self, namespace: str, name: str) -> T | None:
        """The object, or None when there is none. Raises NotSyncedError before sync."""
        if not self._synced.is_set():
            raise NotSyncedError(self.kind)
        return self._objects.get((namespace, name))

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # -- running

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            response.close()  # unblocks a read in progress

    def run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                if self._resource_version is None:
                    self.relist()
                self.watch_once()
                failures = 0
            except WatchExpiredError:
                log.info("watch of %s expired; listing again", self.kind)
                self._resource_version = None
            except Exception as exc:  # any failure: stale until listed again
                if self._stopped.is_set():
                    return
                self._synced.clear()
                self._resource_version = None
                delay = min(_RETRY_SECONDS[0] * 2**failures, _RETRY_SECONDS[1])
                failures += 1
                log.warning(
                    "watch of %s failed (%s: %s); refusing until listed again in %.1fs",
                    self.kind,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._stopped.wait(delay)

    def relist(self) -> None:
        document = json.loads(self._list().data)
        objects = {}
        for item in document.get("items") or []:
            key = _key(item)
            objects[key] = self._convert(item)
        with self._lock:
            self._objects = objects
        self._resource_version = str(document["metadata"]["resourceVersion"])
        self.relists += 1
        self._synced.set()

    def watch_once(self) -> None:
        """Apply the events of one watch until the apiserver ends it."""
        version = self._resource_version
        if version is None:
            raise WatchExpiredError("nothing listed yet")
        try:
            response = self._watch(version, WATCH_TIMEOUT_SECONDS, float(_READ_TIMEOUT_SECONDS))
        except ApiException as exc:
            if exc.status == _GONE:
                raise WatchExpiredError(str(exc.reason)) from None
            raise
        self._response = response
        try:
            for event in _events(response):
                if self._stopped.is_set():
                    return
                self.apply(event)
        finally:
            self._response = None
            response.close()

    def apply(self, event: dict[str, Any]) -> None:
        kind, body = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if body.get("code") == _GONE:
                raise WatchExpiredError(body.get("message", ""))
            raise RuntimeError(f"watch error {body.get('code')}: {body.get('message')}")
        version = (body.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            converted = self._convert(body)
            with self._lock:
                self._objects[_key(body)] = converted
        elif kind == "DELETED":
            with self._lock:
                self._objects.pop(_key(body), None)
        elif kind != "BOOKMARK":
            raise RuntimeError(f"unexpected watch event {kind!r}")
        if version:
            self._resource_version = str(version)


class NotSyncedError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(f"the {kind} cache is not synced with the Kubernetes API")
        self.kind = kind


def _key(body: dict[str, Any]) -> Key:
    metadata = body.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata["name"]))


def _events(response: Any) -> Iterator[dict[str, Any]]:
    for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
        if line:
            yield json.loads(line)
