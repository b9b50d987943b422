"""This machine's pip index settings, as build arguments of the Dockerfile.

A build on this machine must fetch packages the way its pip does: the same index,
extra indexes, trusted hosts and CA certificates (a proxy that re-signs TLS is trusted
only through them). They are read when the image is built, from ``pip config list``
(which includes ``PIP_*`` environment variables as ``:env:``), never written into the
repository. The CA file's content goes into the build context (kubetee.image.build), as
the build cannot read the host's files.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubetee.image.errors import ImageError

# pip option -> Dockerfile build argument (its value as pip reads it from the environment)
FORWARDED = {
    "index-url": "PIP_INDEX_URL",
    "extra-index-url": "PIP_EXTRA_INDEX_URL",
    "trusted-host": "PIP_TRUSTED_HOST",
}
# Later sections win: pip reads an option's install-command section over [global], and
# the environment over every file.
_SECTION_RANK = {"global": 0, "install": 1, ":env:": 2}
# Docker forwards these to RUN steps when given as build arguments.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@dataclass(frozen=True)
class PipSettings:
    """The options a build needs, by pip option name (``cert`` is a path)."""

    options: Mapping[str, str]

    def build_args(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Build arguments for ``docker build``; only options that are set."""
        args = {FORWARDED[name]: value for name, value in self.options.items() if name in FORWARDED}
        env = os.environ if environ is None else environ
        args.update({name: env[name] for name in PROXY_VARIABLES if env.get(name)})
        return args

    def ca_bundle(self) -> str | None:
        """The PEM text of pip's ``cert`` setting, if it has one."""
        cert = self.options.get("cert")
        if not cert:
            return None
        try:
            return Path(cert).read_text()
        except OSError as error:
            raise ImageError(
                f"pip's cert setting names {cert}, which cannot be read ({error.strerror}):"
                " fix the setting (pip config list) or the file"
            ) from None


def parse_config_list(text: str) -> PipSettings:
    """The forwarded options in ``pip config list`` output (``section.key='value'``)."""
    chosen: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        name, equals, raw = line.partition("=")
        if not equals:
            continue
        section, _, key = name.strip().rpartition(".")
        if key not in {*FORWARDED, "cert"} or section not in _SECTION_RANK:
            continue
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        rank = _SECTION_RANK[section]
        if key not in chosen or rank >= chosen[key][0]:
            chosen[key] = (rank, " ".join(str(value).split()))
    return PipSettings({key: value for key, (_, value) in chosen.items() if value})


def host_pip_settings() -> PipSettings:
    """This machine's settings, from the pip of the Python running this command."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise ImageError(
            f"'pip config list' failed: {result.stderr.strip()[-300:]}; "
            "is pip installed for this Python?"
        )
    return parse_config_list(result.stdout)
