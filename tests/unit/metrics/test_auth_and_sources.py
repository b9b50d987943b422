"""Front-proxy authentication in detail, the front-proxy settings, and runtime samples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from multidict import CIMultiDict

from kubetee.metrics import names
from kubetee.metrics.apiserver import manifests
from kubetee.metrics.apiserver.auth import (
    AuthenticationConfigError,
    FrontProxyAuthenticator,
    RequestHeaderConfig,
)
from kubetee.metrics.apiserver.kube import pod_ref
from kubetee.metrics.apiserver.scrape import FileSDTargets, PodIPTargets, PodRef, parse_sample
from kubetee.metrics.apiserver.wire import quantity
from kubetee.metrics.errors import UnauthenticatedError

from .conftest import CertificateFactory

MIB = 1024 * 1024


def _headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def test_identity_comes_from_the_headers_of_a_proxy_certificate(
    certificates: CertificateFactory,
) -> None:
    ca = certificates.ca("front-proxy-ca")
    proxy = certificates.leaf(ca, "proxy", "front-proxy-client")
    authenticator = FrontProxyAuthenticator(
        RequestHeaderConfig(ca.cert.read_text(), allowed_names=("front-proxy-client",))
    )

    user = authenticator.authenticate(
        proxy.der(),
        _headers(
            ("X-Remote-User", "jane"),
            ("X-Remote-Group", "devs"),
            ("X-Remote-Group", "ops"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-Scopes", "b"),
            ("X-Remote-Extra-Acme.com%2Fteam", "x"),
        ),
    )

    assert user.name == "jane"
    assert user.groups == ("devs", "ops", "system:authenticated")
    assert dict(user.extra) == {"scopes": ("a", "b"), "acme.com/team": ("x",)}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "expired or not yet valid"),
        ("server-only", "not for client authentication"),
        ("other-ca", "not signed by the request-header client CA"),
        ("wrong-name", "not an allowed front-proxy name"),
    ],
)
def test_certificates_that_are_not_the_front_proxys_are_refused(
    certificates: CertificateFactory, case: str, message: str
) -> None:
    ca = certificates.ca("front-proxy-ca")
    other = certificates.ca("other-ca")
    leaf = {
        "expired": lambda: certificates.leaf(ca, "c", "front-proxy-client", valid_days=(-3, -1)),
        "server-only": lambda: certificates.leaf(
            ca, "c", "front-proxy-client", usage=ExtendedKeyUsageOID.SERVER_AUTH
        ),
        "other-ca": lambda: certificates.leaf(other, "c", "front-proxy-client"),
        "wrong-name": lambda: certificates.leaf(ca, "c", "mallory"),
    }[case]()
    authenticator = FrontProxyAuthenticator(
        RequestHeaderConfig(ca.cert.read_text(), allowed_names=("front-proxy-client",))
    )

    with pytest.raises(UnauthenticatedError, match=message):
        authenticator.authenticate(leaf.der(), _headers(("X-Remote-User", "admin")))


def test_front_proxy_settings_are_read_as_the_apiserver_publishes_them(
    certificates: CertificateFactory,
) -> None:
    ca = certificates.ca("front-proxy-ca")
    data = {
        "requestheader-client-ca-file": ca.cert.read_text(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        "client-ca-file": "not used here",
    }

    config = RequestHeaderConfig.from_configmap(data)

    assert config.allowed_names == ("front-proxy-client",)
    assert config.username_headers == ("X-Remote-User",)
    with pytest.raises(AuthenticationConfigError, match="requestheader-client-ca-file"):
        RequestHeaderConfig.from_configmap({"client-ca-file": ca.cert.read_text()})
    with pytest.raises(AuthenticationConfigError, match="not a JSON list"):
        RequestHeaderConfig.from_configmap({**data, "requestheader-allowed-names": "[oops"})


def test_only_the_pods_own_samples_count() -> None:
    pod = PodRef("shop", "payments-1", "u", "10.0.0.9", 64 * MIB)
    text = (
        f"# TYPE {names.ENCLAVE_EPC_USED_BYTES} gauge\n"
        f'{names.ENCLAVE_EPC_USED_BYTES}{{namespace="shop",pod="payments-9"}} 1e6\n'
        f'{names.ENCLAVE_EPC_USED_BYTES}{{namespace="shop",pod="payments-1"}} 2097152\n'
        f'{names.ENCLAVE_EPC_SIZE_BYTES}{{namespace="shop",pod="payments-1"}} 3.3554432e7\n'
    )
    now = datetime.now(UTC)

    sample = parse_sample(text, pod, now)
    stranger = parse_sample(text, PodRef("shop", "other", "u2", None, MIB), now)

    assert sample is not None
    assert (sample.used_bytes, sample.size_bytes) == (2 * MIB, 32 * MIB)
    assert stranger is None  # a recycled IP does not lend another pod's figures


def test_runtime_endpoints_by_pod_ip_or_by_file_sd(tmp_path: Path) -> None:
    pod = PodRef("shop", "p", "u", "fd00::7", MIB)
    (tmp_path / "a.json").write_text(
        json.dumps([{"targets": ["127.0.0.1:4001"], "labels": {"namespace": "shop", "pod": "p"}}])
    )
    (tmp_path / "broken.json").write_text("{not json")

    assert PodIPTargets(9094).address(pod) == "[fd00::7]:9094"
    assert PodIPTargets(9094).address(PodRef("shop", "q", "u", None, MIB)) is None
    assert FileSDTargets([str(tmp_path / "*.json")]).address(pod) == "127.0.0.1:4001"


def test_pod_epc_request_is_read_from_every_container_in_mebibytes() -> None:
    pod = pod_ref(
        {
            "metadata": {
                "namespace": "shop",
                "name": "p",
                "uid": "u",
                "labels": {"kubetee.io/enclave-container": "payments"},
            },
            "spec": {
                "initContainers": [{"resources": {"requests": {"kubetee.io/epc": "64"}}}],
                "containers": [{"resources": {"requests": {"cpu": "1"}}}],
            },
            "status": {"podIP": "10.0.0.3"},
        }
    )

    assert (pod.epc_request_bytes, pod.ip, pod.enclave_container) == (
        64 * MIB,
        "10.0.0.3",
        "payments",
    )


def test_quantities_are_exact_to_a_thousandth() -> None:
    from decimal import Decimal  # noqa: PLC0415

    assert [quantity(Decimal(v)) for v in ("75", "43.75", "0.0004", "100.0")] == [
        "75",
        "43750m",
        "0",
        "100",
    ]


def test_local_registration_reaches_the_loopback_server_through_an_external_name() -> None:
    service = manifests.local_service(45000)
    api_service = manifests.api_service(b"CA PEM", port=45000)

    assert api_service["metadata"]["name"] == "v1beta2.custom.metrics.k8s.io"
    # The aggregator resolves an ExternalName Service to <externalName>:<APIService port>.
    assert api_service["spec"]["service"] == {
        "namespace": "kube-system",
        "name": manifests.SERVICE,
        "port": 45000,
    }
    assert service["spec"]["type"] == "ExternalName"
    assert service["spec"]["externalName"] == "localhost"
    assert service["spec"]["ports"] == [{"name": "https", "port": 45000, "protocol": "TCP"}]
