"""Collateral over the PCCS v4 API: the simulated PCS serves it, the service's client
fetches, checks and caches it until nextUpdate, and quotes of every family verify."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.quote import ReportBody
from kubetee.attestation.roots import intel_sgx_root_ca_der
from kubetee.attestation.verifier import QuoteVerifier
from kubetee.attestation_service.errors import CollateralUnavailableError
from kubetee.attestation_service.evidence import quoted_platform
from kubetee.attestation_service.pccs import CollateralMetrics, PccsCollateral
from kubetee.metrics import names
from kubetee.pcs import api
from kubetee.pcs.stores import StaticStore

from .conftest import Served, serve

REAL_QUOTE_TIME = datetime.fromtimestamp(1751000000, UTC)


def _client(url: str) -> tuple[PccsCollateral, CollectorRegistry]:
    registry = CollectorRegistry()
    return PccsCollateral(url, metrics=CollateralMetrics(registry)), registry


def _quote(
    platform_report: ReportBody | None, authority: SimulatedAuthority, **family: object
) -> bytes:
    platform = authority.issue_platform(**family)  # type: ignore[arg-type]
    return platform.quote(platform_report or ReportBody(report_data=bytes(64)))


async def test_the_pcs_speaks_the_pccs_v4_wire_format(simulated_pcs: Served) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{simulated_pcs.url}{api.TCB_PATH}?fmspc=00606a000000") as tcb:
            body = await tcb.read()
            chain = urllib.parse.unquote(tcb.headers[api.TCB_INFO_ISSUER_CHAIN])
        async with http.get(f"{simulated_pcs.url}{api.PCK_CRL_PATH}?ca=platform") as pem:
            pem_body = await pem.read()
            crl_chain = urllib.parse.unquote(pem.headers[api.PCK_CRL_ISSUER_CHAIN])
        async with http.get(
            f"{simulated_pcs.url}{api.PCK_CRL_PATH}?ca=processor",
            headers={"Accept": api.CRL_MEDIA_TYPE},
        ) as der:
            der_body = await der.read()
        async with http.get(f"{simulated_pcs.url}{api.QE_IDENTITY_PATH}") as qe:
            qe_document = json.loads(await qe.read())
            assert api.ENCLAVE_IDENTITY_ISSUER_CHAIN in qe.headers
        async with http.get(f"{simulated_pcs.url}{api.ROOT_CA_CRL_PATH}") as root:
            root_crl = x509.load_der_x509_crl(bytes.fromhex(await root.text()))
        async with http.get(f"{simulated_pcs.url}{api.TCB_PATH}?fmspc=zz") as bad:
            assert bad.status == 400
        async with http.get(f"{simulated_pcs.url}{api.TCB_PATH}?fmspc=112233445566") as unknown:
            assert unknown.status == 404
        async with http.get(f"{simulated_pcs.url}{api.PCK_CRL_PATH}?ca=other") as bad_ca:
            assert bad_ca.status == 400

    document = json.loads(body)
    assert set(document) == {"tcbInfo", "signature"}
    assert document["tcbInfo"]["fmspc"] == "00606A000000"
    assert len(bytes.fromhex(document["signature"])) == 64
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert "Platform CA" in x509.load_pem_x509_crl(pem_body).issuer.rfc4514_string()
    assert (
        "Platform CA"
        in x509.load_pem_x509_certificates(crl_chain.encode())[0].subject.rfc4514_string()
    )
    assert "Processor CA" in x509.load_der_x509_crl(der_body).issuer.rfc4514_string()
    assert set(qe_document) == {"enclaveIdentity", "signature"}
    assert root_crl.next_update_utc is not None


@pytest.mark.parametrize(
    ("fmspc", "ca"), [("00906ED50000", "processor"), ("00606A000000", "platform")]
)
async def test_quotes_of_each_family_and_ca_verify_with_fetched_collateral(
    simulated_pcs: Served, authority: SimulatedAuthority, fmspc: str, ca: str
) -> None:
    quote = _quote(None, authority, fmspc=bytes.fromhex(fmspc), ca=ca)
    platform = quoted_platform(quote, authority.root_ca_der)
    assert (platform.fmspc.hex().upper(), platform.ca) == (fmspc, ca)
    source, _ = _client(simulated_pcs.url)
    now = datetime.now(UTC)
    collateral = await source.collateral_for(platform.fmspc, platform.ca, now)
    verified = QuoteVerifier(authority.root_ca_der).verify(quote, collateral, now=now)
    await source.close()
    assert verified.fmspc.hex().upper() == fmspc
    assert verified.tcb_status == "UpToDate"


async def test_collateral_is_cached_until_it_is_due_then_renewed(
    simulated_pcs: Served, authority: SimulatedAuthority
) -> None:
    source, registry = _client(simulated_pcs.url + "/sgx/certification/v4/")
    fmspc = authority.settings.fmspc
    now = datetime.now(UTC)
    validity = timedelta(seconds=authority.settings.collateral_validity_seconds)
    first = await source.collateral_for(fmspc, "processor", now)
    again = await source.collateral_for(fmspc, "processor", now + validity * 0.7)
    assert again is not None
    assert simulated_pcs.requests[api.TCB_PATH] == 1  # cached: not yet due
    assert again.tcb_info == first.tcb_info
    # 80% of the way to nextUpdate: renewed before it expires.
    await source.collateral_for(fmspc, "processor", now + validity * 0.85)
    assert simulated_pcs.requests[api.TCB_PATH] == 2
    assert simulated_pcs.requests[api.PCK_CRL_PATH] == 2
    # Another CA type is another PCK CRL, fetched on its own.
    await source.collateral_for(fmspc, "platform", now + validity * 0.85)
    assert simulated_pcs.requests[api.PCK_CRL_PATH] == 3
    assert simulated_pcs.requests[api.TCB_PATH] == 2
    remaining = registry.get_sample_value(
        names.COLLATERAL_TIME_TO_NEXT_UPDATE_SECONDS,
        {"kind": "tcb_info", "id": fmspc.hex().upper()},
    )
    assert remaining is not None
    assert 0 < remaining <= validity.total_seconds() + 5
    fetched = registry.get_sample_value(
        names.COLLATERAL_FETCHES_TOTAL, {"kind": "pck_crl", "result": "ok"}
    )
    assert fetched == 3
    await source.close()


async def test_a_failed_renewal_keeps_valid_collateral_and_expired_collateral_is_refused(
    authority: SimulatedAuthority,
) -> None:
    from kubetee.pcs.stores import SimulatedStore  # noqa: PLC0415

    runner, served = await serve(SimulatedStore(authority))
    source, registry = _client(served.url)
    fmspc = authority.settings.fmspc
    now = datetime.now(UTC)
    validity = timedelta(seconds=authority.settings.collateral_validity_seconds)
    await source.collateral_for(fmspc, "processor", now)
    await runner.cleanup()  # the PCCS goes away

    kept = await source.collateral_for(fmspc, "processor", now + validity * 0.9)
    assert kept.tcb_info
    errors = registry.get_sample_value(
        names.COLLATERAL_FETCHES_TOTAL, {"kind": "tcb_info", "result": "error"}
    )
    assert errors == 1
    with pytest.raises(CollateralUnavailableError) as refused:
        await source.collateral_for(fmspc, "processor", now + validity * 1.1)
    assert refused.value.reason == "CollateralUnavailable"
    await source.close()


async def test_the_real_intel_sample_quote_verifies_through_the_static_server(
    data_dir: Path,
) -> None:
    runner, served = await serve(StaticStore(data_dir))
    quote = (data_dir / "sgx_quote.bin").read_bytes()
    platform = quoted_platform(quote, intel_sgx_root_ca_der())
    assert (platform.fmspc.hex().upper(), platform.ca) == ("00A067110000", "processor")
    source, _ = _client(served.url)
    try:
        collateral = await source.collateral_for(platform.fmspc, platform.ca, REAL_QUOTE_TIME)
        verified = QuoteVerifier(intel_sgx_root_ca_der()).verify(
            quote, collateral, now=REAL_QUOTE_TIME
        )
    finally:
        await source.close()
        await runner.cleanup()
    # Exactly what tests/data/dcap/README.md says of this quote at this time.
    assert verified.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert verified.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert verified.mrenclave.hex() == (
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    )
    assert verified.report_data.rstrip(b"\0") == b"Hello, world!"


def test_the_static_store_keeps_the_newest_collateral_per_family(data_dir: Path) -> None:
    store = StaticStore(data_dir)
    assert store.fmspcs == [bytes.fromhex("00A067110000")]
    text, _, _ = store.tcb_info(bytes.fromhex("00A067110000"))
    assert json.loads(text)["issueDate"] == "2025-06-19T10:56:11Z"


def test_signed_bodies_split_back_into_the_exact_signed_text() -> None:
    text = '{"id":"SGX","nextUpdate":"2030-01-01T00:00:00Z","fmspc":"00906ED50000"}'
    body = api.signed_body(api.TCB_INFO_KEY, text, bytes(range(64)))
    assert api.split_signed_body(body, api.TCB_INFO_KEY) == (text, bytes(range(64)))
    spaced = (
        b'{ "signature" : "'
        + bytes(range(64)).hex().encode()
        + b'", "tcbInfo" : '
        + text.encode()
        + b" }"
    )
    assert api.split_signed_body(spaced, api.TCB_INFO_KEY) == (text, bytes(range(64)))
    for bad in (
        b"[]",
        b'{"tcbInfo": {}}',
        b'{"tcbInfo": {}, "signature": "zz"}',
        b"\xff",
        b"[" * 100000,
    ):
        with pytest.raises(api.PccsFormatError):
            api.split_signed_body(bad, api.TCB_INFO_KEY)


async def test_the_background_refresh_renews_what_is_due_before_it_expires(
    simulated_pcs: Served, authority: SimulatedAuthority
) -> None:
    source, registry = _client(simulated_pcs.url)
    fmspc = authority.settings.fmspc
    now = datetime.now(UTC)
    validity = timedelta(seconds=authority.settings.collateral_validity_seconds)
    await source.collateral_for(fmspc, "platform", now)
    await source.refresh_due(now + validity * 0.5)
    assert simulated_pcs.requests[api.TCB_PATH] == 1  # nothing due yet
    await source.refresh_due(now + validity * 0.9)
    assert simulated_pcs.requests == {
        api.TCB_PATH: 2,
        api.QE_IDENTITY_PATH: 2,
        api.PCK_CRL_PATH: 2,
        api.ROOT_CA_CRL_PATH: 2,
    }
    for kind, ident in (("pck_crl", "platform"), ("qe_identity", ""), ("root_ca_crl", "")):
        assert registry.get_sample_value(
            names.COLLATERAL_NEXT_UPDATE_TIMESTAMP_SECONDS, {"kind": kind, "id": ident}
        )
    await source.close()


async def test_a_quote_whose_chain_is_not_the_roots_fetches_no_collateral(
    simulated_pcs: Served, authority: SimulatedAuthority
) -> None:
    from kubetee.attestation.errors import CertificateChainInvalidError  # noqa: PLC0415
    from kubetee.attestation_service.evidence import DcapEvidenceVerifier  # noqa: PLC0415

    forger = SimulatedAuthority.generate(fmspc=bytes.fromhex("0000DEADBEEF"))
    forged = forger.issue_platform().quote(ReportBody(report_data=bytes(64)))
    source, _ = _client(simulated_pcs.url)
    verifier = DcapEvidenceVerifier(authority.root_ca_der, source)
    with pytest.raises(CertificateChainInvalidError) as refused:
        await verifier.verify(forged, datetime.now(UTC))
    assert refused.value.reason == "UntrustedCertificate"
    assert simulated_pcs.requests == {}
    await source.close()
