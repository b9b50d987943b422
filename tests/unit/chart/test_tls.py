"""Certificates the chart generates: for the Services' DNS names, signed by the CA that
clients are given; or a user's Secret used everywhere instead."""

from __future__ import annotations

import base64
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.unit.chart.conftest import NAMESPACE, Manifest, Render, find, one, pod_specs


def _certificate(secret: Manifest, key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def _dns_names(certificate: x509.Certificate) -> set[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(extension.value.get_values_for_type(x509.DNSName))


def _signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    public_key = ca.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    hash_algorithm = certificate.signature_hash_algorithm
    assert hash_algorithm is not None
    try:
        public_key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            padding.PKCS1v15(),
            hash_algorithm,
        )
    except ValueError:
        return False
    return certificate.issuer == ca.subject


def _service_names(service: str) -> set[str]:
    return {
        service,
        f"{service}.{NAMESPACE}",
        f"{service}.{NAMESPACE}.svc",
        f"{service}.{NAMESPACE}.svc.cluster.local",
    }


def test_attestation_certificate_names_the_service_and_chains_to_the_ca(render: Render) -> None:
    manifests = render(set_values=("attestationService.tls.extraDNSNames={kbs.example.com}",))
    secret = one(manifests, "Secret", "kt-kubetee-attestation-tls")
    assert secret["type"] == "kubernetes.io/tls"
    certificate, ca = _certificate(secret, "tls.crt"), _certificate(secret, "ca.crt")
    assert _dns_names(certificate) == _service_names("kt-kubetee-attestation") | {"kbs.example.com"}
    assert _signed_by(certificate, ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert abs(lifetime - timedelta(days=3650)) < timedelta(days=1)


def test_each_render_makes_its_own_ca(render: Render) -> None:
    # Nothing is baked into the chart: an install without an existing Secret gets a new CA.
    first = one(render(), "Secret", "kt-kubetee-attestation-tls")
    second = one(render(), "Secret", "kt-kubetee-attestation-tls")
    assert first["data"]["ca.crt"] != second["data"]["ca.crt"]


def test_metrics_apiservice_trusts_the_servers_ca(defaults: list[Manifest]) -> None:
    secret = one(defaults, "Secret", "kt-kubetee-metrics-apiserver-tls")
    service = one(defaults, "APIService", "v1beta2.custom.metrics.k8s.io")
    assert service["spec"]["caBundle"] == secret["data"]["ca.crt"]
    assert service["spec"]["service"] == {
        "name": "kt-kubetee-metrics-apiserver",
        "namespace": NAMESPACE,
        "port": 443,
    }
    certificate = _certificate(secret, "tls.crt")
    assert _dns_names(certificate) == _service_names("kt-kubetee-metrics-apiserver")
    assert _signed_by(certificate, _certificate(secret, "ca.crt"))


def test_an_existing_secret_replaces_the_generated_one_everywhere(render: Render) -> None:
    manifests = render(set_values=("attestationService.tls.existingSecret=from-cert-manager",))
    assert not find(manifests, "Secret", "kt-kubetee-attestation-tls")
    users = {
        key: {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for key, spec in pod_specs(manifests).items()
    }
    for key in (
        "Deployment/kt-kubetee-attestation",
        "Deployment/kt-kubetee-operator",
        "Job/kt-kubetee-test",
    ):
        assert "from-cert-manager" in users[key], key


def test_session_key_is_random_and_long(render: Render) -> None:
    keys = [
        base64.b64decode(
            one(render(), "Secret", "kt-kubetee-attestation-session")["data"]["session-key"]
        )
        for _ in range(2)
    ]
    assert keys[0] != keys[1]
    assert all(len(key) >= 32 for key in keys)  # what the service demands
