"""Collateral from a PCCS (Intel's, or ``kubetee pcs serve``) over the PCCS/PCS v4 HTTP API.

A quote names its platform family (FMSPC) and PCK CA in its PCK certificate; the
service asks for the TCB Info of that FMSPC, the PCK CRL of that CA, the QE Identity
and the root CA CRL (:mod:`kubetee.pcs.api`), and caches each item until it is due:
80% of the way from its fetch to its ``nextUpdate``, so it is renewed before it
expires, or after ``max_age_seconds`` if that comes first (a newer TCB evaluation must
not wait for the cached one's ``nextUpdate``, weeks away). A failed renewal keeps
serving the cached item while it is still valid and counts the error; without a valid
item the attestation is refused as ``CollateralUnavailable`` (503, try again), never
verified against stale collateral.

Metrics: seconds until each cached item's ``nextUpdate`` and its timestamp (labels
``kind`` and ``id``: the FMSPC or CA type), fetches by result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from kubetee.attestation.collateral import Collateral
from kubetee.attestation_service.errors import CollateralUnavailableError
from kubetee.metrics import names
from kubetee.pcs import api

log = logging.getLogger(__name__)

_MAX_BODY = 1024 * 1024
_REFRESH_AT = 0.8  # of the way from fetch to nextUpdate
_MIN_REFETCH_SECONDS = 30.0  # however stale the PCCS's answer, not more often than this

TCB_INFO, QE_IDENTITY, PCK_CRL, ROOT_CA_CRL = "tcb_info", "qe_identity", "pck_crl", "root_ca_crl"


class CollateralMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.remaining = Gauge(
            names.COLLATERAL_TIME_TO_NEXT_UPDATE_SECONDS,
            "Seconds until the nextUpdate of each cached collateral item (negative: expired), "
            "by kind (tcb_info, qe_identity, pck_crl, root_ca_crl) and id (FMSPC or CA type).",
            ("kind", "id"),
            registry=registry,
            multiprocess_mode="livemin",  # with --workers: the stalest live worker's
        )
        self.next_update = Gauge(
            names.COLLATERAL_NEXT_UPDATE_TIMESTAMP_SECONDS,
            "UNIX time of the nextUpdate of each cached collateral item.",
            ("kind", "id"),
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.fetches = Counter(
            names.COLLATERAL_FETCHES_TOTAL,
            "Collateral fetches from the PCCS by kind and result (ok, error).",
            ("kind", "result"),
            registry=registry,
        )


_default_metrics: CollateralMetrics | None = None


def collateral_metrics() -> CollateralMetrics:
    global _default_metrics  # noqa: PLW0603 - one set of metrics per process, made lazily
    if _default_metrics is None:
        _default_metrics = CollateralMetrics()
    return _default_metrics


@dataclass(frozen=True, slots=True)
class _Item:
    value: Any
    fetched_at: float
    next_update: float

    def due(self, now: float, max_age: float | None = None) -> bool:
        window = max(self.next_update - self.fetched_at, 0.0)
        age = max(window * _REFRESH_AT, _MIN_REFETCH_SECONDS)
        if max_age is not None:
            age = min(age, max_age)
        return now >= self.fetched_at + age


class CollateralFetchError(Exception):
    """One PCCS answer could not be used."""


def base_url(url: str) -> str:
    """The PCCS's root URL, whether given with its ``/sgx/certification/v4`` path or not."""
    trimmed = url.rstrip("/")
    return trimmed.removesuffix(api.PREFIX)


