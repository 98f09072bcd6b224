"""SEDA messages of the end of an archive's life: the visa request to the control authority,
its reply, the destruction (or transfer) notification, and the definitive archives' transfer
reply.

* :func:`build_authorization_request` — ``AuthorizationControlAuthorityRequest``
  (``seda-<v>-main.xsd``: ``MessageType`` → ``BusinessMessageType`` →
  ``BusinessAuthorizationRequestMessageType`` → ``AuthorizationControlAuthorityRequestType``):
  ``Comment``, ``Date``, ``MessageIdentifier``, ``CodeListVersions``, a ``DataObjectPackage``
  describing every unit (its rules in ``Management``, its objects with their digests), then
  ``AuthorizationRequestContent`` (``AuthorizationReason``, ``Comment`` = the reason given,
  ``RequestDate``, one ``UnitIdentifier`` per unit, ``Requester``), ``ArchivalAgency`` and
  ``ControlAuthority``.
* :func:`build_authorization_reply` — ``AuthorizationControlAuthorityRequestReply``, what the
  Archives départementales answer (``ReplyCode``, ``MessageRequestIdentifier`` = the request);
  its ``MessageIdentifier`` is the authority's reference of the visa. We build it for tests and
  for an archivist who records a visa given on paper.
* :func:`parse_authorization_reply` / :func:`parse_transfer_reply` — read those replies
  (hardened parser: no DTD, no entity, no network; wrong root or namespace refused). The caller
  validates them against the official XSD first.
* :func:`build_destruction_notification` — ``ArchiveDestructionNotification``:
  ``AuthorizationRequestReplyIdentifier`` = the visa reference, one ``UnitIdentifier`` per unit,
  and the units with their objects' digests in the ``DataObjectPackage`` (what was destroyed or
  transferred, so that the notification alone proves which bytes are gone).

The element order follows the XSD sequences; 2.2 and 2.3 differ only by namespace for these
messages (``diff`` of the two main XSDs shows nothing else). Pure and byte-stable like
:mod:`~archive_service.core.seda.builder`: units are written by id, objects by id, holds by id,
nothing comes from a clock or a random source.

Units are written flat (one ``ArchiveUnit`` per unit, under ``DescriptiveMetadata``): each
carries its own rules, resolved by the caller (inherited ones included), so that the authority
reads every unit's DUA and final action without rebuilding the tree. The dossier a unit belongs
to is named in its ``Content/Description`` and its own id is its ``SystemId``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, Literal

from lxml import etree

from archive_service.core.model import require_utc
from archive_service.core.seda.builder import group_id, xml_datetime
from archive_service.core.seda.names import (
    CATEGORY_SCHEME,
    DATA_OBJECT_VERSION,
    REFERENTIAL_CODE_LIST,
    SEDA_NS,
    SedaVersion,
    nsmap,
    seda,
)
from archive_service.core.seda.xmlsafe import element_path, parse_untrusted, seda_version_of
from archive_service.errors import Issue, SedaInvalid

__all__ = [
    "AUTHORIZATION_REASONS",
    "HOLD_CODE_LIST",
    "AuthorizationReply",
    "AuthorizationRequestInput",
    "DestructionNotificationInput",
    "LifecycleObject",
    "LifecycleUnit",
    "TransferReplyInfo",
    "build_authorization_reply",
    "build_authorization_request",
    "build_destruction_notification",
    "hold_rule_entries",
    "parse_authorization_reply",
    "parse_transfer_reply",
]

#: ``AuthorizationReason`` per request kind, from our code list (named in ``CodeListVersions``
#: ``AuthorizationReasonCodeListVersion``): SEDA leaves the list to the exchanging parties.
AUTHORIZATION_REASONS: Final[dict[str, str]] = {
    "destroy": "ArchiveDestruction",
    "transfer": "ArchiveTransfer",
}
AUTHORIZATION_REASON_CODE_LIST: Final = "archive-service:authorization-reasons:1"
REPLY_CODE_LIST: Final = "archive-service:reply-codes:1"
#: ``HoldRuleCodeListVersion``: the ``Rule`` of a ``HoldRule`` is our hold's id.
HOLD_CODE_LIST: Final = "archive-service:legal-holds"

#: SEDA ``LevelType`` values (``seda-<v>-ontology.xsd``).
LEVELS: Final = frozenset(
    {
        "Fonds",
        "Subfonds",
        "Class",
        "Collection",
        "Series",
        "Subseries",
        "RecordGrp",
        "SubGrp",
        "File",
        "Item",
        "OtherLevel",
    }
)

_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
_HEX = re.compile(r"^[0-9a-f]+$")

AUTHORIZATION_REPLY_ROOT: Final = "AuthorizationControlAuthorityRequestReply"
TRANSFER_REPLY_ROOT: Final = "ArchiveTransferReply"


# -- values ------------------------------------------------------------------------------------


def _require_text(value: str, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        msg = f"{what} must be a non-empty string"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class LifecycleObject:
    """One archived file of a unit, as the disposal messages and documents name it."""

    object_id: str
    path: str
    size: int
    sha256: str
    sha512: str
    mime_type: str
    puid: str | None

    def __post_init__(self) -> None:
        _require_text(self.object_id, "object_id")
        if self.size < 0:
            msg = "size must be >= 0"
            raise ValueError(msg)
        for name, value, length in (("sha256", self.sha256, 64), ("sha512", self.sha512, 128)):
            if len(value) != length or not _HEX.match(value):
                msg = f"{name} must be {length} lowercase hex characters"
                raise ValueError(msg)

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class LifecycleUnit:
    """One archive unit proposed for (or gone through) destruction or transfer.

    ``appraisal`` / ``access`` have the shape of ``services.ingest.rule_json`` (``rule_id``,
    ``duration_years``, ``start_event``, ``start_date``, ``end_date``, ``pending``, ``label``,
    ``final_action``, ``review``): the rules in force for the unit, inherited ones included.
    ``holds``: active legal holds covering it (``id``, ``reason``, ``reference``,
    ``placed_by``, ``placed_at``), for exports; a disposal has none.
    """

    unit_id: str
    title: str
    level: str
    category: str | None
    dossier_id: str
    dossier_title: str
    originating_agency: str | None
    appraisal: dict[str, Any] | None
    access: dict[str, Any] | None
    objects: tuple[LifecycleObject, ...]
    holds: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        _require_text(self.unit_id, "unit_id")
        _require_text(self.title, "title")
        if self.level not in LEVELS:
            msg = f"level {self.level!r} is not a SEDA LevelType ({', '.join(sorted(LEVELS))})"
            raise ValueError(msg)
        ids = [o.object_id for o in self.objects]
        if len(set(ids)) != len(ids):
            msg = f"unit {self.unit_id}: object ids must be unique"
            raise ValueError(msg)

    @property
    def size(self) -> int:
        """Total size of the unit's objects, in bytes."""
        return sum(o.size for o in self.objects)


