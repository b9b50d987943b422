"""Background processes tracked by pid files, so ``down`` stops only what ``up`` started.

A pid file holds the pid and the process start time (from ``/proc``): a recycled pid
belonging to some other program is never signalled. It also holds how the process was
started (arguments, its ``KUBETEE_*``/``PYTHON*`` environment, an optional liveness URL),
so the cluster's supervisor (:mod:`.supervisor`) can start it again when it dies, and
``up`` can bring back what ``down`` stopped (``down`` keeps the record as ``<name>.down``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Children started by this Python process, kept so they are reaped (not left as zombies
# or reported as leaked) when stopped from the same process, as the test fixtures do.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# The environment a restart needs again; the rest comes from whoever restarts it.
_RECORDED_ENV_PREFIXES = ("KUBETEE_", "PYTHON")


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may contain spaces, so split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


@dataclass(frozen=True)
class ManagedProcess:
    """One named process of a cluster: its pid file and log file."""

    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def down_file(self) -> Path:
        """The record of a process ``down`` stopped, for the next ``up``."""
        return self.run_dir / f"{self.name}.down"

    def record(self) -> dict[str, Any] | None:
        """How the process was started (pid file), None without a readable one."""
        return _read_record(self.pid_file)

    def pid(self) -> int | None:
        """The pid if the recorded process is still the one we started and still alive."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        if _start_time(pid) != record.get("start_time"):
            return None
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/status").read_text().find("State:\tZ") == -1:
                return pid
        return None

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        *,
        liveness: str | None = None,
    ) -> int:
        """Start the process in its own session; ``liveness``: an http(s) URL the
        supervisor probes, restarting the process when it stops answering (a hung
        process is as good as a dead one)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- starting: {' '.join(args)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # not killed with the terminal that ran `up`
            )
        _CHILDREN[proc.pid] = proc
        recorded = {
            key: value
            for key, value in (env or {}).items()
            if key.startswith(_RECORDED_ENV_PREFIXES)
        }
        record = {
            "pid": proc.pid,
            "start_time": _start_time(proc.pid),
            "args": list(args),
            "env": recorded,
            "cwd": str(cwd) if cwd is not None else None,
            "liveness": liveness,
        }
        temporary = self.pid_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.chmod(0o600)
        temporary.replace(self.pid_file)
        self.down_file.unlink(missing_ok=True)
        return proc.pid

    def restart(self, record: Mapping[str, Any]) -> int:
        """Start the process again as ``record`` says it was started."""
        env = {**os.environ, **(record.get("env") or {})}
        cwd = record.get("cwd")
        return self.start(
            record["args"],
            env=env,
            cwd=Path(cwd) if cwd else None,
            liveness=record.get("liveness"),
        )

    def kill(self) -> None:
        """SIGKILL the process group (a hung process); its record stays, to restart."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _reap(pid)

    def stop(self, timeout: float = 15.0, *, keep_record: bool = False) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if a process was stopped.
        ``keep_record``: keep how it was started as ``<name>.down`` for the next ``up``."""
        pid = self.pid()
        if keep_record and pid is not None:
            self.pid_file.replace(self.down_file)
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _start_time(pid) is None or _is_zombie(pid):
                _reap(pid)
                return True
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        return True

    def last_log_lines(self, count: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-count:])
        except OSError:
            return "(no log)"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("args") else None


def stopped_by_down(run_dir: Path, log_dir: Path) -> list[tuple[ManagedProcess, dict[str, Any]]]:
    """Processes ``down`` stopped, with how each was started."""
    found = []
    for path in sorted(run_dir.glob("*.down")):
        record = _read_record(path)
        if record is not None:
            found.append((ManagedProcess(path.stem, run_dir, log_dir), record))
    return found


def reap_children() -> None:
    """Collect exited children so a dead one is seen dead (not a zombie) and freed."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def _is_zombie(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
