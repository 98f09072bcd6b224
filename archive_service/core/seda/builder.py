"""Render a SEDA 2.3 (or 2.2) ``ArchiveTransfer`` manifest from a :class:`TransferManifestInput`.

The output validates against the **bare official XSD** of its version (``seda-<v>-main.xsd``,
unmodified, with no schema of ours), then against our procurement profile
(``seda_schemas/procurement-profile-<v>.rng`` and :mod:`~archive_service.core.seda.profile_rules`).

The builder is pure and byte-stable: everything in the output comes from the input (no
generated identifier, no clock), namespace prefixes are fixed (SEDA as the default namespace,
``ase`` for ``urn:archive-service:seda-ext:1``), the output is UTF-8 with an XML declaration,
and every list has a defined order. Data objects are sorted by id and events by date then
name, so an input assembled from a dict in another order gives the same bytes. The
archive-unit tree, keywords, originating system ids and object references keep the order of the
input, which carries meaning (phases, main file first).

Element order follows the XSD sequences (``seda-2.3-main.xsd`` ``ArchiveTransferType``,
``DataObjectPackageType``; ``seda-2.3-technical.xsd`` ``BinaryDataObjectType``;
``seda-2.3-management.xsd`` ``ManagementGroup``; ``seda-2.3-ontology.xsd`` ``BaseObjectGroup``).
2.2 differs only in the namespace: we emit none of the 2.3-only elements
(``DataObjectUse``, ``DataObjectNumber``, ``PersistentIdentifier``, ``SigningInformation``).

**Our own elements** (namespace ``ase``) appear only in ``BinaryDataObject/OtherMetadata``, whose
type is an ``OpenType`` (``xs:any namespace="##other" processContents="lax"``), so the official
XSD accepts them as they are: ``ase:MessageDigest algorithm="SHA-512"`` (the SEDA
``MessageDigest`` carries the SHA-256), ``ase:OriginalPath`` (the path the sender gave),
``ase:Size`` ``0`` for an empty file (SEDA ``Size`` is a ``positiveInteger``, so it is left
out), ``ase:FormatIdentificationBasis`` and ``ase:DeclaredMimeType mismatch="true|false"`` (the
sender's declared type, recorded even when it disagrees with the identified ``MimeType``).
``Content`` has no such wildcard (its only extension point is the abstract
``ObjectGroupExtenstionAbstract``, which needs a schema of ours), so archive units use standard
SEDA elements only:

* **document category**: ``DocumentType`` = the French label, and a ``Keyword`` with
  ``KeywordType`` ``genreform`` ("type de document" in SEDA's ``CodeKeywordType``),
  ``KeywordContent`` = the label (the code when there is no label) and ``KeywordReference
  schemeID="archive-service:document-categories"`` = the category code
  (``offres.non_retenue``). It comes before the input's own keywords.
* **rules** (``Management``): ``AppraisalRule`` = ``Rule``, ``StartDate`` when known,
  ``FinalAction``; ``AccessRule`` = ``Rule``, ``StartDate`` when known. A *pending* rule has no
  ``StartDate``: in SEDA, no date means no computable end (and, for access, "restricted"). The
  rule ids are those of our retention référentiel, named by
  ``CodeListVersions/AppraisalRuleCodeListVersion`` and ``AccessRuleCodeListVersion``
  (:data:`~archive_service.core.seda.names.REFERENTIAL_CODE_LIST` or ``rule_code_list``): the
  référentiel gives each rule's duration, start event(s), label and legal basis, so the end
  date and the awaited event follow from ``Rule``, ``StartDate`` and the dossier's events.
* **tri** (``review``): ``FinalAction`` as given (Keep) plus ``Management/NeedAuthorization``
  ``true`` ("a human authorisation is needed for management operations"), which the XSD places
  after ``AccessRule`` in ``ManagementGroup``.
* **freely communicable**: an ``AccessRule`` of 0 years without a start date that awaits no
  event (``start_event`` ``none``) gets the transfer date as ``StartDate``, since SEDA reads a
  missing date as "restricted". A 0-year rule that still awaits its event (e.g. communicable
  after the signature) is pending like any other: no ``StartDate``, so restricted until then.
* **dates**: ``Description.start_date`` / ``end_date`` as ``Content/StartDate`` / ``EndDate``.

``Description.extension`` pairs are rendered only where SEDA has an obvious element:

* ``event_<name>`` (an ISO date): ``Content/Event`` with ``EventTypeCode`` ``<name>`` and
  ``EventDateTime`` the date (SEDA: "un événement survenu au cours d'une procédure, ex.
  publication d'un marché, notification d'un marché"), sorted by date then name;
* ``contract_number``: ``OriginatingAgencyArchiveUnitIdentifier`` (the producer's business
  identifier of the unit).

Every other pair is **dropped** from the manifest, because Content cannot carry it without a
schema of ours and the information is kept elsewhere or derivable (names as written by
:func:`archive_service.core.procurement.build_dossier_tree`):

* ``decp_*`` (id, nature, procedure, montant, dateNotification, codeCPV): archived losslessly
  in the package as its own DECP 2.0.3 document ``donnees-essentielles/decp.json`` (category
  ``donnees.decp``); the marché id and the CPV code are also an ``OriginatingSystemId`` and a
  ``subject`` keyword;
* ``consultation_number``: already an ``OriginatingSystemId`` of the dossier;
* ``category`` and ``source_path`` (documents): the category keyword above, and
  ``OtherMetadata/ase:OriginalPath`` of the document's object;
* ``phase`` (phase units): the prefix of the category codes of the phase's documents;
* ``contract_type``, ``procedure_type``, ``infructueux``, ``sans_suite``, ``recurrent``: no
  SEDA element. They stay in the database's unit records (``content.extension``) but are **not**
  in the package unless the ingest metadata is archived as a document too.

The rules' labels, durations and start events are not written either: they are the
référentiel's, named by the rule id.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final

from lxml import etree

from archive_service.core.model import (
    AccessRule,
    AppraisalRule,
    ArchiveUnitNode,
    DataObject,
    Description,
    TransferManifestInput,
)
from archive_service.core.seda.names import (
    ARCHIVAL_PROFILE_ID,
    CATEGORY_SCHEME,
    DATA_OBJECT_VERSION,
    EXT_NS,
    EXT_PREFIX,
    REFERENTIAL_CODE_LIST,
    SEDA_NS,
    SedaVersion,
    ext,
    nsmap,
    seda,
    transfer_code_lists,
)

__all__ = [
    "EVENT_FIELD_PREFIX",
    "IDENTIFIER_FIELDS",
    "build_archive_transfer",
    "group_id",
    "xml_datetime",
]

#: ``Description.extension`` names rendered as ``Content/Event`` (``event_notification`` …).
EVENT_FIELD_PREFIX: Final = "event_"

#: ``Description.extension`` names rendered as ``Content/OriginatingAgencyArchiveUnitIdentifier``.
IDENTIFIER_FIELDS: Final = frozenset({"contract_number"})


def group_id(object_id: str) -> str:
    """The ``DataObjectGroup`` id holding the object ``object_id`` (one group per object)."""
    return f"og-{object_id}"


def xml_datetime(value: datetime) -> str:
    """``xsd:dateTime`` in UTC with a ``Z``; microseconds only when there are some."""
    utc = value.astimezone(UTC)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def build_archive_transfer(
    manifest: TransferManifestInput,
    *,
    version: SedaVersion = "2.3",
    rule_code_list: str | None = None,
    existing_ids: frozenset[str] = frozenset(),
) -> bytes:
    """The SEDA ``ArchiveTransfer`` for ``manifest``, as UTF-8 bytes (byte-stable).

    ``existing_ids``: units of ``manifest.root`` archived by an earlier package (a dossier
    that grows: its root, an existing phase). Each is written as a *reference*: ``Content``
    with ``DescriptionLevel``, ``Title``, ``SystemId`` (the id this archive gave it) and, for
    the root, ``OriginatingAgency``; no ``Management`` (its rules are in its own package).
    The official 2.2/2.3 XSDs have no ``UpdateOperation`` element: Vitam's
    ``Management/UpdateOperation/SystemId`` is a substitute of the abstract
    ``OtherManagementAbstract`` declared only in Vitam's extension schema, so a manifest that
    must validate against the bare official XSD names the unit by ``Content/SystemId``
    (``IdentifierGroup``: "identifiant attribué par le SAE"), which both versions define.

    ``rule_code_list`` names the code list of the rule ids (``AppraisalRuleCodeListVersion``,
    ``AccessRuleCodeListVersion``); default :data:`~archive_service.core.seda.names.
    REFERENTIAL_CODE_LIST`. A caller that knows the référentiel's version may name it here.

    ``ValueError`` for an unknown version, text XML cannot hold, or an ``event_*`` extension
    value that is not an ISO date.
    """
    if version not in SEDA_NS:
        msg = f"unsupported SEDA version {version!r}"
        raise ValueError(msg)
    code_list = REFERENTIAL_CODE_LIST if rule_code_list is None else rule_code_list
    if not code_list.strip():
        msg = "rule_code_list must not be empty"
        raise ValueError(msg)
    return _TransferWriter(version, manifest, code_list, existing_ids).render()


class _TransferWriter:
    def __init__(
        self,
        version: SedaVersion,
        manifest: TransferManifestInput,
        rule_code_list: str,
        existing_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.version: SedaVersion = version
        self.manifest = manifest
        self.rule_code_list = rule_code_list
        self.existing_ids = existing_ids

    def el(self, parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
        child = etree.SubElement(parent, seda(self.version, local))
        if text is not None:
            _set_text(child, text, local)
        return child

    def render(self) -> bytes:
        m = self.manifest
        root = etree.Element(
            seda(self.version, "ArchiveTransfer"),
            nsmap=nsmap({None: SEDA_NS[self.version], EXT_PREFIX: EXT_NS}),
        )
        if m.comment is not None:
            self.el(root, "Comment", m.comment)
        self.el(root, "Date", xml_datetime(m.date))
        self.el(root, "MessageIdentifier", m.message_identifier)
        if m.archival_agreement is not None:
            self.el(root, "ArchivalAgreement", m.archival_agreement)
        code_lists = self.el(root, "CodeListVersions")
        for name, value in transfer_code_lists(self.rule_code_list):
            self.el(code_lists, name, value)
        package = self.el(root, "DataObjectPackage")
        for obj in sorted(m.objects, key=lambda o: o.id):
            self.data_object_group(package, obj)
        descriptive = self.el(package, "DescriptiveMetadata")
        self.archive_unit(descriptive, m.root, is_root=True)
        management = self.el(package, "ManagementMetadata")
        self.el(management, "ArchivalProfile", ARCHIVAL_PROFILE_ID)
        if m.originating_agency is not None:
            self.el(management, "OriginatingAgencyIdentifier", m.originating_agency)
        self.organization(root, "ArchivalAgency", m.archival_agency)
        self.organization(root, "TransferringAgency", m.transferring_agency)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def organization(self, parent: etree._Element, local: str, identifier: str) -> None:
        org = self.el(parent, local)
        self.el(org, "Identifier", identifier)

    def data_object_group(self, package: etree._Element, obj: DataObject) -> None:
        group = self.el(package, "DataObjectGroup")
        group.set("id", group_id(obj.id))
        bdo = self.el(group, "BinaryDataObject")
        bdo.set("id", obj.id)
        self.el(bdo, "DataObjectVersion", DATA_OBJECT_VERSION)
        self.el(bdo, "Uri", obj.uri)
        sha256 = obj.fingerprints.sha256
        digest = self.el(bdo, "MessageDigest", sha256.digest)
        digest.set("algorithm", sha256.seda_algorithm)
        if obj.size > 0:
            self.el(bdo, "Size", str(obj.size))
        fmt = obj.format
        ident = self.el(bdo, "FormatIdentification")
        if fmt.format_name:
            literal = fmt.format_name
            if fmt.format_version and fmt.format_version not in literal:
                literal = f"{literal} {fmt.format_version}"
            self.el(ident, "FormatLitteral", literal)
        self.el(ident, "MimeType", fmt.mime_type)
        if fmt.puid:
            self.el(ident, "FormatId", fmt.puid)
        info = self.el(bdo, "FileInfo")
        self.el(info, "Filename", obj.filename)
        other = self.el(bdo, "OtherMetadata")
        sha512 = obj.fingerprints.sha512
        _ext(other, "MessageDigest", sha512.digest).set("algorithm", sha512.seda_algorithm)
        _ext(other, "OriginalPath", obj.path)
        if obj.size == 0:
            _ext(other, "Size", "0")
        if fmt.basis:
            _ext(other, "FormatIdentificationBasis", fmt.basis)
        if fmt.declared_mime is not None:
            declared = _ext(other, "DeclaredMimeType", fmt.declared_mime)
            declared.set("mismatch", "true" if fmt.declared_mismatch else "false")

    def archive_unit(self, parent: etree._Element, node: ArchiveUnitNode, *, is_root: bool) -> None:
        unit = self.el(parent, "ArchiveUnit")
        unit.set("id", node.id)
        if node.id in self.existing_ids:
            self.reference(unit, node, is_root=is_root)
            for child in node.children:
                self.archive_unit(unit, child, is_root=False)
            return
        if node.appraisal is not None or node.access is not None:
            # ManagementGroup order: AppraisalRule, AccessRule, …, NeedAuthorization.
            management = self.el(unit, "Management")
            if node.appraisal is not None:
                self.appraisal_rule(management, node.appraisal)
            if node.access is not None:
                self.access_rule(management, node.access)
            if node.appraisal is not None and node.appraisal.review:
                self.el(management, "NeedAuthorization", "true")
        self.content(unit, node, is_root=is_root)
        for object_id in node.data_object_ids:
            ref = self.el(unit, "DataObjectReference")
            self.el(ref, "DataObjectGroupReferenceId", group_id(object_id))
        for child in node.children:
            self.archive_unit(unit, child, is_root=False)

    def reference(self, unit: etree._Element, node: ArchiveUnitNode, *, is_root: bool) -> None:
        """An already archived unit, named by its ``SystemId`` (see ``existing_ids``)."""
        content = self.el(unit, "Content")
        self.el(content, "DescriptionLevel", node.description.level.value)
        self.el(content, "Title", node.description.title)
        self.el(content, "SystemId", node.id)
        agency = node.description.originating_agency
        if agency is None and is_root:
            agency = self.manifest.originating_agency
        if agency is not None:
            self.organization(content, "OriginatingAgency", agency)

    def appraisal_rule(self, management: etree._Element, rule: AppraisalRule) -> None:
        el = self.el(management, "AppraisalRule")
        self.el(el, "Rule", rule.rule_id)
        if rule.start_date is not None:
            self.el(el, "StartDate", rule.start_date.isoformat())
        self.el(el, "FinalAction", rule.final_action.value)

    def access_rule(self, management: etree._Element, rule: AccessRule) -> None:
        el = self.el(management, "AccessRule")
        self.el(el, "Rule", rule.rule_id)
        start = access_start_date(rule, self.manifest.date)
        if start is not None:
            self.el(el, "StartDate", start.isoformat())

    def content(self, unit: etree._Element, node: ArchiveUnitNode, *, is_root: bool) -> None:
        # BaseObjectGroup order: DescriptionLevel, Title, (identifiers), Description,
        # DocumentType, Keyword, OriginatingAgency, StartDate, EndDate, Event.
        d = node.description
        identifiers, events = _rendered_extension(d)
        content = self.el(unit, "Content")
        self.el(content, "DescriptionLevel", d.level.value)
        self.el(content, "Title", d.title)
        for system_id in d.originating_system_ids:
            self.el(content, "OriginatingSystemId", system_id)
        for identifier in identifiers:
            self.el(content, "OriginatingAgencyArchiveUnitIdentifier", identifier)
        if d.description is not None:
            self.el(content, "Description", d.description)
        if d.document_type is not None:
            self.el(content, "DocumentType", d.document_type)
        if node.category is not None:
            kw = self.el(content, "Keyword")
            label = d.document_type if d.document_type is not None else node.category
            self.el(kw, "KeywordContent", label)
            self.el(kw, "KeywordReference", node.category).set("schemeID", CATEGORY_SCHEME)
            self.el(kw, "KeywordType", "genreform")
        for keyword in d.keywords:
            kw = self.el(content, "Keyword")
            self.el(kw, "KeywordContent", keyword.content)
            if keyword.reference is not None:
                self.el(kw, "KeywordReference", keyword.reference)
            if keyword.type is not None:
                self.el(kw, "KeywordType", keyword.type)
        agency = d.originating_agency
        if agency is None and is_root:
            agency = self.manifest.originating_agency
        if agency is not None:
            self.organization(content, "OriginatingAgency", agency)
        if d.start_date is not None:
            self.el(content, "StartDate", d.start_date.isoformat())
        if d.end_date is not None:
            self.el(content, "EndDate", d.end_date.isoformat())
        for name, day in events:
            event = self.el(content, "Event")
            self.el(event, "EventTypeCode", name)
            self.el(event, "EventDateTime", day.isoformat())


def access_start_date(rule: AccessRule, transfer: datetime) -> date | None:
    """The ``AccessRule/StartDate`` written for ``rule`` in a transfer dated ``transfer``.

    The rule's own start date when known; the transfer date (UTC) for a 0-year rule that awaits
    no event (freely communicable: SEDA would read a missing date as "restricted"); otherwise
    none (pending: restricted until the event happens).
    """
    if rule.start_date is not None:
        return rule.start_date
    if rule.duration_years == 0 and not rule.pending:
        return transfer.astimezone(UTC).date()
    return None


def _rendered_extension(
    description: Description,
) -> tuple[list[str], list[tuple[str, date]]]:
    """The ``Description.extension`` pairs SEDA has an element for: identifiers and events.

    Sorted (identifiers by value, events by date then name) so that the input order does not
    change the bytes. The other pairs are dropped (see the module docstring).
    """
    identifiers: list[str] = []
    events: list[tuple[str, date]] = []
    for name, value in description.extension:
        if name in IDENTIFIER_FIELDS:
            identifiers.append(value)
        elif name.startswith(EVENT_FIELD_PREFIX) and len(name) > len(EVENT_FIELD_PREFIX):
            try:
                day = date.fromisoformat(value)
            except ValueError as exc:
                msg = f"extension {name}: {value!r} is not an ISO date (YYYY-MM-DD)"
                raise ValueError(msg) from exc
            events.append((name.removeprefix(EVENT_FIELD_PREFIX), day))
    return sorted(identifiers), sorted(events, key=lambda e: (e[1], e[0]))


def _set_text(element: etree._Element, text: str, what: str) -> None:
    try:
        element.text = text
    except ValueError as exc:
        msg = f"{what}: value cannot be written in XML ({exc})"
        raise ValueError(msg) from exc


def _ext(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, ext(local))
    if text is not None:
        _set_text(child, text, f"{EXT_PREFIX}:{local}")
    return child
