"""Foreign SEDA transfers (SIP zips, as ReSIP, Pastell or Vitam build them): check, then stage.

A transfer zip holds a SEDA 2.2 or 2.3 ``ArchiveTransfer`` manifest and the files it declares.
Work happens in three steps, the first two before any byte reaches the caller's sink:

1. :func:`open_sip` inspects the central directory (:mod:`archive_service.core.zipsafe`):
   traversal, absolute names, symlinks, duplicates, encryption, unsupported compression, bombs.
   These are refusals at the door (:class:`~archive_service.errors.UnsafeArchive`,
   :class:`~archive_service.errors.ArchiveTooLarge`).
2. :meth:`SipReader.check` finds the manifest (``manifest.xml`` at the root, as Vitam, ReSIP and
   Pastell write it, otherwise the only ``*.xml`` at the root), validates it against the official
   XSD of *its own* version (the root namespace), maps every ``BinaryDataObject`` to a zip entry
   (``Uri``, else an inline ``Attachment``, else a unique ``FileInfo/Filename``), then reads every
   entry once within the zip limits and checks each declared ``MessageDigest`` (MD5, SHA-1,
   SHA-224, SHA-256, SHA-384, SHA-512; hex or base64) and ``Size``, computing our SHA-256 and
   SHA-512 on the way. Content problems are collected, each with its element and line, into a
   :class:`SipCheck`: a KO reply, not an exception.
3. :meth:`SipReader.stage` streams each declared file to the caller's sink, only for an accepted
   check; every limit is enforced again and the bytes must hash to what step 2 found.

The parsed model (:class:`ForeignTransfer`) keeps the sender's ``ArchiveUnit`` graph (nested
units and ``ArchiveUnitRefId`` links), each unit's ``Content`` and ``Management`` as canonical XML
(C14N 2.0 with comments: the subtree as the sender wrote it, in-scope namespaces
declared on it), the rules read from ``Management``, the package ``ManagementMetadata``, and each
object's own XML; ours are added beside them (fingerprints; formats are filled in by the
service). The manifest bytes themselves are kept untouched in :attr:`ForeignTransfer.manifest`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import BinaryIO, Protocol
from urllib.parse import unquote

from lxml import etree

from archive_service.core.fingerprint import MultiHasher
from archive_service.core.model import FileFingerprints, FormatInfo
from archive_service.core.seda.names import SEDA_NS, SedaVersion
from archive_service.core.seda.validate import SedaValidator
from archive_service.core.seda.xmlsafe import element_path, parse_untrusted, seda_version_of
from archive_service.core.zipsafe import (
    ZipBudget,
    ZipEntry,
    ZipInventory,
    ZipLimits,
    entry_key,
    inspect_zip,
    read_entry,
)
from archive_service.errors import (
    ArchiveTooLarge,
    FingerprintMismatch,
    Issue,
    SedaInvalid,
)

__all__ = [
    "DIGEST_ALGORITHMS",
    "ForeignTransfer",
    "ObjectSink",
    "SipCheck",
    "SipChild",
    "SipInheritance",
    "SipObject",
    "SipReader",
    "SipRule",
    "SipUnit",
    "open_sip",
    "read_sip",
]

#: SEDA ``MessageDigestAlgorithmCodeList`` spellings → hashlib names.
DIGEST_ALGORITHMS = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}

MANIFEST_NAME = "manifest.xml"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_RULE_CATEGORIES = (
    "StorageRule",
    "AppraisalRule",
    "AccessRule",
    "DisseminationRule",
    "ReuseRule",
    "ClassificationRule",
    "HoldRule",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SipObject:
    """One ``BinaryDataObject`` of the transfer, as declared, and what we found."""

    id: str
    group_id: str | None
    line: int
    location: str
    uri: str | None
    entry: str | None
    """The zip entry holding the bytes; ``None`` for an inline ``Attachment``."""
    algorithm: str
    digest: str
    """Declared digest, as lowercase hex."""
    declared_size: int | None
    filename: str | None
    mime: str | None
    puid: str | None
    format_name: str | None
    data_object_version: str | None
    xml: bytes
    """The sender's ``BinaryDataObject`` element, canonical (C14N with comments)."""
    fingerprints: FileFingerprints | None = None
    """Ours (SHA-256, SHA-512, size), once the bytes were read and matched the declaration."""
    format: FormatInfo | None = None
    """Ours, filled in by the service's format identification."""
    attachment: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SipRule:
    """One ``Rule`` of a ``Management`` rule block, with its start date and the block's fate."""

    category: str
    rule_id: str
    start_date: str | None
    final_action: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SipInheritance:
    """How a ``Management`` rule block of one category limits what the unit inherits: SEDA
    ``PreventInheritance`` (nothing of that category comes from the parents) and
    ``RefNonRuleId`` (those inherited rule ids stop applying here)."""

    category: str
    prevent_inheritance: bool
    ref_non_rule_ids: tuple[str, ...]
    final_action: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SipChild:
    """A child link: ``target`` is the child unit's id; ``placeholder`` the id of the
    ``ArchiveUnit`` that held an ``ArchiveUnitRefId`` to it (``None`` when nested)."""

    target: str
    placeholder: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUnit:
    """One described ``ArchiveUnit`` of the sender, kept whole."""

    id: str
    line: int
    title: str | None
    level: str | None
    content_xml: bytes | None
    management_xml: bytes | None
    rules: tuple[SipRule, ...]
    group_refs: tuple[str, ...]
    object_refs: tuple[str, ...]
    children: tuple[SipChild, ...]
    xml: bytes
    """The whole ``ArchiveUnit`` element as the sender wrote it (canonical)."""
    system_id: str | None = None
    """``Content/SystemId``: the id an archive gave this unit, i.e. a unit already archived
    that this transfer adds to (the way the official 2.2/2.3 XSDs allow naming one; their
    ``OtherManagementAbstract`` has no ``UpdateOperation`` without Vitam's extension)."""
    inheritance: tuple[SipInheritance, ...] = ()
    """Rule blocks that declare ``PreventInheritance`` or ``RefNonRuleId``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignTransfer:
    """A checked foreign ``ArchiveTransfer``: the sender's description plus our findings."""

    version: SedaVersion
    manifest_name: str
    manifest: bytes
    message_identifier: str
    date: str | None
    comment: str | None
    archival_agreement: str | None
    archival_agency: str | None
    transferring_agency: str | None
    originating_agency: str | None
    submission_agency: str | None
    management_metadata_xml: bytes | None
    objects: tuple[SipObject, ...]
    units: tuple[SipUnit, ...]
    roots: tuple[str, ...]

    def unit(self, unit_id: str) -> SipUnit:
        for unit in self.units:
            if unit.id == unit_id:
                return unit
        raise KeyError(unit_id)

    def object(self, object_id: str) -> SipObject:
        for obj in self.objects:
            if obj.id == object_id:
                return obj
        raise KeyError(object_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class SipCheck:
    """Outcome of :meth:`SipReader.check`: the parsed transfer and every reason to refuse it."""

    issues: tuple[Issue, ...]
    transfer: ForeignTransfer | None
    message_identifier: str | None = None
    version: SedaVersion | None = None

    @property
    def accepted(self) -> bool:
        return not self.issues and self.transfer is not None


class ObjectSink(Protocol):
    """Receives one object's bytes; must consume ``chunks`` to its end (or let it raise)."""

    def __call__(self, obj: SipObject, chunks: Iterator[bytes]) -> None: ...


def open_sip(file: BinaryIO, limits: ZipLimits) -> SipReader:
    """Inspect the zip in ``file`` (seekable); ``UnsafeArchive``/``ArchiveTooLarge`` on refusal."""
    archive, inventory = inspect_zip(file, limits)
    return SipReader(archive, inventory, limits)


def read_sip(
    file: BinaryIO, *, validator: SedaValidator, limits: ZipLimits, sink: ObjectSink
) -> SipCheck:
    """Inspect, check and, when accepted, stage every object to ``sink``."""
    with open_sip(file, limits) as reader:
        check = reader.check(validator)
        if check.accepted:
            reader.stage(check, sink)
        return check


class SipReader:
    """An inspected transfer zip; :meth:`check` then :meth:`stage`."""

    def __init__(self, archive: zipfile.ZipFile, inventory: ZipInventory, limits: ZipLimits):
        self._archive = archive
        self.inventory = inventory
        self._limits = limits

    def __enter__(self) -> SipReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._archive.close()

    # -- step 2: check ------------------------------------------------------------------------

    def check(self, validator: SedaValidator) -> SipCheck:
        """Validate the manifest and every declared object; nothing is written anywhere."""
        budget = ZipBudget(self._limits)
        manifest_entry = self._manifest_entry()
        if isinstance(manifest_entry, Issue):
            return SipCheck(issues=(manifest_entry,), transfer=None)
        if manifest_entry.size > self._limits.max_manifest_size:
            issue = Issue(
                "sip-manifest-too-large",
                f"the manifest declares {manifest_entry.size} bytes, "
                f"at most {self._limits.max_manifest_size} allowed",
                f"zip entry {manifest_entry.name!r}",
            )
            raise ArchiveTooLarge("the transfer manifest is too large", issues=[issue])
        manifest = b"".join(read_entry(self._archive, manifest_entry, budget))
        try:
            tree = parse_untrusted(manifest)
            version = seda_version_of(tree)
        except SedaInvalid as exc:
            return SipCheck(issues=exc.issues, transfer=None)
        issues: list[Issue] = []
        try:
            validator.validate(manifest, version=version, profile=False)
        except SedaInvalid as exc:
            issues += exc.issues
        root = tree.getroot()
        message_id = _text(root, _s(version, "MessageIdentifier"))
        if root.tag != _s(version, "ArchiveTransfer"):
            issues.append(
                Issue(
                    "sip-not-a-transfer",
                    f"the manifest is a {etree.QName(root).localname}, not an ArchiveTransfer",
                    f"line {root.sourceline or 1}: {element_path(root)}",
                )
            )
            return SipCheck(issues=tuple(issues), transfer=None, version=version)
        objects, object_issues = _objects(root, version, self.inventory, manifest_entry)
        issues += object_issues
        units, roots, unit_issues = _units(root, version)
        issues += unit_issues
        checked: list[SipObject] = []
        for obj in objects:
            found, problem = self._verify(obj, budget)
            checked.append(found)
            if problem is not None:
                issues.append(problem)
        transfer = ForeignTransfer(
            version=version,
            manifest_name=manifest_entry.name,
            manifest=manifest,
            message_identifier=message_id or "",
            date=_text(root, _s(version, "Date")),
            comment=_text(root, _s(version, "Comment")),
            archival_agreement=_text(root, _s(version, "ArchivalAgreement")),
            archival_agency=_text(
                root, f"{_s(version, 'ArchivalAgency')}/{_s(version, 'Identifier')}"
            ),
            transferring_agency=_text(
                root, f"{_s(version, 'TransferringAgency')}/{_s(version, 'Identifier')}"
            ),
            originating_agency=_text(
                root,
                _path(
                    version,
                    "DataObjectPackage",
                    "ManagementMetadata",
                    "OriginatingAgencyIdentifier",
                ),
            ),
            submission_agency=_text(
                root,
                _path(
                    version, "DataObjectPackage", "ManagementMetadata", "SubmissionAgencyIdentifier"
                ),
            ),
            management_metadata_xml=_c14n(
                root.find(_path(version, "DataObjectPackage", "ManagementMetadata"))
            ),
            objects=tuple(checked),
            units=units,
            roots=roots,
        )
        return SipCheck(
            issues=tuple(dict.fromkeys(issues)),
            transfer=transfer,
            message_identifier=message_id,
            version=version,
        )

    def _manifest_entry(self) -> ZipEntry | Issue:
        root_entries = [e for e in self.inventory.entries if "/" not in e.name]
        for entry in root_entries:
            if entry.name == MANIFEST_NAME:
                return entry
        xml = [e for e in root_entries if e.key.endswith(".xml")]
        if len(xml) == 1:
            return xml[0]
        found = ", ".join(repr(e.name) for e in xml) or "none"
        return Issue(
            "sip-manifest-missing",
            f"no {MANIFEST_NAME} at the root of the zip, and not exactly one *.xml there "
            f"(found: {found})",
            "zip",
        )

    def _chunks(self, obj: SipObject, budget: ZipBudget) -> Iterator[bytes]:
        if obj.attachment is not None:
            yield obj.attachment
            return
        assert obj.entry is not None
        entry = self.inventory.by_key()[entry_key(obj.entry)]
        yield from read_entry(self._archive, entry, budget)

    def _verify(self, obj: SipObject, budget: ZipBudget) -> tuple[SipObject, Issue | None]:
        if obj.entry is None and obj.attachment is None:
            return obj, None
        where = obj.location
        declared = hashlib.new(DIGEST_ALGORITHMS[obj.algorithm])
        ours = MultiHasher()
        for chunk in self._chunks(obj, budget):
            declared.update(chunk)
            ours.update(chunk)
        found = ours.result()
        obj = replace(obj, fingerprints=found)
        if declared.hexdigest() != obj.digest:
            return obj, Issue(
                "sip-digest-mismatch",
                f"MessageDigest ({obj.algorithm}) is {obj.digest}, the file "
                f"{obj.entry or 'Attachment'!r} hashes to {declared.hexdigest()}",
                where,
            )
        if obj.declared_size is not None and obj.declared_size != found.size:
            return obj, Issue(
                "sip-size-mismatch",
                f"Size is {obj.declared_size}, the file holds {found.size} bytes",
                where,
            )
        return obj, None

    # -- step 3: stage ------------------------------------------------------------------------

    def stage(self, check: SipCheck, sink: ObjectSink) -> None:
        """Stream each object of an accepted ``check`` to ``sink``, limits enforced again."""
        if not check.accepted or check.transfer is None:
            msg = "only an accepted transfer is staged"
            raise ValueError(msg)
        budget = ZipBudget(self._limits)
        for obj in check.transfer.objects:
            if obj.entry is None and obj.attachment is None:
                continue
            sink(obj, self._verified(obj, budget))

    def _verified(self, obj: SipObject, budget: ZipBudget) -> Iterator[bytes]:
        hasher = MultiHasher()
        for chunk in self._chunks(obj, budget):
            hasher.update(chunk)
            yield chunk
        if hasher.result() != obj.fingerprints:
            msg = f"object {obj.id} changed between check and staging"
            raise FingerprintMismatch(msg)


# -- manifest reading -------------------------------------------------------------------------


def _s(version: SedaVersion, local: str) -> str:
    return f"{{{SEDA_NS[version]}}}{local}"


def _path(version: SedaVersion, *locals_: str) -> str:
    return "/".join(_s(version, local) for local in locals_)


def _text(parent: etree._Element, path: str) -> str | None:
    element = parent.find(path)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _c14n(element: etree._Element | None) -> bytes | None:
    """Canonical XML 2.0 (with comments) of ``element`` as a document of its own.

    The element is copied first: its in-scope namespaces travel with it. (libxml2's C14N 1.0
    on a subtree emits spurious ``xmlns=""`` under nested default namespaces, and lxml's
    C14N 2.0 refuses a subtree whose namespace is declared on an ancestor.)
    """
    if element is None:
        return None
    return etree.tostring(copy.deepcopy(element), method="c14n2", with_comments=True)


def _line(element: etree._Element) -> int:
    line = element.sourceline
    return line if isinstance(line, int) else 0


def _where(element: etree._Element) -> str:
    return f"line {element.sourceline or '?'}: {element_path(element)}"


def _digest_hex(value: str, hex_length: int) -> str | None:
    candidate = "".join(value.split())
    if len(candidate) == hex_length and re.fullmatch(r"[0-9A-Fa-f]+", candidate):
        return candidate.lower()
    try:
        raw = base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) * 2 == hex_length else None


