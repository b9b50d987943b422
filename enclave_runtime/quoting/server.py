"""The quoting service's HTTP endpoints, served on a Unix socket."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import signal
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from enclave_runtime.sgx.platform import PCK_CHAIN_FILE, SimulatedPlatform
from enclave_runtime.sgx.quote import QuoteFormatError, ReportBody

log = logging.getLogger(__name__)


class CurrentPlatform:
    """The node's platform, re-read once its PCK chain changes: after a microcode or
    platform software update registers again (``quoting-service update``, ``register``),
    quotes carry the new TCB and certificate without restarting the service."""

    def __init__(self, platform: SimulatedPlatform, platform_dir: Path | None = None) -> None:
        self._platform = platform
        self._dir = platform_dir
        self._stamp = self._chain_stamp()

    def _chain_stamp(self) -> tuple[int, int] | None:
        if self._dir is None:
            return None
        try:
            stat = (self._dir / PCK_CHAIN_FILE).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def get(self) -> SimulatedPlatform:
        stamp = self._chain_stamp()
        if self._dir is not None and stamp is not None and stamp != self._stamp:
            try:
                self._platform = SimulatedPlatform.load(self._dir)
            except (OSError, ValueError, KeyError):
                return self._platform  # mid-write: the next request tries again
            self._stamp = stamp
            log.info(
                "platform updated: CPUSVN %s, PCESVN %d",
                self._platform.identity.cpusvn.hex(),
                self._platform.identity.pcesvn,
            )
        return self._platform


PLATFORM_KEY = web.AppKey("platform", CurrentPlatform)
NODE_KEY = web.AppKey("node", str)
# Like aesmd's socket, open to every local process: any enclave on the node may be quoted.
SOCKET_MODE = 0o666


def create_app(
    platform: SimulatedPlatform, node_name: str, platform_dir: Path | None = None
) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[PLATFORM_KEY] = CurrentPlatform(platform, platform_dir)
    app[NODE_KEY] = node_name
    app.router.add_post("/v1/quote", _quote)
    app.router.add_get("/v1/platform", _platform)
    return app


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _quote(request: web.Request) -> web.Response:
    try:
        payload = await request.json()
    except ValueError:
        return _error(400, "BAD_REQUEST", 'body must be JSON: {"report_body": <base64>}')
    encoded = payload.get("report_body") if isinstance(payload, dict) else None
    if not isinstance(encoded, str):
        return _error(400, "BAD_REQUEST", 'body must be JSON: {"report_body": <base64>}')
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return _error(400, "BAD_REQUEST", "report_body is not valid base64")
    try:
        body = ReportBody.from_bytes(raw)
    except QuoteFormatError as error:
        return _error(400, error.code, str(error))
    quote = request.app[PLATFORM_KEY].get().quote(body)
    log.info("quoted a report of enclave %s", body.mrenclave.hex()[:16])
    return web.json_response({"quote": base64.b64encode(quote).decode()})


async def _platform(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM_KEY].get()
    der = platform.pck_certificate.public_bytes(serialization.Encoding.DER)
    return web.json_response(
        {
            "node": request.app[NODE_KEY],
            "fmspc": platform.identity.fmspc.hex().upper(),
            "pck_certificate_sha256": hashlib.sha256(der).hexdigest(),
            "cpusvn": platform.identity.cpusvn.hex(),
            "pcesvn": platform.identity.pcesvn,
        }
    )


def run(platform_dir: Path, socket_path: Path, node_name: str) -> None:
    """Serve until SIGTERM or SIGINT; a stale socket is replaced, and removed at exit."""
    platform = SimulatedPlatform.load(platform_dir)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    try:
        asyncio.run(_serve(platform, socket_path, node_name, platform_dir))
    finally:
        socket_path.unlink(missing_ok=True)
        log.info("quoting service stopped")


async def _serve(
    platform: SimulatedPlatform, socket_path: Path, node_name: str, platform_dir: Path
) -> None:
    runner = web.AppRunner(create_app(platform, node_name, platform_dir), access_log=None)
    await runner.setup()
    site = web.UnixSite(runner, str(socket_path))
    await site.start()
    await asyncio.to_thread(socket_path.chmod, SOCKET_MODE)
    log.info(
        "quoting service of node %s (FMSPC %s) listening on %s",
        node_name,
        platform.identity.fmspc.hex().upper(),
        socket_path,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
