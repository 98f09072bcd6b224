"""Procurement profile checks done in Python, next to the RelaxNG grammar.

Two kinds, both reported with code ``seda-profile-invalid`` and a ``line N: /path`` location:

* :func:`requirement_issues` restates, with plain messages, the requirements the RelaxNG
  profile enforces (a document without ``AppraisalRule``, a dossier without
  ``OriginatingAgency``, a ``BinaryDataObject`` without ``MessageDigest``…). libxml2 reports a
  failed RelaxNG ``choice`` as "Did not expect element X there" at some later element; these
  messages say what is missing, where.
* :func:`consistency_issues` checks what a grammar cannot express: ids are unique, every
  ``DataObjectGroupReferenceId`` resolves and every object group is described by a unit; and
  the rule states. A rule without ``StartDate`` is *pending* (its start event has not happened);
  with one, it has started. What remains checkable from standard SEDA elements alone:

  - a rule id names one rule of the référentiel, whose start event is a dossier event: within
    one manifest (one dossier) the same ``AppraisalRule`` (or ``AccessRule``) id is either
    pending everywhere or starts on the same date everywhere;
  - a started rule's event has happened: its ``StartDate`` is not after the transfer ``Date``
    (one day of slack, since a date has no time zone and the message ``Date`` is UTC);
  - *tri* is ``FinalAction`` ``Keep`` with ``NeedAuthorization`` ``true``: ``NeedAuthorization``
    needs an ``AppraisalRule`` in the same ``Management`` whose ``FinalAction`` is ``Keep``;
  - the category keyword (``KeywordReference schemeID="archive-service:document-categories"``)
    has the unit's ``DocumentType`` as ``KeywordContent``, and ``StartDate`` ≤ ``EndDate``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from lxml import etree

from archive_service.core.seda.names import (
    ARCHIVAL_PROFILE_ID,
    CATEGORY_SCHEME,
    SEDA_NS,
    SedaVersion,
    ext,
)
from archive_service.core.seda.xmlsafe import element_path
from archive_service.errors import Issue

__all__ = ["consistency_issues", "requirement_issues"]

CODE = "seda-profile-invalid"

_Name = Callable[[str], str]

#: A ``StartDate`` is a calendar date of some time zone, the message ``Date`` an instant in UTC:
#: an event dated D may have happened when it is still D - 1 in UTC.
_SLACK = timedelta(days=1)


def _names(version: SedaVersion) -> _Name:
    namespace = SEDA_NS[version]

    def s(local: str) -> str:
        return f"{{{namespace}}}{local}"

    return s


def _where(element: etree._Element) -> str:
    return f"line {element.sourceline or '?'}: {element_path(element)}"


def _text(parent: etree._Element, path: str) -> str | None:
    child = parent.find(path)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def requirement_issues(tree: etree._ElementTree, version: SedaVersion) -> list[Issue]:
    """What an ``ArchiveTransfer`` of ours must contain, each missing piece named."""
    s = _names(version)
    root = tree.getroot()
    issues: list[Issue] = []

    def need(parent: etree._Element, path: str, what: str) -> etree._Element | None:
        found = parent.find(path)
        if found is None or (len(found) == 0 and not (found.text or "").strip()):
            issues.append(Issue(CODE, f"{what} is required", _where(parent)))
            return None
        return found

    if root.tag != s("ArchiveTransfer"):
        return [Issue(CODE, "the profile applies to ArchiveTransfer messages", _where(root))]
    need(root, s("Date"), "Date")
    need(root, s("MessageIdentifier"), "MessageIdentifier")
    need(root, s("CodeListVersions"), "CodeListVersions")
    need(root, f"{s('ArchivalAgency')}/{s('Identifier')}", "ArchivalAgency/Identifier")
    need(root, f"{s('TransferringAgency')}/{s('Identifier')}", "TransferringAgency/Identifier")
    package = need(root, s("DataObjectPackage"), "DataObjectPackage")
    if package is None:
        return issues
    profile = need(package, f"{s('ManagementMetadata')}/{s('ArchivalProfile')}", "ArchivalProfile")
    if profile is not None and (profile.text or "").strip() != ARCHIVAL_PROFILE_ID:
        issues.append(
            Issue(CODE, f"ArchivalProfile must be {ARCHIVAL_PROFILE_ID!r}", _where(profile))
        )

    for bdo in package.iter(s("BinaryDataObject")):
        need(bdo, s("Uri"), "Uri")
        digest = need(bdo, s("MessageDigest"), "MessageDigest (SHA-256)")
        if digest is not None and digest.get("algorithm") != "SHA-256":
            issues.append(Issue(CODE, "MessageDigest must be SHA-256", _where(digest)))
        other = bdo.find(s("OtherMetadata"))
        if bdo.find(s("Size")) is None and (other is None or other.find(ext("Size")) is None):
            issues.append(Issue(CODE, "Size is required", _where(bdo)))
        need(bdo, f"{s('FormatIdentification')}/{s('MimeType')}", "FormatIdentification/MimeType")
        need(bdo, f"{s('FileInfo')}/{s('Filename')}", "FileInfo/Filename")
        sha512 = [
            d
            for d in (other.iter(ext("MessageDigest")) if other is not None else ())
            if d.get("algorithm") == "SHA-512"
        ]
        if not sha512:
            issues.append(
                Issue(
                    CODE,
                    "OtherMetadata/ase:MessageDigest algorithm=SHA-512 is required",
                    _where(bdo),
                )
            )

    descriptive = need(package, s("DescriptiveMetadata"), "DescriptiveMetadata")
    if descriptive is None:
        return issues
    dossiers = descriptive.findall(s("ArchiveUnit"))
    if len(dossiers) != 1:
        issues.append(
            Issue(
                CODE, "exactly one root ArchiveUnit (the dossier) is required", _where(descriptive)
            )
        )
    for dossier in dossiers:
        need(
            dossier,
            f"{s('Content')}/{s('OriginatingAgency')}/{s('Identifier')}",
            "the dossier's Content/OriginatingAgency/Identifier",
        )
    for unit in descriptive.iter(s("ArchiveUnit")):
        if _text(unit, f"{s('Content')}/{s('DescriptionLevel')}") != "Item":
            continue
        need(
            unit, f"{s('Management')}/{s('AppraisalRule')}", "a document's Management/AppraisalRule"
        )
        if unit.find(s("DataObjectReference")) is None:
            issues.append(
                Issue(
                    CODE, "a document (Item) needs at least one DataObjectReference", _where(unit)
                )
            )
    return issues


def consistency_issues(tree: etree._ElementTree, version: SedaVersion) -> list[Issue]:
    """Co-constraints between elements that the RelaxNG grammar cannot express."""
    s = _names(version)
    root = tree.getroot()
    issues: list[Issue] = []

    seen: set[str] = set()
    for element in root.iter():
        element_id = element.get("id") if isinstance(element.tag, str) else None
        if element_id is None:
            continue
        if element_id in seen:
            issues.append(Issue(CODE, f"duplicate id {element_id!r}", _where(element)))
        seen.add(element_id)

    groups = {g.get("id") for g in root.iter(s("DataObjectGroup"))}
    referenced: set[str] = set()
    for ref in root.iter(s("DataObjectGroupReferenceId")):
        target = (ref.text or "").strip()
        referenced.add(target)
        if target not in groups:
            issues.append(
                Issue(CODE, f"reference to unknown DataObjectGroup {target!r}", _where(ref))
            )
    for group in root.iter(s("DataObjectGroup")):
        if group.get("id") not in referenced:
            issues.append(
                Issue(CODE, "data object group not referenced by any ArchiveUnit", _where(group))
            )

    transfer_day = _message_day(root, s)
    for kind in ("AppraisalRule", "AccessRule"):
        issues += _rule_starts(root, kind, transfer_day, s)
    for unit in root.iter(s("ArchiveUnit")):
        management = unit.find(s("Management"))
        if management is not None:
            issues += _need_authorization(management, s)
        content = unit.find(s("Content"))
        if content is not None:
            issues += _content(content, s)
    return issues


def _date(element: etree._Element | None) -> date | None:
    if element is None or element.text is None:
        return None
    try:
        return date.fromisoformat(element.text.strip())
    except ValueError:
        return None  # the grammar reports the bad value


def _message_day(root: etree._Element, s: _Name) -> date | None:
    """The UTC day of the message ``Date``, ``None`` when absent or unreadable."""
    text = _text(root, s("Date"))
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.astimezone(UTC).date() if when.tzinfo is not None else when.date()


def _rule_starts(
    root: etree._Element, kind: str, transfer_day: date | None, s: _Name
) -> list[Issue]:
    """Same rule id, same state; a started rule's event is not in the future."""
    issues: list[Issue] = []
    first: dict[str, tuple[date | None, etree._Element]] = {}
    for rule in root.iter(s(kind)):
        rule_id = _text(rule, s("Rule"))
        start_el = rule.find(s("StartDate"))
        start = _date(start_el)
        if start_el is not None and start is None:
            continue
        if start is not None and transfer_day is not None and start > transfer_day + _SLACK:
            message = (
                f"{kind} {rule_id!r} starts on {start.isoformat()}, after the transfer "
                f"({transfer_day.isoformat()}): a rule whose start event has not happened is "
                "pending and has no StartDate"
            )
            issues.append(Issue(CODE, message, _where(rule)))
        if not rule_id:
            continue
        seen = first.get(rule_id)
        if seen is None:
            first[rule_id] = (start, rule)
            continue
        if seen[0] != start:
            here = "is pending" if start is None else f"starts on {start.isoformat()}"
            there = "is pending" if seen[0] is None else f"starts on {seen[0].isoformat()}"
            message = (
                f"{kind} {rule_id!r} {here} here but {there} at {element_path(seen[1])}: "
                "one rule of the dossier has one start"
            )
            issues.append(Issue(CODE, message, _where(rule)))
    return issues


