"""Restarting what a local cluster runs when it dies or hangs, as a kubelet would.

On a real cluster the kubelet restarts a crashed control-plane static pod, a node
daemon or an operator container, and kills one whose liveness probe fails. The local
cluster's processes have no kubelet, so ``kubetee cluster up`` starts this supervisor
(``kubetee cluster supervise``, itself a process of the cluster): every second it
looks at each process recorded in the run directory and starts a dead one again, as it
was started, with a growing back-off (1 s doubling to 30 s, reset after a minute of
running). A process recorded with a liveness URL that fails
:data:`LIVENESS_FAILURES` probes in a row, once it has answered since it started (as a
startup probe gates a liveness probe; one that never answers within
:data:`STARTUP_SECONDS` counts as hung too), is killed and restarted. A process stopped
on purpose (``down``, or a node removed) has no pid file any more and is left alone.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.processes import ManagedProcess, reap_children

logger = logging.getLogger(__name__)

PROCESS_NAME = "supervisor"
LIVENESS_FAILURES = 4
LIVENESS_PERIOD_SECONDS = 3.0
STARTUP_SECONDS = 120.0
_BACKOFF = (1.0, 30.0)
_STEADY_SECONDS = 60.0


@dataclass
class _Watch:
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0
    liveness_failures: int = 0
    next_probe: float = 0.0
    answered: bool = False  # the liveness URL answered since the last start


def _answers(url: str) -> bool:
    # Loopback only, and any certificate: the supervisor asks "alive?", not "trusted?".
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=context, timeout=2):  # noqa: S310 - loopback
            return True
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    """Keeps every recorded process of one cluster running."""

    def __init__(
        self,
        layout: ClusterLayout,
        *,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[str], bool] = _answers,
    ) -> None:
        self.layout = layout
        self._clock = clock
        self._probe = probe
        self._watches: dict[str, _Watch] = {}

    def _processes(self) -> list[ManagedProcess]:
        return [
            ManagedProcess(path.stem, self.layout.run_dir, self.layout.log_dir)
            for path in sorted(self.layout.run_dir.glob("*.pid"))
            if path.stem != PROCESS_NAME
        ]

    def check_once(self) -> list[str]:
        """One look at every process; returns the names (re)started."""
        reap_children()
        restarted = []
        for process in self._processes():
            record = process.record()
            if record is None:
                continue
            watch = self._watches.setdefault(process.name, _Watch(started=self._clock()))
            if process.pid() is not None and self._alive(process, record, watch):
                if self._clock() - watch.started > _STEADY_SECONDS:
                    watch.restarts = 0
                continue
            if self._restart(process, record, watch):
                restarted.append(process.name)
        return restarted

    def _alive(self, process: ManagedProcess, record: dict[str, Any], watch: _Watch) -> bool:
        url = record.get("liveness")
        now = self._clock()
        if not url or now < watch.next_probe:
            return True
        watch.next_probe = now + LIVENESS_PERIOD_SECONDS
        if self._probe(url):
            watch.liveness_failures = 0
            watch.answered = True
            return True
        if not watch.answered and now - watch.started < STARTUP_SECONDS:
            return True  # still starting (a loaded machine may take a while)
        watch.liveness_failures += 1
        if watch.liveness_failures < LIVENESS_FAILURES:
            return True
        logger.warning(
            "%s does not answer its liveness probe %s (%d times); killing it to restart it",
            process.name,
            url,
            watch.liveness_failures,
        )
        process.kill()
        watch.liveness_failures = 0
        return False

    def _restart(self, process: ManagedProcess, record: dict[str, Any], watch: _Watch) -> bool:
        now = self._clock()
        if watch.next_start == 0.0:
            delay = min(_BACKOFF[0] * 2**watch.restarts, _BACKOFF[1])
            watch.next_start = now + delay
            logger.warning(
                "%s (pid %s) is not running; starting it again in %.0fs (log %s)",
                process.name,
                record.get("pid"),
                delay,
                process.log_file,
            )
        if now < watch.next_start:
            return False
        if process.record() != record:
            return False  # stopped on purpose (or restarted by `up`) meanwhile
        pid = process.restart(record)
        watch.restarts += 1
        watch.next_start = 0.0
        watch.started = now
        watch.answered = False
        logger.info("%s started again (pid %d)", process.name, pid)
        return True

    def run_forever(self, interval: float = 1.0) -> None:
        logger.info("supervising the processes of cluster %s", self.layout.name)
        while True:
            try:
                self.check_once()
            except OSError as error:  # a full disk, a vanished directory: try again
                logger.warning("supervision round failed: %s", error)
            time.sleep(interval)