def _check_units(units: tuple[LifecycleUnit, ...]) -> None:
    if not units:
        msg = "at least one unit is needed"
        raise ValueError(msg)
    ids = [u.unit_id for u in units]
    if len(set(ids)) != len(ids):
        msg = "unit ids must be unique"
        raise ValueError(msg)
    objects = [o.object_id for u in units for o in u.objects]
    if len(set(objects)) != len(objects):
        msg = "an object may belong to one unit only"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class AuthorizationRequestInput:
    """A request for the control authority's visa (``kind``: destroy or transfer)."""

    message_identifier: str
    date: datetime
    archival_agency: str
    control_authority: str
    requester: str
    comment: str | None
    kind: Literal["destroy", "transfer"]
    units: tuple[LifecycleUnit, ...]

    def __post_init__(self) -> None:
        _require_text(self.message_identifier, "message_identifier")
        require_utc(self.date, "request date")
        _require_text(self.archival_agency, "archival_agency")
        _require_text(self.control_authority, "control_authority")
        _require_text(self.requester, "requester")
        if self.kind not in AUTHORIZATION_REASONS:
            msg = f"kind must be 'destroy' or 'transfer', got {self.kind!r}"
            raise ValueError(msg)
        _check_units(self.units)


@dataclass(frozen=True, slots=True)
class AuthorizationReply:
    """What the control authority answered (``reply_code`` as written, e.g. ``OK``/``KO``)."""

    message_identifier: str
    request_identifier: str
    reply_code: str
    date: datetime
    comment: str | None


