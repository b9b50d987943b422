"""Errors of the metrics module and of the custom metrics API server.

Hierarchy::

    MetricsError                       base; the message says what to change
    ├── UsageValueError                an EPC usage value that is not a size or percentage
    └── CustomMetricsError             refusal of a custom metrics API request (has an HTTP
        │                              status and a Kubernetes Status reason)
        ├── UnauthenticatedError       401 Unauthorized: no valid front-proxy credentials
        ├── ForbiddenError             403 Forbidden: SubjectAccessReview said no
        ├── BadRequestError            400 BadRequest: malformed path or selector
        ├── NotFoundError              404 NotFound: unknown metric, resource or object
        └── UpstreamError              503 ServiceUnavailable: Kubernetes API failed

Messages never carry credentials: headers and certificates are named, never echoed.
"""

from __future__ import annotations

from typing import ClassVar


class MetricsError(Exception):
    """Base of every error raised by :mod:`kubetee.metrics`."""


class UsageValueError(MetricsError, ValueError):
    """An EPC usage value that is neither a size (``48Mi``) nor a percentage (``75%``)."""


class CustomMetricsError(MetricsError):
    """A custom metrics API request refused; becomes a ``Status`` object."""

    status: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"


class UnauthenticatedError(CustomMetricsError):
    status = 401
    reason = "Unauthorized"


class ForbiddenError(CustomMetricsError):
    status = 403
    reason = "Forbidden"


class BadRequestError(CustomMetricsError):
    status = 400
    reason = "BadRequest"


class NotFoundError(CustomMetricsError):
    status = 404
    reason = "NotFound"


class UpstreamError(CustomMetricsError):
    status = 503
    reason = "ServiceUnavailable"
