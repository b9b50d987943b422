"""Long commands run with their output in a log file and a line of progress meanwhile."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TextIO

from kubetee.image.errors import ImageError

PROGRESS_EVERY_SECONDS = 15.0


def elapsed_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_step(
    label: str,
    args: Sequence[str],
    log: Path,
    out: TextIO,
    *,
    stdin: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
    hint: str = "",
) -> float:
    """Run ``args``; its output goes to ``log``. Returns the seconds it took.

    A failure raises :class:`ImageError` with the log's last lines and ``hint``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    out.write(f"  {label} ...\n")
    out.flush()
    start = time.monotonic()
    done = threading.Event()

    def report() -> None:
        while not done.wait(PROGRESS_EVERY_SECONDS):
            out.write(f"  {label}: still running, {elapsed_text(time.monotonic() - start)}\n")
            out.flush()

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        with log.open("w") as sink:
            sink.write(f"$ {' '.join(args)}\n")
            sink.flush()
            result = subprocess.run(
                list(args),
                stdin=stdin,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                check=False,
            )
    except FileNotFoundError as error:
        raise ImageError(
            f"{label}: {args[0]} is not installed ({error.strerror}). {hint}"
        ) from None
    finally:
        done.set()
        reporter.join()
    seconds = time.monotonic() - start
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ImageError(
            f"{label} failed (exit {result.returncode}); last lines of {log}:\n{tail}\n{hint}"
        )
    out.write(f"  {label}: done in {elapsed_text(seconds)}\n")
    out.flush()
    return seconds
