"""Frozen value types shared by the core, the services and the adapters.

Values are valid by construction: invariants are checked in ``__post_init__``. Digests carry
their algorithm; datetimes are timezone-aware UTC; collections are tuples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

_HEX = re.compile(r"^[0-9a-f]+$")
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}

#: SEDA spells digest algorithms in its own code list (MessageDigestAlgorithmCodeType).
SEDA_ALGORITHM_NAMES = {"sha256": "SHA-256", "sha512": "SHA-512"}


def require_utc(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A digest with its algorithm; ``str()`` gives ``sha256:<hex>``."""

    algorithm: str
    digest: str

    def __post_init__(self) -> None:
        expected = _DIGEST_LENGTHS.get(self.algorithm)
        if expected is None:
            msg = f"unsupported digest algorithm {self.algorithm!r}"
            raise ValueError(msg)
        if len(self.digest) != expected or not _HEX.match(self.digest):
            msg = f"{self.algorithm} digest must be {expected} lowercase hex characters"
            raise ValueError(msg)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.digest}"

    @property
    def seda_algorithm(self) -> str:
        return SEDA_ALGORITHM_NAMES[self.algorithm]

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        algorithm, _, digest = text.partition(":")
        return cls(algorithm, digest.lower())


@dataclass(frozen=True, slots=True)
class FileFingerprints:
    """SHA-256 and SHA-512 of one byte stream, computed in one pass, with its size."""

    size: int
    sha256: Fingerprint
    sha512: Fingerprint

    def __post_init__(self) -> None:
        if self.size < 0:
            msg = "size must be >= 0"
            raise ValueError(msg)
        if self.sha256.algorithm != "sha256" or self.sha512.algorithm != "sha512":
            msg = "FileFingerprints needs a sha256 and a sha512 fingerprint"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatInfo:
    """What libmagic and Siegfried say a file is, and what the sender declared.

    ``puid`` is the PRONOM identifier (``fmt/354``); ``None`` when Siegfried found no match.
    ``declared_mime`` is kept even when it disagrees: the disagreement is recorded, not hidden.
    """

    mime_type: str
    puid: str | None = None
    format_name: str | None = None
    format_version: str | None = None
    basis: str | None = None
    declared_mime: str | None = None

    @property
    def declared_mismatch(self) -> bool:
        return self.declared_mime is not None and self.declared_mime != self.mime_type


#: Start event of a rule that runs from nothing (freely communicable, for instance).
NO_START_EVENT = "none"


class FinalAction(StrEnum):
    """SEDA ``FinalActionAppraisalCodeType``: only Keep or Destroy exist."""

    KEEP = "Keep"
    DESTROY = "Destroy"


