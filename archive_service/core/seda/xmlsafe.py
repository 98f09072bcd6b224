"""Hardened parsing of SEDA messages received from outside, and readable error locations.

A transfer manifest is untrusted input. The parser loads no DTD, substitutes no entity, never
touches the network and refuses huge trees; a document that declares a DTD at all
(``<!DOCTYPE …>``, the carrier of XXE and "billion laughs") is refused outright, as
defusedxml's ``forbid_dtd`` does. Errors are :class:`~archive_service.errors.SedaInvalid` with
an :class:`~archive_service.errors.Issue` located as ``line N: /ArchiveTransfer/…``.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from archive_service.core.seda.names import SEDA_NS, SEDA_VERSIONS, VERSION_BY_NS, SedaVersion
from archive_service.errors import Issue, SedaInvalid


def safe_parser() -> etree.XMLParser:
    """A new parser that loads nothing from outside the bytes it is given."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse_untrusted(xml: bytes) -> etree._ElementTree:
    """Parse ``xml``; refuse malformed documents and any DTD (``SedaInvalid``)."""
    if not isinstance(xml, bytes | bytearray | memoryview):
        msg = "a SEDA message must be given as bytes"
        raise TypeError(msg)
    try:
        root = etree.fromstring(bytes(xml), safe_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else 1
        issue = Issue("seda-xml-malformed", str(exc.msg), f"line {line}")
        raise SedaInvalid("the SEDA message is not well-formed XML", issues=[issue]) from exc
    tree = root.getroottree()
    docinfo: Any = tree.docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        issue = Issue(
            "seda-dtd-forbidden",
            "document type declarations (DTD, entities) are refused in SEDA messages",
            "line 1",
        )
        raise SedaInvalid("the SEDA message declares a DTD", issues=[issue])
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        issue = Issue("seda-dtd-forbidden", "entity references are refused", "line 1")
        raise SedaInvalid("the SEDA message uses entity references", issues=[issue])
    return tree


def element_path(element: etree._Element) -> str:
    """``/ArchiveTransfer/DataObjectPackage/DataObjectGroup[@id='og-…']/…`` for ``element``.

    Steps use local names (with the prefix for non-default namespaces); an element with an
    ``id`` attribute is named by it, otherwise by its position among same-named siblings
    when it has any.
    """
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        qname = etree.QName(node)
        name = f"{node.prefix}:{qname.localname}" if node.prefix else qname.localname
        node_id = node.get("id")
        parent = node.getparent()
        if node_id:
            name += f"[@id='{node_id}']"
        elif parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


def locate(tree: etree._ElementTree, line: int, xpath: str | None) -> str:
    """``line N: <element path>`` for a libxml2 error (line and positional XPath)."""
    where = f"line {line}" if line and line > 0 else "line ?"
    if not xpath:
        return where
    namespaces = {
        prefix: uri
        for el in tree.getroot().iter()
        if isinstance(el.tag, str)
        for prefix, uri in el.nsmap.items()
        if prefix
    }
    try:
        found = tree.xpath(xpath, namespaces=namespaces)
    except etree.XPathError:
        return f"{where}: {xpath}"
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return f"{where}: {element_path(found[0])}"
    return f"{where}: {xpath}"


def seda_version_of(tree: etree._ElementTree) -> SedaVersion:
    """The SEDA version named by the root element's namespace; ``SedaInvalid`` otherwise."""
    root = tree.getroot()
    qname = etree.QName(root)
    version = VERSION_BY_NS.get(qname.namespace or "")
    if version is None:
        found = f"{{{qname.namespace}}}" if qname.namespace else "no namespace"
        issue = Issue(
            "seda-unsupported-version",
            f"root element {qname.localname} is in {found}; expected a SEDA namespace "
            f"({', '.join(SEDA_NS[v] for v in SEDA_VERSIONS)})",
            f"line {root.sourceline or 1}: {element_path(root)}",
        )
        raise SedaInvalid("unsupported or unknown SEDA version", issues=[issue])
    return version
