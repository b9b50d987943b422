"""TCB Info (v3) and QE Identity (v2): their JSON, validated, and the TCB matching rules.

Matching follows Intel's QVL: the platform's TCB level is the first level whose 16 SGX
TCB components and PCESVN are all at most the platform's, as its PCK certificate states
them, the levels taken in QVL's order (a set ordered by CPUSVN then PCESVN, highest
first; a repeated level counts once) whatever order the document lists them in. The
Quoting Enclave's level is the first (in document order, as QVL reads them) whose ISV
SVN is at most the QE's; no such level means the QE is Revoked. The two statuses then
converge: an out-of-date QE makes an otherwise current platform OutOfDate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from enclave_runtime.sgx.quote import ReportBody
from kubetee.attestation.errors import CollateralInvalidError, QeIdentityMismatchError
from kubetee.attestation.verified import TcbStatus

SGX_TCB_TYPE = 0
"""The one ``tcbType`` of SGX TCB Info v3: levels of 16 SGX TCB components and PCESVN."""


def _hex(size: int) -> Any:
    return Annotated[str, StringConstraints(pattern=f"^[0-9a-fA-F]{{{2 * size}}}$")]


class _Model(BaseModel):
    # Intel adds fields over time (TDX components, categories): ignore what we do not use.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Svn(_Model):
    svn: int = Field(ge=0, le=255)


class _PlatformTcb(_Model):
    sgxtcbcomponents: list[_Svn] = Field(min_length=16, max_length=16)
    pcesvn: int = Field(ge=0, le=0xFFFF)


class _PlatformTcbLevel(_Model):
    tcb: _PlatformTcb
    tcbDate: AwareDatetime  # noqa: N815 (Intel's JSON name)
    tcbStatus: TcbStatus  # noqa: N815
    advisoryIDs: list[str] = Field(default_factory=list)  # noqa: N815


class _TcbInfoV3(_Model):
    id: str
    version: int
    issueDate: AwareDatetime  # noqa: N815
    nextUpdate: AwareDatetime  # noqa: N815
    fmspc: _hex(6)  # type: ignore[valid-type]
    pceId: _hex(2)  # type: ignore[valid-type]  # noqa: N815
    tcbType: int  # noqa: N815
    tcbEvaluationDataNumber: int = Field(ge=0, le=0xFFFFFFFF)  # noqa: N815
    tcbLevels: list[_PlatformTcbLevel] = Field(min_length=1)  # noqa: N815


class _QeTcb(_Model):
    isvsvn: int = Field(ge=0, le=0xFFFF)


class _QeTcbLevel(_Model):
    tcb: _QeTcb
    tcbDate: AwareDatetime  # noqa: N815
    tcbStatus: TcbStatus  # noqa: N815
    advisoryIDs: list[str] = Field(default_factory=list)  # noqa: N815


class _QeIdentityV2(_Model):
    id: str
    version: int
    issueDate: AwareDatetime  # noqa: N815
    nextUpdate: AwareDatetime  # noqa: N815
    tcbEvaluationDataNumber: int = Field(ge=0, le=0xFFFFFFFF)  # noqa: N815
    miscselect: _hex(4)  # type: ignore[valid-type]
    miscselectMask: _hex(4)  # type: ignore[valid-type]  # noqa: N815
    attributes: _hex(16)  # type: ignore[valid-type]
    attributesMask: _hex(16)  # type: ignore[valid-type]  # noqa: N815
    mrsigner: _hex(32)  # type: ignore[valid-type]
    isvprodid: int = Field(ge=0, le=0xFFFF)
    tcbLevels: list[_QeTcbLevel] = Field(min_length=1)  # noqa: N815


@dataclass(frozen=True, slots=True)
class TcbLevel:
    components: tuple[int, ...]
    pcesvn: int
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """A validated SGX TCB Info v3."""

    fmspc: bytes
    pce_id: bytes
    issue_date: datetime
    next_update: datetime
    levels: tuple[TcbLevel, ...]
    tcb_evaluation_data_number: int = 0

    def matching_level(self, components: tuple[int, ...], pcesvn: int) -> TcbLevel | None:
        """The first level the platform reaches, or None when it reaches none."""
        for level in self.levels:
            if pcesvn >= level.pcesvn and all(
                have >= need for have, need in zip(components, level.components, strict=True)
            ):
                return level
        return None


@dataclass(frozen=True, slots=True)
class QeLevel:
    isv_svn: int
    status: str
    advisory_ids: tuple[str, ...]


REVOKED_QE_LEVEL = QeLevel(isv_svn=0, status="Revoked", advisory_ids=())


@dataclass(frozen=True, slots=True)
class QeIdentity:
    """A validated QE Identity v2."""

    miscselect: int
    miscselect_mask: int
    attributes: int
    attributes_mask: int
    mrsigner: bytes
    isv_prod_id: int
    issue_date: datetime
    next_update: datetime
    levels: tuple[QeLevel, ...]
    tcb_evaluation_data_number: int = 0

    def check(self, qe_report: ReportBody) -> QeLevel:
        """Check the QE report against this identity; return the QE's TCB level."""
        if qe_report.misc_select & self.miscselect_mask != self.miscselect:
            raise QeIdentityMismatchError(
                "the QE report's MISCSELECT does not match the QE Identity",
                code="QE_IDENTITY_MISMATCH",
            )
        attributes = int.from_bytes(qe_report.attributes, "big")
        if attributes & self.attributes_mask != self.attributes:
            raise QeIdentityMismatchError(
                "the QE report's attributes do not match the QE Identity",
                code="QE_IDENTITY_MISMATCH",
            )
        if qe_report.mrsigner != self.mrsigner:
            raise QeIdentityMismatchError(
                f"the quoting enclave's MRSIGNER {qe_report.mrsigner.hex()} is not the "
                f"QE Identity's {self.mrsigner.hex()}: the quote was not made by the "
                "quoting enclave this collateral describes",
                code="QE_IDENTITY_MISMATCH",
            )
        if qe_report.isv_prod_id != self.isv_prod_id:
            raise QeIdentityMismatchError(
                f"the quoting enclave's product id {qe_report.isv_prod_id} is not the "
                f"QE Identity's {self.isv_prod_id}",
                code="QE_IDENTITY_MISMATCH",
            )
        for level in self.levels:
            if qe_report.isv_svn >= level.isv_svn:
                return level
        return REVOKED_QE_LEVEL


