"""Client of the node quoting service (HTTP over its Unix socket)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import aiohttp

from enclave_runtime.sgx.quote import ReportBody

# The host part is ignored on a Unix socket; it only makes a well-formed URL.
_BASE = "http://quoting-service"


class QuotingError(Exception):
    """The quoting service is unreachable or refused the report; the message says which."""


class QuotingClient:
    def __init__(self, socket_path: Path | str, *, timeout_seconds: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def quote(self, report_body: ReportBody) -> bytes:
        """A DCAP quote of ``report_body`` signed by this node's platform."""
        payload = {"report_body": base64.b64encode(report_body.to_bytes()).decode()}
        result = await self._call("POST", "/v1/quote", payload)
        try:
            return base64.b64decode(str(result["quote"]), validate=True)
        except (KeyError, binascii.Error) as exc:
            raise QuotingError("the quoting service answered without a base64 quote") from exc

    async def platform(self) -> dict[str, object]:
        return await self._call("GET", "/v1/platform", None)

    async def _call(
        self, method: str, path: str, payload: dict[str, str] | None
    ) -> dict[str, object]:
        # Resolved: a socket reached through symlinked mounts (the node agent's layout
        # under KUBETEE_ROOT) may have a path longer than a socket address can hold.
        connector = aiohttp.UnixConnector(path=str(self.socket_path.resolve()))
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=self._timeout) as session,
                session.request(method, _BASE + path, json=payload) as response,
            ):
                body = await response.json(content_type=None)
                if response.status != 200:
                    message = body.get("message") if isinstance(body, dict) else None
                    raise QuotingError(
                        f"the quoting service refused ({response.status}): {message}"
                    )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise QuotingError(
                f"cannot reach the quoting service at {self.socket_path}: {exc}"
            ) from exc
        if not isinstance(body, dict):
            raise QuotingError("the quoting service answered with something other than an object")
        return body