@dataclass(frozen=True, slots=True)
class DestructionNotificationInput:
    """The notification that units were destroyed, or transferred and purged."""

    message_identifier: str
    date: datetime
    archival_agency: str
    originating_agency: str
    request_identifier: str
    visa_reference: str
    units: tuple[LifecycleUnit, ...]
    outcome: Literal["destroyed", "transferred"]

    def __post_init__(self) -> None:
        _require_text(self.message_identifier, "message_identifier")
        require_utc(self.date, "notification date")
        _require_text(self.archival_agency, "archival_agency")
        _require_text(self.originating_agency, "originating_agency")
        _require_text(self.request_identifier, "request_identifier")
        _require_text(self.visa_reference, "visa_reference")
        if self.outcome not in ("destroyed", "transferred"):
            msg = f"outcome must be 'destroyed' or 'transferred', got {self.outcome!r}"
            raise ValueError(msg)
        _check_units(self.units)


@dataclass(frozen=True, slots=True)
class TransferReplyInfo:
    """An ``ArchiveTransferReply`` from the definitive archives' system.

    ``archive_unit_ids``: the ``id`` of each ``ArchiveUnit`` it lists (the ids of our transfer);
    ``system_ids``: their ``Content/SystemId`` there, in the same order (empty when absent).
    """

    message_identifier: str
    request_identifier: str
    reply_code: str
    date: datetime
    archive_unit_ids: tuple[str, ...]
    system_ids: tuple[str, ...] = ()


# -- writing -----------------------------------------------------------------------------------