def _need_authorization(management: etree._Element, s: _Name) -> list[Issue]:
    """``NeedAuthorization`` is written for *tri* only: Keep, and an archivist reviews."""
    if _text(management, s("NeedAuthorization")) is None:
        return []
    appraisal = management.find(s("AppraisalRule"))
    if appraisal is None:
        message = "NeedAuthorization without an AppraisalRule to review"
        return [Issue(CODE, message, _where(management))]
    final = _text(appraisal, s("FinalAction"))
    if final != "Keep":
        message = (
            f"a unit to review (tri) is kept until reviewed: NeedAuthorization needs FinalAction "
            f"Keep, not {final!r}"
        )
        return [Issue(CODE, message, _where(appraisal))]
    return []


def _content(content: etree._Element, s: _Name) -> list[Issue]:
    issues: list[Issue] = []
    start = _date(content.find(s("StartDate")))
    end = _date(content.find(s("EndDate")))
    if start is not None and end is not None and end < start:
        message = f"EndDate {end.isoformat()} is before StartDate {start.isoformat()}"
        issues.append(Issue(CODE, message, _where(content)))
    document_type = _text(content, s("DocumentType"))
    for keyword in content.findall(s("Keyword")):
        reference = keyword.find(s("KeywordReference"))
        if reference is None or reference.get("schemeID") != CATEGORY_SCHEME:
            continue
        label = _text(keyword, s("KeywordContent"))
        if document_type is not None and label != document_type:
            message = (
                f"the category keyword's KeywordContent {label!r} differs from DocumentType "
                f"{document_type!r}"
            )
            issues.append(Issue(CODE, message, _where(keyword)))
    return issues