def _objects(
    root: etree._Element, version: SedaVersion, inventory: ZipInventory, manifest: ZipEntry
) -> tuple[list[SipObject], list[Issue]]:
    issues: list[Issue] = []
    objects: list[SipObject] = []
    by_key = inventory.by_key()
    claimed: dict[str, str] = {manifest.key: "the manifest"}
    package = root.find(_s(version, "DataObjectPackage"))
    bdos = list(package.iter(_s(version, "BinaryDataObject"))) if package is not None else []
    for bdo in bdos:
        obj = _object(bdo, version, issues)
        if obj is None:
            continue
        if obj.uri is not None:
            entry = _entry_for_uri(obj.uri, by_key)
            if entry is None:
                issues.append(
                    Issue(
                        "sip-object-missing",
                        f"Uri {obj.uri!r} names no file of the zip",
                        obj.location,
                    )
                )
                continue
            obj = replace(obj, entry=entry.name)
        if obj.entry is not None:
            owner = claimed.get(entry_key(obj.entry))
            if owner is not None:
                issues.append(
                    Issue(
                        "sip-object-shared",
                        f"file {obj.entry!r} is already claimed by {owner}",
                        obj.location,
                    )
                )
                continue
            claimed[entry_key(obj.entry)] = f"BinaryDataObject {obj.id}"
        objects.append(obj)
    for position, obj in enumerate(objects):
        if obj.entry is not None or obj.attachment is not None:
            continue
        matches = [
            e
            for e in inventory.entries
            if e.key not in claimed
            and obj.filename is not None
            and e.key.rsplit("/", 1)[-1] == entry_key(obj.filename)
        ]
        if len(matches) != 1:
            issues.append(
                Issue(
                    "sip-object-missing",
                    "no Uri nor Attachment, and FileInfo/Filename "
                    f"{obj.filename!r} matches {len(matches)} unclaimed file(s) of the zip",
                    obj.location,
                )
            )
            continue
        claimed[matches[0].key] = f"BinaryDataObject {obj.id}"
        objects[position] = replace(obj, entry=matches[0].name)
    for entry in inventory.entries:
        if entry.key not in claimed:
            issues.append(
                Issue(
                    "sip-undeclared-file",
                    "the zip holds a file that no BinaryDataObject declares",
                    f"zip entry {entry.name!r}",
                )
            )
    kept = [o for o in objects if o.entry is not None or o.attachment is not None]
    return kept, issues


