"""Read what an offline verifier needs from a SEDA 2.2/2.3 ``ArchiveTransfer`` manifest.

:func:`read_manifest` returns the ``MessageIdentifier``, the version and, for every
``BinaryDataObject`` (inside a ``DataObjectGroup`` or directly in the ``DataObjectPackage``):
its id, ``Uri``, ``MessageDigest`` (algorithm and value), the SHA-512 from our extension
(``OtherMetadata/ase:MessageDigest``) when present, ``Size`` (or ``ase:Size`` for an empty file),
``FileInfo/Filename``, ``FormatIdentification/MimeType`` and ``FormatId`` (PRONOM). It works on
foreign manifests too; optional information a manifest lacks comes back as ``None``, but a
``BinaryDataObject`` without ``Uri`` or ``MessageDigest`` cannot be verified and is refused
(``SedaInvalid``, fail closed). Parsing is hardened
(no DTD, no entities, no network); it does not validate against a schema — do that first with
:class:`~archive_service.core.seda.validate.SedaValidator`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from archive_service.core.model import Fingerprint
from archive_service.core.seda.names import SEDA_NS, SedaVersion, ext
from archive_service.core.seda.xmlsafe import element_path, parse_untrusted, seda_version_of
from archive_service.errors import Issue, SedaInvalid

__all__ = ["ParsedDataObject", "ParsedManifest", "read_manifest"]

_ALGORITHMS = {"SHA-256": "sha256", "SHA-512": "sha512"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedDataObject:
    """One ``BinaryDataObject`` as the manifest declares it."""

    id: str
    uri: str
    digest_algorithm: str
    """As SEDA spells it (``SHA-256``, ``SHA-512``)."""
    digest: str
    """The ``MessageDigest`` text as written (hex or base64), whitespace removed."""
    sha512: str | None
    size: int | None
    filename: str | None
    mime: str | None
    puid: str | None
    group_id: str | None = None

    @property
    def fingerprint(self) -> Fingerprint | None:
        """``MessageDigest`` as a :class:`Fingerprint` (hex or base64 accepted), if supported."""
        return _fingerprint(self.digest_algorithm, self.digest)

    @property
    def sha512_fingerprint(self) -> Fingerprint | None:
        """The SHA-512 from ``MessageDigest`` or from our extension, whichever is present."""
        if self.sha512 is not None:
            return _fingerprint("SHA-512", self.sha512)
        found = self.fingerprint
        return found if found is not None and found.algorithm == "sha512" else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedManifest:
    message_identifier: str
    version: SedaVersion
    objects: tuple[ParsedDataObject, ...]

    def by_uri(self) -> dict[str, ParsedDataObject]:
        return {o.uri: o for o in self.objects}


def read_manifest(xml: bytes) -> ParsedManifest:
    """Parse an ``ArchiveTransfer``; ``SedaInvalid`` when it is not one (or not well-formed)."""
    tree = parse_untrusted(xml)
    version = seda_version_of(tree)
    ns = SEDA_NS[version]
    root = tree.getroot()

    def s(local: str) -> str:
        return f"{{{ns}}}{local}"

    if root.tag != s("ArchiveTransfer"):
        issue = Issue(
            "seda-not-a-transfer",
            f"root element is {etree.QName(root).localname}, expected ArchiveTransfer",
            f"line {root.sourceline or 1}",
        )
        raise SedaInvalid("not a SEDA ArchiveTransfer", issues=[issue])
    message_id = _text(root, s("MessageIdentifier"))
    if message_id is None:
        issue = Issue("seda-missing-element", "MessageIdentifier is missing", "line 1")
        raise SedaInvalid("the manifest has no MessageIdentifier", issues=[issue])

    objects: list[ParsedDataObject] = []
    package = root.find(s("DataObjectPackage"))
    if package is not None:
        for bdo in package.iter(s("BinaryDataObject")):
            objects.append(_data_object(bdo, s))
    return ParsedManifest(message_identifier=message_id, version=version, objects=tuple(objects))


def _data_object(bdo: etree._Element, s: Callable[[str], str]) -> ParsedDataObject:
    where = f"line {bdo.sourceline or '?'}: {element_path(bdo)}"
    object_id = bdo.get("id")
    uri = _text(bdo, s("Uri"))
    digest_el = bdo.find(s("MessageDigest"))
    digest = _clean(digest_el.text) if digest_el is not None else None
    algorithm = digest_el.get("algorithm") if digest_el is not None else None
    missing: list[str] = []
    if not object_id:
        missing.append("the id attribute")
    if uri is None:
        missing.append("Uri")
    if digest is None:
        missing.append("MessageDigest")
    elif not algorithm:
        missing.append("MessageDigest/@algorithm")
    if missing or object_id is None or uri is None or digest is None or algorithm is None:
        issues = [
            Issue("seda-missing-element", f"BinaryDataObject without {m}", where) for m in missing
        ]
        raise SedaInvalid("a BinaryDataObject cannot be verified", issues=issues)
    parent = bdo.getparent()
    if parent is not None and parent.tag == s("DataObjectGroup"):
        group_id = parent.get("id")
    else:
        group_id = _text(bdo, s("DataObjectGroupId")) or _text(bdo, s("DataObjectGroupReferenceId"))
    other = bdo.find(s("OtherMetadata"))
    return ParsedDataObject(
        id=object_id,
        uri=uri,
        digest_algorithm=algorithm.strip(),
        digest=digest,
        sha512=_ext_digest(other),
        size=_size(bdo, s("Size"), other),
        filename=_text(bdo, f"{s('FileInfo')}/{s('Filename')}"),
        mime=_text(bdo, f"{s('FormatIdentification')}/{s('MimeType')}"),
        puid=_text(bdo, f"{s('FormatIdentification')}/{s('FormatId')}"),
        group_id=group_id,
    )


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    stripped = "".join(text.split())
    return stripped or None


def _text(parent: etree._Element, path: str) -> str | None:
    element = parent.find(path)
    if element is None or element.text is None:
        return None
    value = element.text.strip()
    return value or None


def _ext_digest(other: etree._Element | None) -> str | None:
    if other is None:
        return None
    for digest in other.iter(ext("MessageDigest")):
        if digest.get("algorithm") == "SHA-512":
            return _clean(digest.text)
    return None


def _size(bdo: etree._Element, size_tag: str, other: etree._Element | None) -> int | None:
    text = _text(bdo, size_tag)
    if text is None and other is not None:
        text = _text(other, ext("Size"))
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _fingerprint(seda_algorithm: str, value: str) -> Fingerprint | None:
    algorithm = _ALGORITHMS.get(seda_algorithm.strip().upper())
    if algorithm is None:
        return None
    expected_hex = 64 if algorithm == "sha256" else 128
    candidate = value.strip()
    if len(candidate) != expected_hex:
        try:
            candidate = base64.b64decode(candidate, validate=True).hex()
        except (binascii.Error, ValueError):
            return None
    try:
        return Fingerprint(algorithm, candidate.lower())
    except ValueError:
        return None
