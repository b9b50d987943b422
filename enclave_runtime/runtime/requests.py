"""Re-attestation on request: a pod annotation, seen through the downward API.

The operator sets ``kubetee.io/reattest-requested`` on a replica when its attestation
policy changes. The kubelet keeps a downward API file of the pod's annotations up to
date (``KUBETEE_PODINFO_DIR/annotations``, lines ``key="value"``); the runtime
polls it and attests again whenever the value differs from the one it last acted on.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

REATTEST_ANNOTATION = "kubetee.io/reattest-requested"
ANNOTATIONS_FILE = "annotations"
POLL_SECONDS = 1.0


def read_annotation(podinfo_dir: Path, key: str) -> str | None:
    """One annotation from a downward API annotations file, None if absent/unreadable."""
    try:
        text = (podinfo_dir / ANNOTATIONS_FILE).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, separator, quoted = line.partition("=")
        if separator and name == key:
            # The kubelet writes Go-quoted strings; for the ASCII values we set, a Python
            # string literal reads the same.
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(quoted)
                return value if isinstance(value, str) else None
    return None


async def watch_requests(podinfo_dir: Path, on_request: Callable[[str], None]) -> None:
    """Call ``on_request(value)`` each time the re-attestation request changes."""
    seen = await asyncio.to_thread(read_annotation, podinfo_dir, REATTEST_ANNOTATION)
    while True:
        await asyncio.sleep(POLL_SECONDS)
        current = await asyncio.to_thread(read_annotation, podinfo_dir, REATTEST_ANNOTATION)
        if current is not None and current != seen:
            log.info("re-attestation requested (%s)", current)
            on_request(current)
        seen = current