def converge(platform_status: str, qe_status: str) -> str:
    """The TCB status of platform and QE together, as Intel's QVL converges them."""
    if qe_status == "Revoked":
        return "Revoked"
    if qe_status == "OutOfDate":
        if platform_status in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform_status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform_status


def _load(text: str, what: str, identifier: str, version: int, code: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise CollateralInvalidError(
            f"{what} is not JSON (or nested too deeply)", code=code
        ) from None
    if not isinstance(document, dict):
        raise CollateralInvalidError(f"{what} must be a JSON object", code=code)
    if document.get("id") != identifier or document.get("version") != version:
        raise CollateralInvalidError(
            f"{what} is id {str(document.get('id'))[:40]!r} version "
            f"{str(document.get('version'))[:40]!r}; only id {identifier!r} version {version} "
            "is supported",
            code=code.replace("MALFORMED", "UNSUPPORTED"),
        )
    return document


def _summary(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}"


def parse_tcb_info(text: str) -> TcbInfo:
    """Validate the exact signed text of a TCB Info v3."""
    document = _load(text, "TCB Info", "SGX", 3, "TCB_INFO_MALFORMED")
    try:
        model = _TcbInfoV3.model_validate(document)
    except ValidationError as error:
        raise CollateralInvalidError(
            f"TCB Info is malformed at {_summary(error)}", code="TCB_INFO_MALFORMED"
        ) from None
    if model.tcbType != SGX_TCB_TYPE:
        raise CollateralInvalidError(
            f"TCB Info has tcbType {model.tcbType}; only {SGX_TCB_TYPE} (SGX TCB components "
            "and PCESVN) is defined",
            code="TCB_TYPE_UNSUPPORTED",
        )
    levels = (
        TcbLevel(
            components=tuple(c.svn for c in level.tcb.sgxtcbcomponents),
            pcesvn=level.tcb.pcesvn,
            status=level.tcbStatus,
            advisory_ids=tuple(level.advisoryIDs),
        )
        for level in model.tcbLevels
    )
    return TcbInfo(
        fmspc=bytes.fromhex(model.fmspc),
        pce_id=bytes.fromhex(model.pceId),
        issue_date=model.issueDate,
        next_update=model.nextUpdate,
        levels=qvl_order(levels),
        tcb_evaluation_data_number=model.tcbEvaluationDataNumber,
    )


def qvl_order(levels: Iterable[TcbLevel]) -> tuple[TcbLevel, ...]:
    """The levels as QVL holds them: ``std::set<TcbLevel, std::greater>``, ordered by CPUSVN
    (component by component) then PCESVN, highest first; a later duplicate is dropped."""
    unique: dict[tuple[tuple[int, ...], int], TcbLevel] = {}
    for level in levels:
        unique.setdefault((level.components, level.pcesvn), level)
    return tuple(unique[key] for key in sorted(unique, reverse=True))


def parse_qe_identity(text: str) -> QeIdentity:
    """Validate the exact signed text of a QE Identity v2."""
    document = _load(text, "QE Identity", "QE", 2, "QE_IDENTITY_MALFORMED")
    try:
        model = _QeIdentityV2.model_validate(document)
    except ValidationError as error:
        raise CollateralInvalidError(
            f"QE Identity is malformed at {_summary(error)}", code="QE_IDENTITY_MALFORMED"
        ) from None
    return QeIdentity(
        # MISCSELECT is a little-endian 32-bit field in the report; Intel writes its bytes.
        miscselect=int.from_bytes(bytes.fromhex(model.miscselect), "little"),
        miscselect_mask=int.from_bytes(bytes.fromhex(model.miscselectMask), "little"),
        attributes=int.from_bytes(bytes.fromhex(model.attributes), "big"),
        attributes_mask=int.from_bytes(bytes.fromhex(model.attributesMask), "big"),
        mrsigner=bytes.fromhex(model.mrsigner),
        isv_prod_id=model.isvprodid,
        issue_date=model.issueDate,
        next_update=model.nextUpdate,
        levels=tuple(
            QeLevel(
                isv_svn=level.tcb.isvsvn,
                status=level.tcbStatus,
                advisory_ids=tuple(level.advisoryIDs),
            )
            for level in model.tcbLevels
        ),
        tcb_evaluation_data_number=model.tcbEvaluationDataNumber,
    )
