"""Our archival manifest for an accepted foreign transfer: their description, our objects.

The package of a foreign transfer holds the sender's manifest byte for byte (an object of the
package) *and* this manifest, which :func:`build_foreign_manifest` derives from it:

- the sender's ``ArchiveUnit`` elements, nested units and ``ArchiveUnitRefId`` links, every
  ``Content`` and ``Management`` (rules, inheritance, holds), ``ManagementMetadata``,
  ``CodeListVersions``, ``Comment``, ``ArchivalAgreement``, agencies and every
  ``PhysicalDataObject`` are copied as they are, moved into the namespace of the target version
  (SEDA 2.2 and 2.3 share ``main``, ``types``, ``management`` and ``descriptive``);
- each ``BinaryDataObject`` keeps its own elements, but its ``Uri`` becomes where the file sits
  in our package, its ``MessageDigest`` our SHA-512 and its ``Size`` what we read (the sender's
  digest was checked at receipt and stays in their manifest);
- ``Date`` and ``MessageIdentifier`` are ours; the sender's manifest is added as one more
  ``BinaryDataObject`` in its own group, described by one more root ``ArchiveUnit``.

The result must be validated against the official XSD of ``version`` by the caller (a 2.2
manifest using the 2.2-only ``Signature`` block cannot become 2.3: keep 2.2 then). Pure and
byte-stable for the same input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from archive_service.core.model import FileFingerprints
from archive_service.core.seda.builder import xml_datetime
from archive_service.core.seda.names import SEDA_NS, SedaVersion, nsmap
from archive_service.core.seda.sip import ForeignTransfer
from archive_service.core.seda.xmlsafe import parse_untrusted

__all__ = ["SenderManifest", "build_foreign_manifest"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderManifest:
    """Where the sender's manifest sits in our package, and its fingerprints."""

    object_id: str
    group_id: str
    unit_id: str
    uri: str
    fingerprints: FileFingerprints


def build_foreign_manifest(
    transfer: ForeignTransfer,
    *,
    message_identifier: str,
    date: datetime,
    uris: dict[str, str],
    sender_manifest: SenderManifest,
    version: SedaVersion = "2.3",
) -> bytes:
    """Our ``ArchiveTransfer`` for ``transfer``; ``uris`` maps each object id to its package
    path. Every object must carry our fingerprints (a checked transfer)."""
    source = SEDA_NS[transfer.version]
    target = SEDA_NS[version]
    root = _renamespace(parse_untrusted(transfer.manifest).getroot(), source, target)

    def s(local: str) -> str:
        return f"{{{target}}}{local}"

    def set_text(parent: etree._Element, local: str, text: str) -> None:
        element = parent.find(s(local))
        if element is None:
            msg = f"the manifest has no {local}"
            raise ValueError(msg)
        element.text = text

    set_text(root, "Date", xml_datetime(date))
    set_text(root, "MessageIdentifier", message_identifier)
    package = root.find(s("DataObjectPackage"))
    if package is None:
        msg = "the manifest has no DataObjectPackage"
        raise ValueError(msg)
    for bdo in package.iter(s("BinaryDataObject")):
        obj = transfer.object(bdo.get("id") or "")
        if obj.fingerprints is None:
            msg = f"object {obj.id} was not checked"
            raise ValueError(msg)
        _patch_object(bdo, s, uris[obj.id], obj.fingerprints)
    descriptive = package.find(s("DescriptiveMetadata"))
    first_unit_parent = descriptive if descriptive is not None else package
    # Object groups come before DescriptiveMetadata (DataObjectPackageType).
    group = etree.Element(s("DataObjectGroup"))
    group.set("id", sender_manifest.group_id)
    bdo = etree.SubElement(group, s("BinaryDataObject"))
    bdo.set("id", sender_manifest.object_id)
    etree.SubElement(bdo, s("DataObjectVersion")).text = "Documentation_1"
    etree.SubElement(bdo, s("Uri")).text = sender_manifest.uri
    etree.SubElement(bdo, s("MessageDigest"))
    etree.SubElement(bdo, s("Size"))
    fmt = etree.SubElement(bdo, s("FormatIdentification"))
    etree.SubElement(fmt, s("MimeType")).text = "application/xml"
    info = etree.SubElement(bdo, s("FileInfo"))
    etree.SubElement(info, s("Filename")).text = transfer.manifest_name
    _patch_object(bdo, s, sender_manifest.uri, sender_manifest.fingerprints)
    if descriptive is not None:
        descriptive.addprevious(group)
    else:
        package.insert(0, group)
    unit = etree.SubElement(first_unit_parent, s("ArchiveUnit"))
    unit.set("id", sender_manifest.unit_id)
    content = etree.SubElement(unit, s("Content"))
    etree.SubElement(content, s("DescriptionLevel")).text = "Item"
    etree.SubElement(content, s("Title")).text = "Bordereau de versement reçu"
    etree.SubElement(
        content, s("Description")
    ).text = f"SEDA {transfer.version} ArchiveTransfer {transfer.message_identifier} as received"
    reference = etree.SubElement(unit, s("DataObjectReference"))
    etree.SubElement(reference, s("DataObjectGroupReferenceId")).text = sender_manifest.group_id
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _patch_object(bdo: etree._Element, s: object, uri: str, fingerprints: FileFingerprints) -> None:
    assert callable(s)
    uri_el = bdo.find(s("Uri"))
    if uri_el is None:  # an inline Attachment becomes a file of the package
        attachment = bdo.find(s("Attachment"))
        uri_el = etree.Element(s("Uri"))
        if attachment is not None:
            attachment.addprevious(uri_el)
            bdo.remove(attachment)
        else:
            digest = bdo.find(s("MessageDigest"))
            assert digest is not None
            digest.addprevious(uri_el)
    uri_el.text = uri
    digest_el = bdo.find(s("MessageDigest"))
    assert digest_el is not None
    digest_el.text = fingerprints.sha512.digest
    digest_el.attrib.clear()
    digest_el.set("algorithm", "SHA-512")
    size_el = bdo.find(s("Size"))
    if size_el is None:
        size_el = etree.Element(s("Size"))
        digest_el.addnext(size_el)
    size_el.text = str(fingerprints.size)


def _renamespace(root: etree._Element, source: str, target: str) -> etree._Element:
    """A copy of ``root`` whose elements in ``source`` are in ``target`` (same local names)."""
    if source == target:
        return copy.deepcopy(root)
    mapping = {prefix: (target if uri == source else uri) for prefix, uri in root.nsmap.items()}
    out = etree.Element(_rename(root.tag, source, target), nsmap=nsmap(dict(mapping)))
    _copy_into(root, out, source, target)
    return out


def _rename(tag: str, source: str, target: str) -> str:
    prefix = f"{{{source}}}"
    return f"{{{target}}}{tag[len(prefix) :]}" if tag.startswith(prefix) else tag


def _copy_into(src: etree._Element, dst: etree._Element, source: str, target: str) -> None:
    for name, value in src.attrib.items():
        dst.set(name, value)
    dst.text = src.text
    for child in src:
        if isinstance(child.tag, str):
            new = etree.SubElement(dst, _rename(child.tag, source, target))
            _copy_into(child, new, source, target)
        else:
            new = copy.copy(child)
            dst.append(new)
        new.tail = child.tail
