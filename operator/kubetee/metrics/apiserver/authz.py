"""Delegated authorization: the kube-apiserver's RBAC decides, through SubjectAccessReview.

Each request becomes the attributes the kube-apiserver's own request parser would
give it: ``GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/epc_utilization``
is verb ``get`` on resource ``pods``, name ``*``, subresource ``epc_utilization`` in
group ``custom.metrics.k8s.io``; discovery paths are non-resource URLs. So the usual
RBAC for custom metrics (``custom.metrics.k8s.io`` resources ``*`` verb ``get``) works.
Decisions are cached for a few seconds per identity and attributes, as the generic
API server's delegating authorizer does, so an HPA's sync costs one review per window.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubetee.metrics.apiserver.auth import UserInfo
from kubetee.metrics.apiserver.wire import GROUP, VERSION


@dataclass(frozen=True, slots=True)
class ResourceAttributes:
    namespace: str
    resource: str
    name: str
    subresource: str
    verb: str = "get"
    group: str = GROUP
    version: str = VERSION

    def to_json(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "verb": self.verb,
            "group": self.group,
            "version": self.version,
            "resource": self.resource,
            "subresource": self.subresource,
            "name": self.name,
        }


@dataclass(frozen=True, slots=True)
class NonResourceAttributes:
    path: str
    verb: str = "get"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "verb": self.verb}


Attributes = ResourceAttributes | NonResourceAttributes


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision: ...


ReviewSender = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Creates a SubjectAccessReview (the body) and returns the created object."""


def review_body(user: UserInfo, attributes: Attributes) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "user": user.name,
        "groups": list(user.groups),
        "extra": {key: list(values) for key, values in user.extra.items()},
    }
    if isinstance(attributes, ResourceAttributes):
        spec["resourceAttributes"] = attributes.to_json()
    else:
        spec["nonResourceAttributes"] = attributes.to_json()
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


class SubjectAccessReviewAuthorizer:
    """Asks the kube-apiserver; caches each answer for ``ttl_seconds``."""

    def __init__(
        self,
        send: ReviewSender,
        ttl_seconds: float = 10.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, Decision]] = OrderedDict()
        self.reviews = 0  # reviews sent (not answered from the cache)

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision:
        key = (
            user.name,
            user.groups,
            tuple(sorted((k, v) for k, v in user.extra.items())),
            attributes,
        )
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        self.reviews += 1
        answer = await self._send(review_body(user, attributes))
        status = answer.get("status") or {}
        decision = Decision(
            allowed=bool(status.get("allowed")) and not status.get("denied"),
            reason=str(status.get("reason") or status.get("evaluationError") or ""),
        )
        self._cache[key] = (now + self._ttl, decision)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return decision
