"""The operator's API client reads the environment's proxy once, not per request."""

from __future__ import annotations

import pytest
from kubernetes.aio.client import Configuration

from kubetee.k8s.client import read_environment_once


def _configuration(host: str, proxy: str | None = None) -> Configuration:
    configuration = Configuration(host=host)
    configuration.proxy = proxy
    return configuration


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_session_does_not_read_the_environment_per_request() -> None:
    configuration = _configuration("https://10.0.0.1:6443")
    read_environment_once(configuration)
    assert configuration.client_session_kwargs == {"trust_env": False}
    assert configuration.proxy is None


def test_proxy_of_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    configuration = _configuration("https://10.0.0.1:6443")
    read_environment_once(configuration)
    assert configuration.proxy == "http://proxy.example:3128"


def test_no_proxy_of_the_environment_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "10.0.0.1")
    configuration = _configuration("https://10.0.0.1:6443")
    read_environment_once(configuration)
    assert configuration.proxy is None


def test_kubeconfig_proxy_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    configuration = _configuration("https://10.0.0.1:6443", proxy="http://kube-proxy:8080")
    read_environment_once(configuration)
    assert configuration.proxy == "http://kube-proxy:8080"
