"""Helpers of the metrics tests: scraping a real endpoint, and certificates for TLS tests."""

from __future__ import annotations

import datetime
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from kubetee.metrics.serve import MetricsServer, start_metrics_server

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape_url(url: str) -> tuple[str, Samples]:
    """GET a /metrics endpoint; the text and its samples by sample name."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - test loopback URL
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for got, v in samples.get(name, []) if labels.items() <= got.items()]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def serve(registry: CollectorRegistry) -> Iterator[Callable[[], MetricsServer]]:
    """Start a real /metrics endpoint for ``registry`` on a free loopback port."""
    started: list[MetricsServer] = []

    def start() -> MetricsServer:
        server = start_metrics_server("test", 0, address="127.0.0.1", registry=registry)
        assert server is not None
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert.read_bytes())

    def der(self) -> bytes:
        return self.certificate().public_bytes(serialization.Encoding.DER)


class CertificateFactory:
    """CAs and leaves written as PEM files under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: dict[Path, ec.EllipticCurvePrivateKey] = {}

    def _write(self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
        pem = Pem(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._keys[pem.cert] = key
        return pem

    def ca(self, stem: str) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return self._write(stem, cert, key)

    def leaf(
        self,
        ca: Pem,
        stem: str,
        common_name: str,
        *,
        usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CLIENT_AUTH,
        dns_names: tuple[str, ...] = (),
        valid_days: tuple[int, int] = (-1, 1),
    ) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.certificate().subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=valid_days[0]))
            .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
            )
        return self._write(stem, builder.sign(self._keys[ca.cert], hashes.SHA256()), key)


@pytest.fixture
def certificates(tmp_path: Path) -> CertificateFactory:
    directory = tmp_path / "pki"
    directory.mkdir()
    return CertificateFactory(directory)
