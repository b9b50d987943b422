"""Running a loaded enclave: attest first, then start the workload with its secrets.

The workload is a child process of the runtime (the enclave's process tree). It starts
only after the attestation service accepted this enclave's quote; its secrets are in its
environment (``env`` deliveries) and in files under ``$KUBETEE_SECRETS_DIR`` (``file``
deliveries), a directory inside the enclave's private directory (mode 0700, in memory,
mounted into no other container). Re-attestation follows the runtime's supervisor
(interval, SIGHUP, the re-attest annotation); a refusal stops the workload and wipes the
secrets. SIGTERM stops the workload, then the runtime. The runtime exits with the
workload's exit code when the workload ends.

Outside a pod (``kubetee enclave run`` on a workstation, no ``KUBETEE_ENCLAVE_CONFIG``)
there is no attestation: the workload runs at once and gets no secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Mapping

from enclave_runtime.enclave.loader import LoadedEnclave
from enclave_runtime.quoting import QuotingClient
from enclave_runtime.runtime.errors import RuntimeConfigError
from enclave_runtime.runtime.settings import RuntimeSettings
from enclave_runtime.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0
SECRETS_DIR_ENV = "KUBETEE_SECRETS_DIR"
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def workload_argv(loaded: LoadedEnclave) -> list[str]:
    """The workload's command: a ``.py`` entrypoint runs on the runtime's interpreter."""
    program = str(loaded.root / loaded.manifest.entrypoint)
    if loaded.manifest.entrypoint.endswith(".py"):
        # -E -s: no PYTHON* variables nor user site-packages steer what runs.
        return [sys.executable, "-E", "-s", "-u", "-B", program, *loaded.manifest.args]
    return [program, *loaded.manifest.args]


def workload_env(
    loaded: LoadedEnclave,
    secrets_dir: str | None,
    env_secrets: Mapping[str, str],
) -> dict[str, str]:
    """The workload's environment: a few host variables, the manifest's, the secrets."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env["HOME"] = str(loaded.root)
    env.update(loaded.manifest.env)
    if secrets_dir is not None:
        env[SECRETS_DIR_ENV] = secrets_dir
    env.update(env_secrets)
    return env


class Launcher:
    """Attest (if an attestation service is configured), then run the workload."""

    def __init__(
        self,
        loaded: LoadedEnclave,
        settings: RuntimeSettings | None,
        quoting: QuotingClient | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.loaded = loaded
        self.settings = settings
        self.quoting = quoting
        self.context = context
        self.workload: asyncio.subprocess.Process | None = None
        self._secrets: dict[str, bytes] = {}
        self._attested = asyncio.Event()

    def _on_attested(self, secrets: Mapping[str, bytes]) -> None:
        self._secrets = dict(secrets)
        self._attested.set()

    def _env_secrets(self) -> dict[str, str]:
        if self.settings is None:
            return {}
        env: dict[str, str] = {}
        for spec in self.settings.secrets:
            if spec.env is None or spec.name not in self._secrets:
                continue
            try:
                env[spec.env] = self._secrets[spec.name].decode()
            except UnicodeDecodeError:
                # The message names the secret only: the decoder's would quote its bytes.
                raise RuntimeConfigError(
                    f"secret {spec.name!r} is delivered as env {spec.env} but is not UTF-8 "
                    "text; deliver it as a file"
                ) from None
        return env

    async def run(self) -> int:
        if self.settings is None:
            log.warning("no attestation service configured: the workload runs without secrets")
            return await self._run_unattested()
        if self.quoting is None or self.context is None:
            raise ValueError("attesting needs a quoting client and a TLS context")
        supervisor = Supervisor(
            self.settings,
            self.loaded.identity,
            self.quoting,
            self.context,
            on_attested=self._on_attested,
        )
        supervising = asyncio.create_task(supervisor.run())
        attested = asyncio.create_task(self._attested.wait())
        await asyncio.wait({supervising, attested}, return_when=asyncio.FIRST_COMPLETED)
        if supervising.done():
            attested.cancel()
            return supervising.result()
        try:
            workload = await self._start(str(self.settings.delivery_dir))
        except (OSError, RuntimeConfigError) as exc:
            supervisor.request_stop()
            await supervising
            log.error("cannot start the workload: %s", exc)  # noqa: TRY400
            return 2
        waiting = asyncio.create_task(workload.wait())
        await asyncio.wait({supervising, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            log.info("the workload exited with code %s; stopping", workload.returncode)
            supervisor.request_stop()
            await supervising
            return workload.returncode or 0
        # Stopped or refused: the workload must not keep running with its secrets.
        await self._stop(workload)
        waiting.cancel()
        return supervising.result()

    async def _run_unattested(self) -> int:
        workload = await self._start(None)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, workload.send_signal, signal.SIGTERM)
        return await workload.wait()

    async def _start(self, secrets_dir: str | None) -> asyncio.subprocess.Process:
        env = workload_env(self.loaded, secrets_dir, self._env_secrets())
        argv = workload_argv(self.loaded)
        log.info(
            "starting the workload %s (%d argument(s)) in the enclave",
            self.loaded.manifest.entrypoint,
            len(self.loaded.manifest.args),
        )
        self.workload = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=self.loaded.root, stdin=asyncio.subprocess.DEVNULL
        )
        return self.workload

    async def _stop(self, workload: asyncio.subprocess.Process) -> None:
        if workload.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            workload.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(workload.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                workload.kill()
            await workload.wait()