def add_years(start: date, years: int) -> date:
    """``start`` plus whole years; 29 February falls back to 28 February."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppraisalRule:
    """A DUA and its final action (SEDA ``AppraisalRule``), resolved for one archive unit.

    ``start_date`` is ``None`` while the start event (e.g. ``paiement_solde``) has not happened:
    the rule is *pending*, and no end date exists yet.
    """

    rule_id: str
    duration_years: int
    start_event: str
    final_action: FinalAction
    start_date: date | None = None
    review: bool = False
    """True for *tri* (selective keep): Keep, and an archivist must review the unit."""
    label: str = ""

    def __post_init__(self) -> None:
        if self.duration_years < 0:
            msg = "duration_years must be >= 0"
            raise ValueError(msg)

    @property
    def pending(self) -> bool:
        return self.start_date is None

    @property
    def end_date(self) -> date | None:
        if self.start_date is None:
            return None
        return add_years(self.start_date, self.duration_years)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRule:
    """A communicability delay (SEDA ``AccessRule``); duration 0 means freely communicable."""

    rule_id: str
    duration_years: int
    start_event: str
    start_date: date | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.duration_years < 0:
            msg = "duration_years must be >= 0"
            raise ValueError(msg)

    @property
    def pending(self) -> bool:
        """True while the start event has not happened (e.g. communicable after signature)."""
        return self.start_date is None and self.start_event != NO_START_EVENT

    @property
    def end_date(self) -> date | None:
        """When the unit becomes communicable; ``None`` if freely so or still pending."""
        if self.start_date is None:
            return None
        return add_years(self.start_date, self.duration_years)


class DescriptionLevel(StrEnum):
    """SEDA ``LevelType`` values we use: dossier, phase and document."""

    RECORD_GROUP = "RecordGrp"
    SUB_GROUP = "SubGrp"
    FILE = "File"
    ITEM = "Item"


@dataclass(frozen=True, slots=True, kw_only=True)
class Keyword:
    """SEDA ``Keyword``: content, optional ``KeywordType`` (subject, corpname, …) and reference."""

    content: str
    type: str | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Description:
    """Descriptive metadata of one archive unit (rendered as SEDA ``Content``).

    ``extension`` holds procurement fields that SEDA has no element for, as ordered
    ``(name, value)`` pairs; the SEDA builder renders them in the project's own namespace.
    """

    level: DescriptionLevel
    title: str
    description: str | None = None
    document_type: str | None = None
    keywords: tuple[Keyword, ...] = ()
    originating_agency: str | None = None
    originating_system_ids: tuple[str, ...] = ()
    start_date: date | None = None
    end_date: date | None = None
    extension: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.title.strip():
            msg = "an archive unit needs a non-empty title"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataObject:
    """One archived file (SEDA ``BinaryDataObject``).

    ``path`` is the file's path inside the dossier as the sender named it; ``uri`` is where it
    sits inside the package (``content/<id>``).
    """

    id: str
    path: str
    fingerprints: FileFingerprints
    format: FormatInfo
    uri: str

    @property
    def size(self) -> int:
        return self.fingerprints.size

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveUnitNode:
    """One node of the dossier tree (dossier → phase → document).

    ``data_object_ids`` reference :class:`DataObject` ids of the same package. Rules set on a
    node apply to its descendants unless they set their own (SEDA inheritance).
    """

    id: str
    description: Description
    category: str | None = None
    appraisal: AppraisalRule | None = None
    access: AccessRule | None = None
    data_object_ids: tuple[str, ...] = ()
    children: tuple[ArchiveUnitNode, ...] = ()

    def walk(self) -> tuple[ArchiveUnitNode, ...]:
        """This node and all its descendants, depth first, in document order."""
        out: list[ArchiveUnitNode] = [self]
        for child in self.children:
            out.extend(child.walk())
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferManifestInput:
    """Everything the SEDA builder needs to render one ``ArchiveTransfer``; nothing else.

    The builder is byte-stable: the same input gives the same bytes.
    """

    message_identifier: str
    date: datetime
    archival_agency: str
    transferring_agency: str
    objects: tuple[DataObject, ...]
    root: ArchiveUnitNode
    comment: str | None = None
    archival_agreement: str | None = None
    originating_agency: str | None = None

    def __post_init__(self) -> None:
        require_utc(self.date, "manifest date")
        ids = [o.id for o in self.objects]
        if len(set(ids)) != len(ids):
            msg = "data object ids must be unique"
            raise ValueError(msg)
        known = set(ids)
        for node in self.root.walk():
            for ref in node.data_object_ids:
                if ref not in known:
                    msg = f"archive unit {node.id} references unknown data object {ref}"
                    raise ValueError(msg)


class ReplyCode(StrEnum):
    """SEDA ``ReplyCode`` values used in ``ArchiveTransferReply``."""

    OK = "OK"
    KO = "KO"
    WARNING = "WARNING"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferReplyInput:
    """What the builder needs for an ``ArchiveTransferReply`` (acknowledgement, OK or KO)."""

    message_identifier: str
    message_request_identifier: str
    date: datetime
    reply_code: ReplyCode
    archival_agency: str
    transferring_agency: str
    reasons: tuple[str, ...] = ()
    archive_unit_id: str | None = None
    grant_date: datetime | None = None

    def __post_init__(self) -> None:
        require_utc(self.date, "reply date")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimestampInfo:
    """What a verified RFC 3161 token says (RFC 3161 §2.4.2 TSTInfo)."""

    gen_time: datetime
    serial_number: int
    policy: str
    hash_algorithm: str
    message_imprint: bytes
    tsa_name: str | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of a verification checklist: what was checked, expected and found, verdict."""

    name: str
    ok: bool
    expected: str = ""
    found: str = ""
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """A checklist that fails closed: an empty report is not a success."""

    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.ok)
