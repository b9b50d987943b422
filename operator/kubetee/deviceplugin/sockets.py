"""Listening on a Unix socket with a gRPC server, failing with a message that says why."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from kubetee.deviceplugin.errors import SocketError

# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def listen_unix(server: grpc.aio.Server, path: Path) -> None:
    """Bind ``server`` to ``path``, replacing a stale socket file left there."""
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH:
        raise SocketError(
            f"socket path {path} is {length} bytes, over the Unix limit of {MAX_SOCKET_PATH}; "
            "use a shorter --plugin-dir"
        )
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise SocketError(f"cannot replace {path}: {error.strerror}") from None
    try:
        server.add_insecure_port(f"unix:{path}")
    except RuntimeError:
        raise SocketError(
            f"cannot listen on {path}: check that {path.parent} exists and is writable"
        ) from None
