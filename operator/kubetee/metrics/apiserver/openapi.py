"""The OpenAPI v2 document the kube-apiserver merges into its own ``/openapi/v2``.

The aggregator downloads every APIService's spec and logs an error (and retries) for
a server without one; this short spec describes the routes and the
``MetricValueList`` they return. ``/openapi/v3`` is not served: the aggregator then
treats the APIService as a v2-only one, which it handles without complaint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubetee.metrics.apiserver.wire import GROUP, PREFIX, VERSION

_DEFINITION = "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2"


def _parameter(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "type": "string",
        "required": where == "path",
        "description": description,
        "uniqueItems": True,
    }


def _operation(operation_id: str, description: str, path_parameters: list[str]) -> dict[str, Any]:
    described = {
        "namespace": "namespace of the described objects",
        "resource": "resource of the described objects (pods, enclavecontainers.kubetee.io)",
        "name": "name of the described object, or * for those the labelSelector selects",
        "metric": "name of the metric (epc_utilization, epc_used_bytes, epc_requested_bytes)",
    }
    return {
        "get": {
            "description": description,
            "operationId": operation_id,
            "produces": ["application/json"],
            "schemes": ["https"],
            "tags": [f"customMetrics_{VERSION}"],
            "parameters": [_parameter(p, "path", described[p]) for p in path_parameters]
            + [
                _parameter("labelSelector", "query", "selects the described objects by label"),
                _parameter("metricLabelSelector", "query", "not supported by these metrics"),
            ],
            "responses": {
                "200": {
                    "description": "OK",
                    "schema": {"$ref": f"#/definitions/{_DEFINITION}.MetricValueList"},
                },
                "401": {"description": "Unauthorized"},
                "403": {"description": "Forbidden"},
                "404": {"description": "NotFound"},
            },
            "x-kubernetes-group-version-kind": {
                "group": GROUP,
                "version": VERSION,
                "kind": "MetricValueList",
            },
        }
    }


def _definitions() -> dict[str, Any]:
    string = {"type": "string"}
    return {
        f"{_DEFINITION}.MetricValueList": {
            "description": "MetricValueList is a list of values for a given metric for some "
            "set of objects",
            "type": "object",
            "required": ["metadata", "items"],
            "properties": {
                "apiVersion": string,
                "kind": string,
                "metadata": {"type": "object"},
                "items": {
                    "type": "array",
                    "items": {"$ref": f"#/definitions/{_DEFINITION}.MetricValue"},
                },
            },
            "x-kubernetes-group-version-kind": [
                {"group": GROUP, "version": VERSION, "kind": "MetricValueList"}
            ],
        },
        f"{_DEFINITION}.MetricValue": {
            "description": "MetricValue is the metric value for some object",
            "type": "object",
            "required": ["describedObject", "metric", "timestamp", "windowSeconds", "value"],
            "properties": {
                "describedObject": {"type": "object"},
                "metric": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": string, "selector": {"type": "object"}},
                },
                "timestamp": {"type": "string", "format": "date-time"},
                "windowSeconds": {"type": "integer", "format": "int64"},
                "value": string,
            },
        },
    }


def openapi_v2() -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": "KubeTEE custom metrics API", "version": VERSION},
        "paths": {
            PREFIX + "/namespaces/{namespace}/{resource}/{name}/{metric}": _operation(
                "listNamespacedCustomMetricValue",
                "values of a custom metric for one namespaced object, or for those selected",
                ["namespace", "resource", "name", "metric"],
            ),
        },
        "definitions": _definitions(),
    }


OPENAPI_V2 = json.dumps(openapi_v2(), sort_keys=True).encode()
OPENAPI_V2_ETAG = '"' + hashlib.sha256(OPENAPI_V2).hexdigest()[:32] + '"'
