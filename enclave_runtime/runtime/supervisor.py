"""The runtime's life: attest, deliver, mark started, re-attest until told to stop.

* Initial attestation retries while the attestation or quoting service is
  unreachable (the node may still be starting), up to ``attest_timeout_seconds``;
  a refusal ends the runtime at once with exit code 3 and the reason in the log.
* Re-attestation runs every ``reattest_interval_seconds`` and on SIGHUP. A refusal
  wipes the delivered secrets, withdraws the started marker and exits 3; an
  unreachable service is retried at the next interval (the attestation's validity
  at the service runs out meanwhile, and the operator acts on that).
* Re-attestation on request: SIGHUP, or a changed ``kubetee.io/reattest-requested``
  annotation in the downward API file (``KUBETEE_PODINFO_DIR``), see :mod:`.requests`.
* SIGTERM/SIGINT: wipe the secrets and exit 0.
* ``on_attested`` (the enclave launcher's hook) receives the secrets of each round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import time
from collections.abc import Callable, Mapping

from enclave_runtime.kbs_protocol import KbsClientError, KbsProtocolError, KbsRefusedError
from enclave_runtime.quoting import QuotingClient, QuotingError
from enclave_runtime.runtime import delivery
from enclave_runtime.runtime.attestation import attest_once
from enclave_runtime.runtime.enclave import EnclaveIdentity
from enclave_runtime.runtime.errors import (
    AttestationRefusedError,
    AttestationUnavailableError,
    RuntimeFailure,
)
from enclave_runtime.runtime.marker import started_marker
from enclave_runtime.runtime.requests import watch_requests
from enclave_runtime.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

# Refusals that only mean "this session is stale": a fresh round may well succeed.
_STALE_SESSION_REASONS = frozenset({"PolicyChanged", "AttestationExpired", "NonceExpired"})
_MAX_BACKOFF_SECONDS = 15.0


class Supervisor:
    def __init__(
        self,
        settings: RuntimeSettings,
        identity: EnclaveIdentity,
        quoting: QuotingClient,
        context: ssl.SSLContext,
        on_attested: Callable[[Mapping[str, bytes]], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_attested = on_attested
        self.identity = identity
        self.quoting = quoting
        self.context = context
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.rounds = 0

    def request_reattestation(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Run until stopped (exit code 0) or until attestation fails (its exit code)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request_reattestation)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        watcher = None
        if self.settings.podinfo_dir is not None:
            watcher = asyncio.create_task(
                watch_requests(self.settings.podinfo_dir, lambda _: self.request_reattestation())
            )
        try:
            return await self._run()
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _run(self) -> int:
        try:
            await self._attest(deadline=time.monotonic() + self.settings.attest_timeout_seconds)
            while not self._stop.is_set():
                await self._wait_for_next_round()
                if self._stop.is_set():
                    break
                try:
                    await self._attest(deadline=time.monotonic())
                except AttestationUnavailableError as exc:
                    log.warning("re-attestation postponed to the next interval: %s", exc)
        except RuntimeFailure as failure:
            self._withdraw()
            log.error("attestation failed, the workload gets no secrets: %s", failure)  # noqa: TRY400  # the reason is the message; no trace
            return failure.exit_code
        self._withdraw()
        log.info("stopped; delivered secrets removed")
        return 0

    async def _wait_for_next_round(self) -> None:
        # A request that came during the last round is not lost: the wait ends at once.
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._wake, self._stop)]
        try:
            await asyncio.wait(
                waiters,
                timeout=self.settings.reattest_interval_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._wake.clear()

    async def _attest(self, deadline: float) -> None:
        """One successful round (retrying while services are unreachable until ``deadline``)."""
        backoff = 1.0
        while True:
            try:
                outcome = await attest_once(
                    self.settings, self.identity, self.quoting, self.context
                )
                break
            except KbsRefusedError as refusal:
                if refusal.reason in _STALE_SESSION_REASONS and time.monotonic() < deadline:
                    log.info("session went stale (%s); starting a new round", refusal.reason)
                    continue
                raise AttestationRefusedError(str(refusal), refusal.reason) from None
            except KbsProtocolError as exc:
                raise AttestationRefusedError(str(exc), "ProtocolError") from None
            except (KbsClientError, QuotingError) as exc:
                if time.monotonic() + backoff > deadline:
                    raise AttestationUnavailableError(str(exc)) from None
                log.warning("attestation not possible yet (retrying in %.0fs): %s", backoff, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=backoff)
                if self._stop.is_set():
                    raise AttestationUnavailableError("stopped before attestation") from None
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
        delivery.deliver(self.settings.delivery_dir, self.settings.secrets, outcome.secrets)
        self.rounds += 1
        self._mark_started()
        if self._on_attested is not None:
            self._on_attested(outcome.secrets)
        log.info(
            "attested (round %d): enclave %s, isvSvn %d; delivered %d secret(s): %s",
            self.rounds,
            self.identity.mrenclave.hex()[:16],
            self.identity.isv_svn,
            len(outcome.secrets),
            ", ".join(sorted(outcome.secrets)) or "-",
        )

    def _mark_started(self) -> None:
        marker = started_marker(self.settings.marker_dir)
        marker.parent.mkdir(parents=True, exist_ok=True)
        document = {"rounds": self.rounds, "attestedAt": time.time(), **self.identity.to_json()}
        temporary = marker.with_suffix(".tmp")
        temporary.write_text(json.dumps(document) + "\n")
        temporary.replace(marker)

    def _withdraw(self) -> None:
        started_marker(self.settings.marker_dir).unlink(missing_ok=True)
        delivery.wipe(self.settings.delivery_dir, self.settings.secrets)
