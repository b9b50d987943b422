"""``kubetee image``: this machine's pip settings as build arguments, the Debian mirror of
the base image, the cache key, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetee.image.base import DEFAULT_MIRROR, BaseImage, debian_mirror, ensure_base
from kubetee.image.errors import ImageError
from kubetee.image.pip_settings import PipSettings, parse_config_list

CONFIG_LIST = """\
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.index-url='https://pypi.example/simple'
install.index-url='https://mirror.example/simple'
global.trusted-host='mirror.example'
global.extra-index-url='https://a.example/simple\\nhttps://b.example/simple'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
"""


def test_pip_settings_follow_pips_precedence_and_forward_only_what_a_build_needs() -> None:
    settings = parse_config_list(CONFIG_LIST)
    args = settings.build_args(environ={"HTTPS_PROXY": "http://127.0.0.1:3128", "HOME": "/x"})
    assert args == {
        "PIP_INDEX_URL": "https://mirror.example/simple",  # install over global
        "PIP_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
        "PIP_TRUSTED_HOST": "mirror.example",
        "HTTPS_PROXY": "http://127.0.0.1:3128",
    }
    # find-links names a host directory a build cannot see: not forwarded.
    assert "find-links" not in settings.options
    environment_wins = parse_config_list(CONFIG_LIST + ":env:.index-url='https://env.example'\n")
    assert environment_wins.build_args(environ={})["PIP_INDEX_URL"] == "https://env.example"


def test_the_ca_bundle_is_read_from_pips_cert_setting(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert PipSettings({"cert": str(bundle)}).ca_bundle() == bundle.read_text()
    assert PipSettings({}).ca_bundle() is None
    with pytest.raises(ImageError, match=r"cert setting names .*missing.pem.*pip config list"):
        PipSettings({"cert": str(tmp_path / "missing.pem")}).ca_bundle()


def test_no_pip_settings_means_no_build_arguments() -> None:
    assert parse_config_list("").build_args(environ={}) == {}


def test_the_mirror_is_the_one_apt_uses_for_the_suite(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "other.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.example/node_20.x\nSuites: nodistro\n"
        "Components: main\n"
    )
    (sources / "debian.sources").write_text(
        "Types: deb\n# a comment: with a colon\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert debian_mirror((tmp_path / "sources.list", sources)) == "http://mirror.example/debian"

    one_line = tmp_path / "sources.list"
    one_line.write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert debian_mirror((one_line,)) == "http://old.example/debian"
    assert debian_mirror((tmp_path / "none",)) == DEFAULT_MIRROR


def test_the_base_is_cached_by_recipe_version(tmp_path: Path) -> None:
    base = BaseImage.for_cache(tmp_path)
    assert base.tag.startswith("kubetee/python-base:bookworm-")
    assert base.tarball.parent == tmp_path / "images"
    assert BaseImage.for_cache(tmp_path / "elsewhere").tag == base.tag


def test_without_root_or_debootstrap_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubetee.image.base.image_exists", lambda _tag: False)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(ImageError, match=r"as root.*--base python:3.11-slim"):
        ensure_base(tmp_path, _Sink())
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(ImageError, match=r"apt-get install debootstrap"):
        ensure_base(tmp_path, _Sink())


class _Sink:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass
