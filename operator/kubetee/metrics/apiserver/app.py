"""The aiohttp application of the custom metrics API server.

Every request but the health checks passes front-proxy authentication and then
SubjectAccessReview authorization; refusals and failures are ``meta/v1.Status``
documents with the matching code, as from any Kubernetes API server.

Routes (under ``/apis/custom.metrics.k8s.io/v1beta2``)::

    GET /namespaces/{namespace}/{resource}/{name}/{metric}   one object, or * with
                                                             ?labelSelector=...
    GET /{resource}/{name}/{metric}                          cluster-scoped objects (none)
    GET /namespaces/{namespace}/metrics/{metric}             namespace metrics (none)

plus discovery (``/apis``, ``/apis/custom.metrics.k8s.io``, the version), the OpenAPI
v2 document (``/openapi/v2``) and ``/healthz``, ``/livez``, ``/readyz``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from kubetee.metrics import names
from kubetee.metrics.apiserver import wire
from kubetee.metrics.apiserver.auth import FrontProxyAuthenticator, UserInfo
from kubetee.metrics.apiserver.authz import (
    Attributes,
    Authorizer,
    NonResourceAttributes,
    ResourceAttributes,
)
from kubetee.metrics.apiserver.openapi import OPENAPI_V2, OPENAPI_V2_ETAG
from kubetee.metrics.apiserver.provider import METRICS, MetricsProvider
from kubetee.metrics.errors import (
    BadRequestError,
    CustomMetricsError,
    ForbiddenError,
    NotFoundError,
)

log = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiserverMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            names.CUSTOM_METRICS_REQUESTS_TOTAL,
            "Requests to the custom metrics API server, by HTTP status code.",
            ("code",),
            registry=registry,
        )
        self.scrape_errors = Counter(
            names.CUSTOM_METRICS_SCRAPE_ERRORS_TOTAL,
            "Enclave runtime /metrics scrapes that failed or could not be read.",
            registry=registry,
        )


@dataclass
class Server:
    """What the handlers need; one per process."""

    authenticator: FrontProxyAuthenticator
    authorizer: Authorizer
    provider: MetricsProvider
    metrics: ApiserverMetrics


SERVER = web.AppKey("server", Server)


def attributes_of(request: web.Request) -> Attributes:
    """The authorization attributes the kube-apiserver would give this request."""
    parts = [p for p in request.path.split("/") if p]
    prefix = [p for p in wire.PREFIX.split("/") if p]
    verb = "get" if request.method in ("GET", "HEAD") else request.method.lower()
    if parts[: len(prefix)] != prefix or len(parts) == len(prefix):
        return NonResourceAttributes(request.path, verb)
    rest = parts[len(prefix) :]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    return ResourceAttributes(
        namespace=namespace,
        resource=rest[0],
        name=rest[1] if len(rest) > 1 else "",
        subresource=rest[2] if len(rest) > 2 else "",
        verb=verb,
    )


def peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    return ssl_object.getpeercert(binary_form=True)


def _describe(user: UserInfo, attributes: Attributes) -> str:
    if isinstance(attributes, NonResourceAttributes):
        return f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
    scope = f' in the namespace "{attributes.namespace}"' if attributes.namespace else ""
    what = attributes.resource + (f"/{attributes.subresource}" if attributes.subresource else "")
    return (
        f'User "{user.name}" cannot {attributes.verb} resource "{what}" in API group '
        f'"{attributes.group}"{scope}'
    )


async def _admit(server: Server, request: web.Request) -> UserInfo:
    """The authenticated caller, if RBAC allows the request (else the refusal)."""
    user = server.authenticator.authenticate(peer_certificate(request), request.headers)
    attributes = attributes_of(request)
    decision = await server.authorizer.authorize(user, attributes)
    if not decision.allowed:
        reason = f": {decision.reason}" if decision.reason else ""
        raise ForbiddenError(_describe(user, attributes) + reason)
    return user


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    server = request.app[SERVER]
    try:
        if request.path not in HEALTH_PATHS:
            await _admit(server, request)
        response = await handler(request)
    except CustomMetricsError as error:
        if error.status in (401, 403):
            log.info("refused %s %s: %s", request.method, request.path, error)
        response = web.json_response(
            wire.status(error.status, error.reason, str(error)), status=error.status
        )
    except web.HTTPException as error:
        response = web.json_response(
            wire.status(error.status, error.reason.replace(" ", ""), error.text or error.reason),
            status=error.status,
        )
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        response = web.json_response(
            wire.status(500, "InternalError", "internal error; see the server's log"), status=500
        )
    server.metrics.requests.labels(str(response.status)).inc()
    return response


async def _health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _openapi_v2(request: web.Request) -> web.Response:
    if request.headers.get("If-None-Match") == OPENAPI_V2_ETAG:
        return web.Response(status=304, headers={"ETag": OPENAPI_V2_ETAG})
    return web.Response(
        body=OPENAPI_V2, content_type="application/json", headers={"ETag": OPENAPI_V2_ETAG}
    )


async def _group_list(_request: web.Request) -> web.Response:
    return web.json_response(wire.api_group_list())


async def _group(_request: web.Request) -> web.Response:
    return web.json_response(wire.api_group())


async def _resources(_request: web.Request) -> web.Response:
    return web.json_response(wire.api_resource_list(METRICS))


def _metric_selector(request: web.Request) -> None:
    if request.query.get("metricLabelSelector"):
        raise BadRequestError(
            "metricLabelSelector is not supported: the EPC metrics have one series per object"
        )


async def _namespaced(request: web.Request) -> web.Response:
    _metric_selector(request)
    info = request.match_info
    values = await request.app[SERVER].provider.values(
        info["namespace"],
        info["resource"],
        info["name"],
        info["metric"],
        request.query.get("labelSelector", ""),
    )
    return web.json_response(wire.metric_value_list(values))


async def _cluster_scoped(request: web.Request) -> web.Response:
    raise NotFoundError(
        f"no custom metrics for cluster-scoped {request.match_info['resource']!r}: "
        "the EPC metrics describe pods and EnclaveContainers, in their namespaces"
    )


async def _namespace_metric(request: web.Request) -> web.Response:
    raise NotFoundError(
        f"no namespace metric {request.match_info['metric']!r}: the EPC metrics describe "
        "pods and EnclaveContainers"
    )


def create_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[SERVER] = server
    for path in HEALTH_PATHS:
        app.router.add_get(path, _health)
    app.router.add_get("/openapi/v2", _openapi_v2)
    app.router.add_get("/apis", _group_list)
    app.router.add_get(f"/apis/{wire.GROUP}", _group)
    app.router.add_get(wire.PREFIX, _resources)
    app.router.add_get(wire.PREFIX + "/namespaces/{namespace}/metrics/{metric}", _namespace_metric)
    app.router.add_get(
        wire.PREFIX + "/namespaces/{namespace}/{resource}/{name}/{metric}", _namespaced
    )
    app.router.add_get(wire.PREFIX + "/{resource}/{name}/{metric}", _cluster_scoped)
    return app


def server_ssl_context(cert_file: str, key_file: str, client_ca_pem: str) -> ssl.SSLContext:
    """TLS 1.2+, asking for (not requiring) a client certificate from the front-proxy CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=client_ca_pem)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context
