"""Who is registering a platform: a node, proven by a ServiceAccount token the apiserver checks.

A node presents a token of the node ServiceAccount (the chart's node DaemonSet gets one
projected, audience ``kubetee-pcs``; on the local cluster the tooling requests one bound
to the Node, as the kubelet requests tokens for its pods). The PCS sends it to the
apiserver's TokenReview with that audience and takes the node's name from what the
apiserver says the token is bound to: the Node itself, or the pod (whose
``spec.nodeName`` the PCS reads, checking the pod's UID). The request body never names
the node, so a node can register a platform only for itself, and a token stolen from
one node is good only for that node, for its short lifetime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_MAX_TOKEN_BYTES = 16 * 1024


class AuthenticationError(Exception):
    """A registration that is not a node's; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    node: str
    username: str
    pod: str  # namespace/name of the bound pod, or "" for a Node-bound token


def service_account_username(reference: str) -> str:
    """``NAMESPACE/NAME`` of a ServiceAccount as the username its tokens authenticate as."""
    namespace, _, name = reference.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"{reference!r} is not NAMESPACE/NAME of a ServiceAccount")
    return f"{_SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


class NodeAuthenticator:
    """Checks node tokens with TokenReview; only the listed ServiceAccounts are nodes."""

    def __init__(self, api_client: Any, *, audience: str, node_accounts: Iterable[str]) -> None:
        self._authn = client.AuthenticationV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._audience = audience
        self._accounts = frozenset(service_account_username(a) for a in node_accounts)
        if not self._accounts:
            raise ValueError("at least one node ServiceAccount is needed")

    async def authenticate(self, authorization: str | None) -> NodeIdentity:
        token = _bearer(authorization)
        return await asyncio.to_thread(self._authenticate, token)

    def _authenticate(self, token: str) -> NodeIdentity:
        review = {"spec": {"token": token, "audiences": [self._audience]}}
        try:
            result = self._authn.create_token_review(cast(Any, review), _request_timeout=10)
        except ApiException as exc:
            raise AuthenticationError(
                f"the apiserver could not review the token ({exc.status} {exc.reason})",
                code="TOKEN_REVIEW_FAILED",
                status=503,
            ) from None
        status = result.status
        if status is None or not status.authenticated or status.user is None:
            raise AuthenticationError(
                f"the token is not valid for audience {self._audience}: present a node "
                "ServiceAccount token issued for it",
                code="UNAUTHENTICATED",
                status=401,
            )
        username = str(status.user.username or "")
        if username not in self._accounts:
            raise AuthenticationError(
                f"{username} is not a node ServiceAccount; only nodes register platforms",
                code="NOT_A_NODE",
                status=403,
            )
        extra: dict[str, list[str]] = status.user.extra or {}
        node = _single(extra, NODE_NAME_EXTRA)
        pod_name, pod_uid = _single(extra, POD_NAME_EXTRA), _single(extra, POD_UID_EXTRA)
        namespace = username.removeprefix(_SERVICE_ACCOUNT_PREFIX).split(":", 1)[0]
        if pod_name and pod_uid:
            pod_node = self._node_of_pod(namespace, pod_name, pod_uid)
            if node and node != pod_node:
                raise AuthenticationError(
                    "the token's node and its pod's node differ",
                    code="TOKEN_NOT_BOUND",
                    status=403,
                )
            return NodeIdentity(pod_node, username, f"{namespace}/{pod_name}")
        if node:
            return NodeIdentity(node, username, "")
        raise AuthenticationError(
            "the token is bound to neither a pod nor a node: use the DaemonSet's projected "
            "token (or one bound to the Node), not a long-lived or unbound token",
            code="TOKEN_NOT_BOUND",
            status=403,
        )

    def _node_of_pod(self, namespace: str, name: str, uid: str) -> str:
        try:
            pod = self._core.read_namespaced_pod(name, namespace, _request_timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                raise AuthenticationError(
                    f"the token's pod {namespace}/{name} no longer exists",
                    code="TOKEN_NOT_BOUND",
                    status=403,
                ) from None
            raise AuthenticationError(
                f"cannot read the token's pod ({exc.status} {exc.reason})",
                code="TOKEN_REVIEW_FAILED",
                status=503,
            ) from None
        node = pod.spec.node_name if pod.spec else None
        if pod.metadata is None or pod.metadata.uid != uid or not node:
            raise AuthenticationError(
                f"the token's pod {namespace}/{name} was replaced or is not on a node",
                code="TOKEN_NOT_BOUND",
                status=403,
            )
        return str(node)


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "registration needs Authorization: Bearer <node ServiceAccount token>",
            code="UNAUTHENTICATED",
            status=401,
        )
    if len(token) > _MAX_TOKEN_BYTES or not token.isascii():
        raise AuthenticationError("the token is malformed", code="UNAUTHENTICATED", status=401)
    return token


def _single(extra: dict[str, list[str]], key: str) -> str:
    values = extra.get(key) or []
    return str(values[0]) if len(values) == 1 else ""
