"""Render the SEDA ``ArchiveTransferReply`` (accusé de réception, ATR) for a transfer: OK or KO.

Layout, in the order of ``seda-2.3-main.xsd`` (``MessageType``, ``BusinessMessageType``,
``BusinessReplyMessageType``, ``ArchiveTransferReplyType``): ``Date``, ``MessageIdentifier``,
``CodeListVersions/ReplyCodeListVersion``, a ``DataObjectPackage`` only when the transfer was
archived (one ``ArchiveUnit`` whose ``Content/SystemId`` is the archive identifier, as Vitam's
ATR does), ``ReplyCode``, ``Operation``, ``MessageRequestIdentifier`` (the transfer's
``MessageIdentifier``), ``GrantDate``, ``ArchivalAgency``, ``TransferringAgency``.

``Operation`` (SEDA: "list of the events in reply messages") holds one ``Event`` for the
transfer as a whole (``EventTypeCode`` ``ARCHIVE_TRANSFER``, ``Outcome`` = the reply code) and one
``Event`` per reason (``EventTypeCode`` ``ARCHIVE_TRANSFER_CHECK``, the reason verbatim in
``EventDetail``), so that each refusal reason stays a separate, machine-readable entry. Pure and
byte-stable like the manifest builder.
"""

from __future__ import annotations

import re

from lxml import etree

from archive_service.core.model import TransferReplyInput
from archive_service.core.seda.builder import xml_datetime
from archive_service.core.seda.names import REPLY_CODE_LISTS, SEDA_NS, SedaVersion, nsmap, seda

__all__ = ["build_transfer_reply"]

_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")

TRANSFER_EVENT = "ARCHIVE_TRANSFER"
CHECK_EVENT = "ARCHIVE_TRANSFER_CHECK"


def build_transfer_reply(reply: TransferReplyInput, *, version: SedaVersion = "2.3") -> bytes:
    """The SEDA ``ArchiveTransferReply`` for ``reply``, as UTF-8 bytes (byte-stable)."""
    if version not in SEDA_NS:
        msg = f"unsupported SEDA version {version!r}"
        raise ValueError(msg)

    def el(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
        child = etree.SubElement(parent, seda(version, local))
        if text is not None:
            child.text = text
        return child

    root = etree.Element(
        seda(version, "ArchiveTransferReply"), nsmap=nsmap({None: SEDA_NS[version]})
    )
    el(root, "Date", xml_datetime(reply.date))
    el(root, "MessageIdentifier", reply.message_identifier)
    code_lists = el(root, "CodeListVersions")
    for name, value in REPLY_CODE_LISTS:
        el(code_lists, name, value)
    if reply.archive_unit_id is not None:
        package = el(root, "DataObjectPackage")
        descriptive = el(package, "DescriptiveMetadata")
        unit = el(descriptive, "ArchiveUnit")
        unit_id = reply.archive_unit_id
        unit.set("id", unit_id if _NCNAME.match(unit_id) else "archived-unit")
        content = el(unit, "Content")
        el(content, "SystemId", unit_id)
        el(package, "ManagementMetadata")
    el(root, "ReplyCode", reply.reply_code.value)
    operation = el(root, "Operation")
    when = xml_datetime(reply.date)
    summary = el(operation, "Event")
    el(summary, "EventTypeCode", TRANSFER_EVENT)
    el(summary, "EventType", "Archive transfer")
    el(summary, "EventDateTime", when)
    el(summary, "Outcome", reply.reply_code.value)
    el(summary, "OutcomeDetail", f"{TRANSFER_EVENT}.{reply.reply_code.value}")
    for reason in reply.reasons:
        event = el(operation, "Event")
        el(event, "EventTypeCode", CHECK_EVENT)
        el(event, "EventType", "Archive transfer check")
        el(event, "EventDateTime", when)
        el(event, "EventDetail", reason)
        el(event, "Outcome", reply.reply_code.value)
        el(event, "OutcomeDetail", f"{CHECK_EVENT}.{reply.reply_code.value}")
    el(root, "MessageRequestIdentifier", reply.message_request_identifier)
    if reply.grant_date is not None:
        el(root, "GrantDate", xml_datetime(reply.grant_date))
    agency = el(root, "ArchivalAgency")
    el(agency, "Identifier", reply.archival_agency)
    transferring = el(root, "TransferringAgency")
    el(transferring, "Identifier", reply.transferring_agency)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