class _Writer:
    def __init__(self, version: SedaVersion) -> None:
        if version not in SEDA_NS:
            msg = f"unsupported SEDA version {version!r}"
            raise ValueError(msg)
        self.version: SedaVersion = version

    def root(self, local: str) -> etree._Element:
        return etree.Element(seda(self.version, local), nsmap=nsmap({None: SEDA_NS[self.version]}))

    def el(self, parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
        child = etree.SubElement(parent, seda(self.version, local))
        if text is not None:
            try:
                child.text = text
            except ValueError as exc:
                msg = f"{local}: value cannot be written in XML ({exc})"
                raise ValueError(msg) from exc
        return child

    def organization(self, parent: etree._Element, local: str, identifier: str) -> None:
        self.el(self.el(parent, local), "Identifier", identifier)

    def header(
        self, root: etree._Element, comments: Sequence[str], when: datetime, ident: str
    ) -> None:
        for comment in comments:
            self.el(root, "Comment", comment)
        self.el(root, "Date", xml_datetime(when))
        self.el(root, "MessageIdentifier", ident)

    def code_lists(
        self, root: etree._Element, *, reply: bool, package: bool, holds: bool, reason: bool
    ) -> None:
        # CodeListVersionsType: Transport (Reply), Technical, Management (…, Appraisal,
        # Access, …, Hold), AcquisitionInformation, AuthorizationReason.
        lists = self.el(root, "CodeListVersions")
        if reply:
            self.el(lists, "ReplyCodeListVersion", REPLY_CODE_LIST)
        if package:
            self.el(
                lists,
                "MessageDigestAlgorithmCodeListVersion",
                "archive-service:digest-algorithms:1",
            )
            self.el(lists, "MimeTypeCodeListVersion", "IANA:media-types")
            self.el(lists, "FileFormatCodeListVersion", "PRONOM")
            self.el(
                lists, "DataObjectVersionCodeListVersion", "archive-service:data-object-versions:1"
            )
            self.el(lists, "AppraisalRuleCodeListVersion", REFERENTIAL_CODE_LIST)
            self.el(lists, "AccessRuleCodeListVersion", REFERENTIAL_CODE_LIST)
        if holds:
            self.el(lists, "HoldRuleCodeListVersion", HOLD_CODE_LIST)
        if reason:
            self.el(lists, "AuthorizationReasonCodeListVersion", AUTHORIZATION_REASON_CODE_LIST)

    def package(self, root: etree._Element, units: Sequence[LifecycleUnit], when: datetime) -> None:
        package = self.el(root, "DataObjectPackage")
        objects = sorted((o for u in units for o in u.objects), key=lambda o: o.object_id)
        for obj in objects:
            self.data_object(package, obj)
        descriptive = self.el(package, "DescriptiveMetadata")
        for unit in sorted(units, key=lambda u: u.unit_id):
            self.unit(descriptive, unit, when)
        management = self.el(package, "ManagementMetadata")
        agencies = {u.originating_agency for u in units if u.originating_agency}
        if len(agencies) == 1:
            self.el(management, "OriginatingAgencyIdentifier", agencies.pop())

    def data_object(self, package: etree._Element, obj: LifecycleObject) -> None:
        group = self.el(package, "DataObjectGroup")
        group.set("id", _xml_id(group_id(obj.object_id)))
        bdo = self.el(group, "BinaryDataObject")
        bdo.set("id", _xml_id(obj.object_id))
        self.el(bdo, "DataObjectVersion", DATA_OBJECT_VERSION)
        self.el(bdo, "MessageDigest", obj.sha256).set("algorithm", "SHA-256")
        if obj.size > 0:
            self.el(bdo, "Size", str(obj.size))
        ident = self.el(bdo, "FormatIdentification")
        if obj.mime_type:
            self.el(ident, "MimeType", obj.mime_type)
        if obj.puid:
            self.el(ident, "FormatId", obj.puid)
        info = self.el(bdo, "FileInfo")
        self.el(info, "Filename", obj.filename or obj.object_id)

    def unit(self, parent: etree._Element, unit: LifecycleUnit, when: datetime) -> None:
        au = self.el(parent, "ArchiveUnit")
        au.set("id", _xml_id(unit.unit_id))
        self.management(au, unit.appraisal, unit.access, unit.holds, when)
        content = self.el(au, "Content")
        self.el(content, "DescriptionLevel", unit.level)
        self.el(content, "Title", unit.title)
        self.el(content, "SystemId", unit.unit_id)
        if unit.dossier_id != unit.unit_id:
            self.el(content, "Description", f"Dossier : {unit.dossier_title} ({unit.dossier_id})")
        if unit.category:
            kw = self.el(content, "Keyword")
            self.el(kw, "KeywordContent", unit.category)
            self.el(kw, "KeywordReference", unit.category).set("schemeID", CATEGORY_SCHEME)
            self.el(kw, "KeywordType", "genreform")
        if unit.originating_agency:
            self.organization(content, "OriginatingAgency", unit.originating_agency)
        for obj in sorted(unit.objects, key=lambda o: o.object_id):
            ref = self.el(au, "DataObjectReference")
            self.el(ref, "DataObjectGroupReferenceId", _xml_id(group_id(obj.object_id)))

    def management(
        self,
        unit: etree._Element,
        appraisal: Mapping[str, Any] | None,
        access: Mapping[str, Any] | None,
        holds: Sequence[Mapping[str, Any]],
        when: datetime,
    ) -> None:
        if appraisal is None and access is None and not holds:
            return
        # ManagementGroup order: …, AppraisalRule, AccessRule, …, NeedAuthorization, HoldRule.
        management = self.el(unit, "Management")
        if appraisal is not None:
            rule = self.el(management, "AppraisalRule")
            self.el(rule, "Rule", str(appraisal["rule_id"]))
            start = _day(appraisal.get("start_date"))
            if start is not None:
                self.el(rule, "StartDate", start.isoformat())
            self.el(rule, "FinalAction", str(appraisal.get("final_action") or "Keep"))
        if access is not None:
            rule = self.el(management, "AccessRule")
            self.el(rule, "Rule", str(access["rule_id"]))
            start = _day(access.get("start_date"))
            if start is None and access.get("duration_years") == 0 and not access.get("pending"):
                start = when.astimezone(UTC).date()
            if start is not None:
                self.el(rule, "StartDate", start.isoformat())
        if appraisal is not None and appraisal.get("review"):
            self.el(management, "NeedAuthorization", "true")
        if holds:
            self.hold_rule(management, holds)

    def hold_rule(self, management: etree._Element, holds: Sequence[Mapping[str, Any]]) -> None:
        rule = self.el(management, "HoldRule")
        for entry in hold_rule_entries(holds):
            self.el(rule, "Rule", entry["rule"])
            self.el(rule, "StartDate", entry["start_date"])
            self.el(rule, "HoldOwner", entry["owner"])
            self.el(rule, "HoldReason", entry["reason"])

    def render(self, root: etree._Element) -> bytes:
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def hold_rule_entries(holds: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``HoldRule`` entries for active holds, sorted by id: ``Rule`` = the hold's id,
    ``StartDate`` = when it was placed, ``HoldOwner`` = who placed it, ``HoldReason`` = the
    reason (with the reference, e.g. the court case number). No ``HoldEndDate``: a hold lasts
    until lifted."""
    out: list[dict[str, str]] = []
    for hold in sorted(holds, key=lambda h: str(h["id"])):
        placed = _day(hold.get("placed_at"))
        if placed is None:
            msg = f"hold {hold['id']}: placed_at is missing"
            raise ValueError(msg)
        reason = " ".join(str(hold.get("reason") or "").split()) or "gel"
        reference = hold.get("reference")
        if reference:
            reason = f"{reason} (réf. {' '.join(str(reference).split())})"
        owner = " ".join(str(hold.get("placed_by") or "").split()) or "inconnu"
        out.append(
            {
                "rule": str(hold["id"]),
                "start_date": placed.isoformat(),
                "owner": owner,
                "reason": reason,
            }
        )
    return out


def _day(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError as exc:
            msg = f"{value!r} is not an ISO date"
            raise ValueError(msg) from exc
    return None


def _units_phrase(count: int) -> str:
    return f"{count} unité d'archives" if count == 1 else f"{count} unités d'archives"


def _xml_id(value: str) -> str:
    """``value`` when it is an ``xsd:ID`` (NCName); otherwise a readable NCName made of it."""
    if _NCNAME.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", value)
    return f"id_{cleaned}"


def build_authorization_request(
    inp: AuthorizationRequestInput, *, version: SedaVersion = "2.3"
) -> bytes:
    """``AuthorizationControlAuthorityRequest`` for ``inp`` (UTF-8, byte-stable)."""
    w = _Writer(version)
    root = w.root("AuthorizationControlAuthorityRequest")
    what = "d'élimination" if inp.kind == "destroy" else "de transfert aux archives définitives"
    w.header(
        root,
        [f"Demande de visa {what} ({_units_phrase(len(inp.units))})"],
        inp.date,
        inp.message_identifier,
    )
    w.code_lists(
        root, reply=False, package=True, holds=any(u.holds for u in inp.units), reason=True
    )
    w.package(root, inp.units, inp.date)
    content = w.el(root, "AuthorizationRequestContent")
    w.el(content, "AuthorizationReason", AUTHORIZATION_REASONS[inp.kind])
    if inp.comment and inp.comment.strip():
        w.el(content, "Comment", inp.comment)
    w.el(content, "RequestDate", inp.date.astimezone(UTC).date().isoformat())
    for unit in sorted(inp.units, key=lambda u: u.unit_id):
        w.el(content, "UnitIdentifier", unit.unit_id)
    w.organization(content, "Requester", inp.requester)
    w.organization(root, "ArchivalAgency", inp.archival_agency)
    w.organization(root, "ControlAuthority", inp.control_authority)
    return w.render(root)


def build_authorization_reply(
    request_identifier: str,
    reply_code: str,
    reference: str,
    date: datetime,
    *,
    archival_agency: str = "archival-agency",
    control_authority: str = "control-authority",
    comment: str | None = None,
    version: SedaVersion = "2.3",
) -> bytes:
    """``AuthorizationControlAuthorityRequestReply``: the authority's answer (``reply_code``
    ``OK`` for a visa, ``KO`` for a refusal) to the request ``request_identifier``; its
    ``MessageIdentifier`` is the visa's ``reference``."""
    for value, what in (
        (request_identifier, "request_identifier"),
        (reply_code, "reply_code"),
        (reference, "reference"),
    ):
        _require_text(value, what)
    require_utc(date, "reply date")
    w = _Writer(version)
    root = w.root(AUTHORIZATION_REPLY_ROOT)
    w.header(root, [comment] if comment and comment.strip() else [], date, reference)
    w.code_lists(root, reply=True, package=False, holds=False, reason=False)
    w.el(root, "ReplyCode", reply_code)
    w.el(root, "MessageRequestIdentifier", request_identifier)
    w.organization(root, "ArchivalAgency", archival_agency)
    w.organization(root, "ControlAuthority", control_authority)
    return w.render(root)


def build_destruction_notification(
    inp: DestructionNotificationInput, *, version: SedaVersion = "2.3"
) -> bytes:
    """``ArchiveDestructionNotification`` for ``inp`` (UTF-8, byte-stable)."""
    w = _Writer(version)
    root = w.root("ArchiveDestructionNotification")
    done = (
        "Élimination exécutée : toutes les copies ont été supprimées"
        if inp.outcome == "destroyed"
        else "Transfert aux archives définitives exécuté : toutes les copies ont été purgées"
    )
    comments = [
        f"{done} ({_units_phrase(len(inp.units))}).",
        f"Demande {inp.request_identifier} ; visa {inp.visa_reference}.",
    ]
    w.header(root, comments, inp.date, inp.message_identifier)
    w.code_lists(
        root, reply=False, package=True, holds=any(u.holds for u in inp.units), reason=False
    )
    w.package(root, inp.units, inp.date)
    w.el(root, "AuthorizationRequestReplyIdentifier", inp.visa_reference)
    for unit in sorted(inp.units, key=lambda u: u.unit_id):
        w.el(root, "UnitIdentifier", unit.unit_id)
    w.organization(root, "ArchivalAgency", inp.archival_agency)
    w.organization(root, "OriginatingAgency", inp.originating_agency)
    return w.render(root)


# -- reading -----------------------------------------------------------------------------------


def _root_of(xml: bytes, expected: str) -> tuple[etree._Element, SedaVersion]:
    tree = parse_untrusted(xml)
    version = seda_version_of(tree)
    root = tree.getroot()
    local = etree.QName(root).localname
    if local != expected:
        issue = Issue(
            "seda-unexpected-message",
            f"expected a {expected} message, found {local}",
            f"line {root.sourceline or 1}: {element_path(root)}",
        )
        raise SedaInvalid(f"not a SEDA {expected}", issues=[issue])
    return root, version


def _text(root: etree._Element, version: SedaVersion, local: str, *, required: bool) -> str | None:
    found = root.find(seda(version, local))
    value = found.text.strip() if found is not None and found.text else None
    if value is None and required:
        issue = Issue(
            "seda-missing-element",
            f"{local} is missing or empty",
            f"line {root.sourceline or 1}: {element_path(root)}",
        )
        raise SedaInvalid(f"{etree.QName(root).localname} without {local}", issues=[issue])
    return value


def _datetime(root: etree._Element, version: SedaVersion) -> datetime:
    text = _text(root, version, "Date", required=True) or ""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        issue = Issue("seda-bad-date", f"Date {text!r} is not an xsd:dateTime", element_path(root))
        raise SedaInvalid("unreadable message date", issues=[issue]) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_authorization_reply(xml: bytes) -> AuthorizationReply:
    """Read an ``AuthorizationControlAuthorityRequestReply`` (2.2 or 2.3); ``SedaInvalid`` for
    anything else (malformed, DTD, another message, no ``ReplyCode``)."""
    root, version = _root_of(xml, AUTHORIZATION_REPLY_ROOT)
    comments = [
        c.text.strip() for c in root.findall(seda(version, "Comment")) if c.text and c.text.strip()
    ]
    return AuthorizationReply(
        message_identifier=_text(root, version, "MessageIdentifier", required=True) or "",
        request_identifier=_text(root, version, "MessageRequestIdentifier", required=True) or "",
        reply_code=_text(root, version, "ReplyCode", required=True) or "",
        date=_datetime(root, version),
        comment="\n".join(comments) if comments else None,
    )


def parse_transfer_reply(xml: bytes) -> TransferReplyInfo:
    """Read an ``ArchiveTransferReply`` (2.2 or 2.3) from the definitive archives' system;
    ``SedaInvalid`` for anything else."""
    root, version = _root_of(xml, TRANSFER_REPLY_ROOT)
    ids: list[str] = []
    system_ids: list[str] = []
    units = root.iterfind(
        f"{seda(version, 'DataObjectPackage')}/{seda(version, 'DescriptiveMetadata')}//"
        f"{seda(version, 'ArchiveUnit')}"
    )
    for unit in units:
        ids.append(unit.get("id") or "")
        system = unit.find(f"{seda(version, 'Content')}/{seda(version, 'SystemId')}")
        if system is not None and system.text and system.text.strip():
            system_ids.append(system.text.strip())
    return TransferReplyInfo(
        message_identifier=_text(root, version, "MessageIdentifier", required=True) or "",
        request_identifier=_text(root, version, "MessageRequestIdentifier", required=True) or "",
        reply_code=_text(root, version, "ReplyCode", required=True) or "",
        date=_datetime(root, version),
        archive_unit_ids=tuple(ids),
        system_ids=tuple(system_ids),
    )
