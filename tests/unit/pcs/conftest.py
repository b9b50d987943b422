"""A simulated PCS on loopback (real HTTP, real signatures) and what it certifies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from enclave_runtime.sgx.authority import SimulatedAuthority
from kubetee.pcs.server import create_app
from kubetee.pcs.stores import CollateralStore, SimulatedStore


@dataclass
class Served:
    """A PCS app on a loopback port, counting the requests of each path."""

    url: str
    requests: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="session")
def authority() -> SimulatedAuthority:
    return SimulatedAuthority.generate()


async def serve(store: CollateralStore) -> tuple[web.AppRunner, Served]:
    served = Served("")

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        served.requests[request.path] = served.requests.get(request.path, 0) + 1
        return await handler(request)

    app = create_app(store)
    app.middlewares.append(count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    served.url = f"http://127.0.0.1:{port}"
    return runner, served


@pytest.fixture
async def simulated_pcs(authority: SimulatedAuthority) -> AsyncIterator[Served]:
    runner, served = await serve(SimulatedStore(authority))
    yield served
    await runner.cleanup()


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "data" / "dcap"