class PccsCollateral:
    """Fetches, caches and renews collateral per FMSPC and PCK CA type."""

    def __init__(
        self,
        url: str,
        *,
        ca_file: Path | None = None,
        timeout_seconds: float = 10.0,
        metrics: CollateralMetrics | None = None,
        max_age_seconds: float | None = None,
    ) -> None:
        self.url = base_url(url)
        # Renew at least this often, whatever nextUpdate says: a newer TCB evaluation is
        # published long before the cached one expires (docs/tcb-recovery.md).
        self._max_age = max_age_seconds
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._metrics = metrics or collateral_metrics()
        self._items: dict[tuple[str, str], _Item] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def collateral_for(self, fmspc: bytes, ca: str, now: datetime) -> Collateral:
        """Collateral for a platform of family ``fmspc`` certified by the ``ca`` PCK CA."""
        moment = now.timestamp()
        fmspc_hex = fmspc.hex().upper()
        tcb, qe = (TCB_INFO, fmspc_hex), (QE_IDENTITY, "")
        tcb_text, tcb_signature, tcb_chain = await self._get(tcb, moment, self._fetcher(tcb))
        qe_text, qe_signature, qe_chain = await self._get(qe, moment, self._fetcher(qe))
        pck_crl, pck_chain = await self._get((PCK_CRL, ca), moment, self._fetcher((PCK_CRL, ca)))
        root_crl = await self._get((ROOT_CA_CRL, ""), moment, self._root_ca_crl)
        return Collateral(
            pck_crl_issuer_chain=pck_chain,
            root_ca_crl=root_crl,
            pck_crl=pck_crl,
            tcb_info_issuer_chain=tcb_chain,
            tcb_info=tcb_text,
            tcb_info_signature=tcb_signature,
            qe_identity_issuer_chain=qe_chain,
            qe_identity=qe_text,
            qe_identity_signature=qe_signature,
        )

    async def refresh_due(self, now: datetime | None = None) -> None:
        """Renew every cached item that is due and update the freshness metrics."""
        moment = (now or datetime.now(UTC)).timestamp()
        for key in list(self._items):
            # Logged and counted in _get; the next attestation tries again.
            with contextlib.suppress(CollateralUnavailableError):
                await self._get(key, moment, self._fetcher(key))
        self._export(time.time())

    def _fetcher(self, key: tuple[str, str]) -> Callable[[], Awaitable[tuple[Any, float]]]:
        kind, ident = key
        if kind == PCK_CRL:
            return lambda: self._pck_crl(ident)
        if kind == ROOT_CA_CRL:
            return self._root_ca_crl
        return lambda: self._signed(kind, ident)

    def _export(self, wall_clock: float) -> None:
        for (kind, ident), item in self._items.items():
            self._metrics.remaining.labels(kind, ident).set(item.next_update - wall_clock)
            self._metrics.next_update.labels(kind, ident).set(item.next_update)

    async def _get(
        self,
        key: tuple[str, str],
        now: float,
        fetch: Callable[[], Awaitable[tuple[Any, float]]],
    ) -> Any:
        item = self._items.get(key)
        if item is not None and not item.due(now, self._max_age):
            return item.value
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            item = self._items.get(key)
            if item is not None and not item.due(now, self._max_age):
                return item.value  # another request renewed it meanwhile
            kind, ident = key
            try:
                value, next_update = await fetch()
            except CollateralFetchError as error:
                self._metrics.fetches.labels(kind, "error").inc()
                if item is not None and now < item.next_update:
                    log.warning("renewing %s %s failed (%s); the cached one is valid", *key, error)
                    return item.value
                log.error("cannot fetch %s %s from %s: %s", kind, ident, self.url, error)  # noqa: TRY400 - the reason is all there is
                raise CollateralUnavailableError(
                    f"no valid {kind.replace('_', ' ')} {ident} from the PCCS at {self.url}: "
                    f"{error}"
                ) from None
            self._metrics.fetches.labels(kind, "ok").inc()
            self._items[key] = _Item(value, now, next_update)
            self._export(time.time())
            return value

    async def _fetch(self, path: str, params: dict[str, str] | None = None) -> tuple[bytes, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(
                self.url + path, params=params, ssl=self._ssl, allow_redirects=False
            ) as response:
                body = await response.content.read(_MAX_BODY + 1)
                if response.status != 200:
                    raise CollateralFetchError(f"{path} answered HTTP {response.status}")
                if len(body) > _MAX_BODY:
                    raise CollateralFetchError(f"{path} answered more than {_MAX_BODY} bytes")
                return body, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            raise CollateralFetchError(f"{path}: {error or type(error).__name__}") from None

    async def _signed(self, kind: str, fmspc: str) -> tuple[tuple[str, bytes, str], float]:
        if kind == TCB_INFO:
            body, headers = await self._fetch(api.TCB_PATH, {"fmspc": fmspc})
            chain = headers.get(api.TCB_INFO_ISSUER_CHAIN) or headers.get(
                api.TCB_INFO_ISSUER_CHAIN_V3
            )
            key = api.TCB_INFO_KEY
        else:
            body, headers = await self._fetch(api.QE_IDENTITY_PATH)
            chain = headers.get(api.ENCLAVE_IDENTITY_ISSUER_CHAIN)
            key = api.ENCLAVE_IDENTITY_KEY
        if not chain:
            raise CollateralFetchError(f"the {key} answer has no issuer chain header")
        try:
            text, signature = api.split_signed_body(body, key)
            next_update = _intel_time(api.json_field(text, "nextUpdate"))
        except ValueError as error:
            raise CollateralFetchError(str(error)) from None
        if kind == TCB_INFO and api.json_field(text, "fmspc").upper() != fmspc:
            raise CollateralFetchError(f"the PCCS answered TCB Info of another FMSPC than {fmspc}")
        return (text, signature, api.decode_chain(chain)), next_update

    async def _pck_crl(self, ca: str) -> tuple[tuple[bytes, str], float]:
        body, headers = await self._fetch(api.PCK_CRL_PATH, {"ca": ca, "encoding": "der"})
        chain = headers.get(api.PCK_CRL_ISSUER_CHAIN)
        if not chain:
            raise CollateralFetchError("the PCK CRL answer has no issuer chain header")
        der, next_update = _crl(body)
        return (der, api.decode_chain(chain)), next_update

    async def _root_ca_crl(self) -> tuple[bytes, float]:
        body, _ = await self._fetch(api.ROOT_CA_CRL_PATH)
        return _crl(body)


def _intel_time(value: str) -> float:
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        try:
            moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            raise ValueError(f"nextUpdate {value[:40]!r} is not an ISO 8601 UTC time") from None
    return moment.timestamp()


def _crl(body: bytes) -> tuple[bytes, float]:
    """A CRL as PEM, hex of DER (Intel's PCCS) or DER; its DER and nextUpdate."""
    text = body.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(text)
        elif text and all(c in b"0123456789abcdefABCDEF" for c in text):
            crl = x509.load_der_x509_crl(bytes.fromhex(text.decode()))
        else:
            crl = x509.load_der_x509_crl(body)
    except ValueError:
        raise CollateralFetchError("the answer is not a CRL (PEM, hex or DER)") from None
    next_update = crl.next_update_utc
    if next_update is None:
        raise CollateralFetchError("the CRL has no nextUpdate")
    return crl.public_bytes(serialization.Encoding.DER), next_update.timestamp()