def _entry_for_uri(uri: str, by_key: dict[str, ZipEntry]) -> ZipEntry | None:
    if _SCHEME.match(uri) or uri.startswith("/"):
        return None
    for candidate in (uri, unquote(uri)):
        candidate = candidate.removeprefix("./")
        if ".." in candidate.split("/") or "\\" in candidate:
            return None
        found = by_key.get(entry_key(candidate))
        if found is not None:
            return found
    return None


def _object(bdo: etree._Element, version: SedaVersion, issues: list[Issue]) -> SipObject | None:
    where = _where(bdo)
    object_id = bdo.get("id") or ""
    digest_el = bdo.find(_s(version, "MessageDigest"))
    if digest_el is None or not (digest_el.text or "").strip():
        issues.append(Issue("sip-digest-missing", "BinaryDataObject without MessageDigest", where))
        return None
    algorithm = (digest_el.get("algorithm") or "").strip().upper()
    hash_name = DIGEST_ALGORITHMS.get(algorithm)
    if hash_name is None:
        issues.append(
            Issue(
                "sip-digest-algorithm",
                f"MessageDigest algorithm {digest_el.get('algorithm')!r} is not supported "
                f"({', '.join(DIGEST_ALGORITHMS)})",
                _where(digest_el),
            )
        )
        return None
    digest = _digest_hex(digest_el.text or "", hashlib.new(hash_name).digest_size * 2)
    if digest is None:
        issues.append(
            Issue(
                "sip-digest-malformed",
                f"MessageDigest is neither hex nor base64 of a {algorithm} digest",
                _where(digest_el),
            )
        )
        return None
    attachment_el = bdo.find(_s(version, "Attachment"))
    attachment: bytes | None = None
    if attachment_el is not None:
        try:
            attachment = base64.b64decode(
                "".join((attachment_el.text or "").split()), validate=True
            )
        except (binascii.Error, ValueError):
            issues.append(
                Issue("sip-attachment-malformed", "Attachment is not base64", _where(attachment_el))
            )
            return None
    size_text = _text(bdo, _s(version, "Size"))
    parent = bdo.getparent()
    group_id = (
        parent.get("id")
        if parent is not None and parent.tag == _s(version, "DataObjectGroup")
        else _text(bdo, _s(version, "DataObjectGroupId"))
        or _text(bdo, _s(version, "DataObjectGroupReferenceId"))
    )
    fmt = _s(version, "FormatIdentification")
    uri = _text(bdo, _s(version, "Uri"))
    return SipObject(
        id=object_id,
        group_id=group_id,
        line=_line(bdo),
        location=where,
        uri=uri if attachment is None else None,
        entry=None,
        algorithm=algorithm,
        digest=digest,
        declared_size=int(size_text) if size_text and size_text.isdigit() else None,
        filename=_text(bdo, f"{_s(version, 'FileInfo')}/{_s(version, 'Filename')}")
        or (attachment_el.get("filename") if attachment_el is not None else None),
        mime=_text(bdo, f"{fmt}/{_s(version, 'MimeType')}"),
        puid=_text(bdo, f"{fmt}/{_s(version, 'FormatId')}"),
        format_name=_text(bdo, f"{fmt}/{_s(version, 'FormatLitteral')}"),
        data_object_version=_text(bdo, _s(version, "DataObjectVersion")),
        xml=_c14n(bdo) or b"",
        attachment=attachment,
    )


