"""Errors of the operator's API calls, on kopf's two kinds of failure.

::

    Exception
    ├── kopf.TemporaryError            retried after ``delay`` seconds
    │   └── ApiUnavailableError        409 Conflict, 429 Too Many Requests, 5xx, no connection
    └── kopf.PermanentError            not retried until the object changes
        └── ApiError
            ├── ApiRefusedError        400/422: the apiserver refused an object we built
            ├── ApiNotFoundError       404
            └── ApiForbiddenError      401/403: the operator's RBAC lacks a permission

The messages carry the apiserver's own ``Status.message`` (it names the field), never
a request body, so no secret can leak through them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import aiohttp
import kopf
from kubernetes.aio.client.exceptions import ApiException

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Seconds to wait before retrying when the apiserver gives no Retry-After.
DEFAULT_RETRY_DELAY = 5.0


class ApiUnavailableError(kopf.TemporaryError):
    """The apiserver could not take the request now; the same request may work later."""


class ApiError(kopf.PermanentError):
    """The apiserver answered that the request itself is wrong."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiRefusedError(ApiError):
    """400/422: the object is invalid (for us: the user's pod template)."""


class ApiNotFoundError(ApiError):
    """404: the object or its namespace does not exist."""


class ApiForbiddenError(ApiError):
    """401/403: the operator's service account may not do this."""


def status_message(error: ApiException) -> str:
    """The apiserver's ``Status.message``, or the HTTP reason when there is none."""
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or error.reason or f"HTTP {error.status}")


def _retry_after(error: ApiException) -> float:
    headers = error.headers or {}
    try:
        return max(float(headers.get("Retry-After", DEFAULT_RETRY_DELAY)), 0.1)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_DELAY


def map_api_exception(error: ApiException, action: str) -> Exception:
    """The error of our hierarchy for an ``ApiException`` raised while doing ``action``."""
    status = int(error.status or 0)
    message = f"{action}: {status_message(error)}"
    if status in {409, 429} or status >= 500 or status == 0:
        return ApiUnavailableError(message, delay=_retry_after(error))
    if status == 404:
        return ApiNotFoundError(message, status)
    if status in {401, 403}:
        return ApiForbiddenError(message, status)
    return ApiRefusedError(message, status)


def mapped(
    action: str,
) -> Callable[[Callable[_P, Coroutine[Any, Any, _T]]], Callable[_P, Coroutine[Any, Any, _T]]]:
    """Decorate an API call so its failures become errors of this hierarchy."""

    def decorate(
        call: Callable[_P, Coroutine[Any, Any, _T]],
    ) -> Callable[_P, Coroutine[Any, Any, _T]]:
        @functools.wraps(call)
        async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return await call(*args, **kwargs)
            except ApiException as error:
                raise map_api_exception(error, action) from None
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ApiUnavailableError(
                    f"{action}: {type(error).__name__}: {error}", delay=DEFAULT_RETRY_DELAY
                ) from None

        return wrapper

    return decorate
