"""API failures become kopf's temporary or permanent errors, with the apiserver's words."""

from __future__ import annotations

import json

import kopf
import pytest
from kubernetes.aio.client.exceptions import ApiException

from kubetee.k8s.errors import (
    ApiForbiddenError,
    ApiNotFoundError,
    ApiRefusedError,
    ApiUnavailableError,
    map_api_exception,
    mapped,
)


def _exception(status: int, message: str = "", retry_after: str | None = None) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = json.dumps({"kind": "Status", "message": message}) if message else None
    error.headers = {"Retry-After": retry_after} if retry_after else {}
    return error


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_conflicts_throttling_and_server_errors_are_temporary(status: int) -> None:
    error = map_api_exception(_exception(status, "busy", retry_after="7"), "applying")
    assert isinstance(error, ApiUnavailableError)
    assert isinstance(error, kopf.TemporaryError)
    assert error.delay == 7.0
    assert str(error) == "applying: busy"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ApiRefusedError),
        (422, ApiRefusedError),
        (404, ApiNotFoundError),
        (403, ApiForbiddenError),
    ],
)
def test_request_errors_are_permanent(status: int, kind: type[Exception]) -> None:
    error = map_api_exception(_exception(status, 'Deployment "x" is invalid: spec.replicas'), "a")
    assert isinstance(error, kind)
    assert isinstance(error, kopf.PermanentError)
    assert "spec.replicas" in str(error)


async def test_decorator_maps_and_keeps_results() -> None:
    @mapped("doing")
    async def fails() -> None:
        raise _exception(422, "bad field")

    @mapped("doing")
    async def works() -> int:
        return 3

    with pytest.raises(ApiRefusedError, match="doing: bad field"):
        await fails()
    assert await works() == 3