def _units(
    root: etree._Element, version: SedaVersion
) -> tuple[tuple[SipUnit, ...], tuple[str, ...], list[Issue]]:
    issues: list[Issue] = []
    s: Callable[[str], str] = lambda local: _s(version, local)  # noqa: E731
    descriptive = root.find(_path(version, "DataObjectPackage", "DescriptiveMetadata"))
    if descriptive is None:
        return (), (), issues
    units: dict[str, SipUnit] = {}
    placeholders: dict[str, tuple[str, etree._Element]] = {}
    nested: set[str] = set()

    def visit(element: etree._Element) -> None:
        unit_id = element.get("id") or f"line-{element.sourceline}"
        ref = _text(element, s("ArchiveUnitRefId"))
        if ref is not None:
            placeholders[unit_id] = (ref, element)
            return
        children: list[SipChild] = []
        for child in element.findall(s("ArchiveUnit")):
            visit(child)
            child_id = child.get("id") or f"line-{child.sourceline}"
            if child_id in placeholders:
                children.append(SipChild(target=placeholders[child_id][0], placeholder=child_id))
            else:
                children.append(SipChild(target=child_id))
                nested.add(child_id)
        content = element.find(s("Content"))
        management = element.find(s("Management"))
        refs = element.findall(s("DataObjectReference"))
        units[unit_id] = SipUnit(
            id=unit_id,
            line=_line(element),
            title=_text(content, s("Title")) if content is not None else None,
            level=_text(content, s("DescriptionLevel")) if content is not None else None,
            content_xml=_c14n(content),
            management_xml=_c14n(management),
            rules=_rules(management, version),
            group_refs=tuple(
                t for r in refs if (t := _text(r, s("DataObjectGroupReferenceId"))) is not None
            ),
            object_refs=tuple(
                t for r in refs if (t := _text(r, s("DataObjectReferenceId"))) is not None
            ),
            children=tuple(children),
            xml=_c14n(element) or b"",
            system_id=_text(content, s("SystemId")) if content is not None else None,
            inheritance=_inheritance(management, version),
        )

    top = descriptive.findall(s("ArchiveUnit"))
    for element in top:
        visit(element)
    referenced = {target for target, _ in placeholders.values()}
    for placeholder, (target, element) in placeholders.items():
        if target not in units:
            issues.append(
                Issue(
                    "sip-unit-ref-unknown",
                    f"ArchiveUnitRefId {target!r} names no described ArchiveUnit "
                    f"(from {placeholder})",
                    _where(element),
                )
            )
    roots = tuple(
        uid
        for element in top
        if (uid := element.get("id") or f"line-{element.sourceline}") in units
        and uid not in referenced
        and uid not in nested
    )
    issues += _cycles(units, roots)
    return tuple(units.values()), roots, issues


