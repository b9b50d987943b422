"""The runtime's life: attest, deliver, mark started, re-attest until told to stop.

* Initial attestation retries while the attestation or quoting service is
  unreachable (the node may still be starting), up to ``attest_timeout_seconds``;
  a refusal ends the runtime at once with exit code 3 and the reason in the log.
* One KBS client per attestation URL lives as long as the runtime: re-attestation
  reuses its connection while the service keeps it open (its keep-alive timeout), and
  opens a new one, transparently, once the service has closed it.
* Every round tries each configured attestation URL (the service's replicas), the
  one that answered last first, and moves on to the next when one cannot be reached
  or fails on its side (5xx): one replica down costs nothing.
* Re-attestation runs on SIGHUP and every ``reattest_interval_seconds``, counted from
  when the last successful round began, not ended: the service attested it in between,
  so renewal keeps its margin before expiry however long a round took (a runtime
  stopped mid-round renews as soon as it runs again). A refusal wipes the delivered
  secrets, withdraws the started marker and exits 3; when no replica answers, the
  round is retried after ``unavailable_retry_seconds``, doubling up to the interval, so
  the attestation is renewed soon after the service is back and well before its
  validity runs out (what happens at expiry is the operator's ``attestationExpiry``
  policy). The secrets stay meanwhile: an outage of the service is not a refusal.
* The last failure (which service, why, since when) is kept in
  ``.kubetee-attestation-problem`` beside the started marker, and the probe prints it.
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

from enclave_runtime.kbs_protocol import (
    KbsClientError,
    KbsProtocolError,
    KbsRefusedError,
    KbsUnavailableError,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.quoting import QuotingClient, QuotingError
from enclave_runtime.runtime import delivery
from enclave_runtime.runtime.attestation import AttestationOutcome, attest_once, kbs_client
from enclave_runtime.runtime.enclave import EnclaveIdentity
from enclave_runtime.runtime.errors import (
    AttestationRefusedError,
    AttestationUnavailableError,
    RuntimeFailure,
)
from enclave_runtime.runtime.marker import problem_file, started_marker
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
        # The replica that answered last is asked first.
        self._preferred = settings.attestation_urls[0]
        # Set while re-attestation fails for want of a service: the next round comes sooner.
        self._retry_in: float | None = None
        # One client (and kept connection) per service URL, made in the running loop.
        self._clients: dict[str, KbsClient] = {}
        # When the next round is due (``time.monotonic``): an interval after the
        # last successful round began.
        self._renew_at = 0.0

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
            for kbs in self._clients.values():
                await kbs.close()
            self._clients.clear()
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
                    self._retry_in = None
                except AttestationUnavailableError as exc:
                    interval = self.settings.reattest_interval_seconds
                    first = self.settings.unavailable_retry_seconds
                    self._retry_in = min(self._retry_in * 2 if self._retry_in else first, interval)
                    log.warning(
                        "re-attestation not possible, retrying in %.0fs (the secrets stay): %s",
                        self._retry_in,
                        exc,
                    )
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
                timeout=self._retry_in or max(0.0, self._renew_at - time.monotonic()),
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
            began = time.monotonic()
            try:
                outcome = await self._attest_at_any_replica()
                break
            except KbsRefusedError as refusal:
                if refusal.reason in _STALE_SESSION_REASONS and time.monotonic() < deadline:
                    log.info("session went stale (%s); starting a new round", refusal.reason)
                    continue
                raise AttestationRefusedError(str(refusal), refusal.reason) from None
            except KbsProtocolError as exc:
                raise AttestationRefusedError(str(exc), "ProtocolError") from None
            except (KbsClientError, QuotingError) as exc:
                self._note_problem(exc)
                if time.monotonic() + backoff > deadline:
                    raise AttestationUnavailableError(str(exc)) from None
                log.warning("attestation not possible yet (retrying in %.0fs): %s", backoff, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):  # wait_for may swallow a cancel
                        await self._stop.wait()
                if self._stop.is_set():
                    raise AttestationUnavailableError("stopped before attestation") from None
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
        self._renew_at = began + self.settings.reattest_interval_seconds
        delivery.deliver(self.settings.delivery_dir, self.settings.secrets, outcome.secrets)
        self.rounds += 1
        self._mark_started()
        problem_file(self.settings.marker_dir).unlink(missing_ok=True)
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

    async def _attest_at_any_replica(self) -> AttestationOutcome:
        """One round at the preferred replica, failing over to every other in turn."""
        urls = self.settings.attestation_urls
        ordered = [self._preferred, *(url for url in urls if url != self._preferred)]
        unavailable: list[str] = []
        for url in ordered:
            try:
                outcome = await attest_once(
                    self.settings, self.identity, self.quoting, self.context, url, self._kbs(url)
                )
            except KbsUnavailableError as exc:
                unavailable.append(f"{url}: {exc}")
                if len(unavailable) < len(ordered):
                    log.warning(
                        "attestation service %s unavailable (%s); trying %s",
                        url,
                        exc,
                        ordered[len(unavailable)],
                    )
                continue
            if url != self._preferred:
                log.info("attested at %s (failed over from %s)", url, self._preferred)
                self._preferred = url
            return outcome
        raise KbsUnavailableError(
            "no attestation service replica answered: " + "; ".join(unavailable)
        )

    def _kbs(self, url: str) -> KbsClient:
        if url not in self._clients:
            self._clients[url] = kbs_client(self.settings, self.context, url)
        return self._clients[url]

    def _note_problem(self, exc: Exception) -> None:
        """Keep why attestation cannot complete, for the probe (and whoever reads it)."""
        reason = "QuotingUnavailable" if isinstance(exc, QuotingError) else "AttestationUnavailable"
        path = problem_file(self.settings.marker_dir)
        try:
            since = json.loads(path.read_text()).get("since")
        except (OSError, ValueError, AttributeError):
            since = None
        document = {"reason": reason, "message": str(exc)[:500], "since": since or time.time()}
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(document) + "\n")
            temporary.replace(path)

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