def _cycles(units: dict[str, SipUnit], roots: tuple[str, ...]) -> list[Issue]:
    """Units unreachable from a root (a reference cycle) are refused: no tree holds them."""
    reached: set[str] = set()
    stack = list(roots)
    while stack:
        uid = stack.pop()
        if uid in reached or uid not in units:
            continue
        reached.add(uid)
        stack.extend(child.target for child in units[uid].children)
    return [
        Issue(
            "sip-unit-cycle",
            f"ArchiveUnit {uid} is not reachable from any root (ArchiveUnitRefId cycle)",
            f"line {unit.line}",
        )
        for uid, unit in units.items()
        if uid not in reached
    ]


def _rules(management: etree._Element | None, version: SedaVersion) -> tuple[SipRule, ...]:
    if management is None:
        return ()
    out: list[SipRule] = []
    for category in _RULE_CATEGORIES:
        for block in management.findall(_s(version, category)):
            final_action = _text(block, _s(version, "FinalAction"))
            current: str | None = None
            start: str | None = None
            for child in block:
                if not isinstance(child.tag, str):
                    continue
                local = etree.QName(child).localname
                if local == "Rule":
                    if current is not None:
                        out.append(
                            SipRule(
                                category=category,
                                rule_id=current,
                                start_date=start,
                                final_action=final_action,
                            )
                        )
                    current, start = (child.text or "").strip(), None
                elif local == "StartDate" and current is not None:
                    start = (child.text or "").strip() or None
            if current is not None:
                out.append(
                    SipRule(
                        category=category,
                        rule_id=current,
                        start_date=start,
                        final_action=final_action,
                    )
                )
    return tuple(out)


def _inheritance(
    management: etree._Element | None, version: SedaVersion
) -> tuple[SipInheritance, ...]:
    if management is None:
        return ()
    out: list[SipInheritance] = []
    for category in _RULE_CATEGORIES:
        for block in management.findall(_s(version, category)):
            prevent = (_text(block, _s(version, "PreventInheritance")) or "").lower()
            refused = tuple(
                (e.text or "").strip()
                for e in block.findall(_s(version, "RefNonRuleId"))
                if (e.text or "").strip()
            )
            if prevent in ("true", "1") or refused:
                out.append(
                    SipInheritance(
                        category=category,
                        prevent_inheritance=prevent in ("true", "1"),
                        ref_non_rule_ids=refused,
                        final_action=_text(block, _s(version, "FinalAction")),
                    )
                )
    return tuple(out)
