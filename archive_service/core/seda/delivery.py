"""The manifest of a DIP: SEDA ``ArchiveDeliveryRequestReply`` (communication).

SEDA has no "DIP" message of its own; ``ArchiveDeliveryRequestReply`` is the reply to a
communication request and the one that may carry a ``DataObjectPackage`` with the units and
their objects (``seda-<v>-main.xsd``: ``BusinessReplyMessageType`` →
``ArchiveDeliveryRequestReplyType``). Layout, in XSD order: ``Comment`` (one per note: content
withheld, units left out), ``Date``, ``MessageIdentifier``, ``CodeListVersions``,
``DataObjectPackage`` (written exactly as our ``ArchiveTransfer``'s, by
:mod:`~archive_service.core.seda.builder`, plus ``HoldRule``), ``ReplyCode``,
``MessageRequestIdentifier``, ``UnitIdentifier`` (the unit asked for), ``ArchivalAgency``,
``Requester``.

``HoldRule`` (both versions, ``seda-<v>-management.xsd`` ``HoldRuleType``): one
``Rule``/``StartDate``/``HoldOwner``/``HoldReason`` group per active hold placed on the unit
(:func:`~archive_service.core.seda.lifecycle.hold_rule_entries`), after ``NeedAuthorization``
in ``ManagementGroup``; SEDA inheritance carries it to the unit's descendants.

Pure and byte-stable like the transfer builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from archive_service.core.model import ArchiveUnitNode, TransferManifestInput, require_utc
from archive_service.core.seda.builder import _TransferWriter, group_id, xml_datetime
from archive_service.core.seda.lifecycle import HOLD_CODE_LIST, hold_rule_entries
from archive_service.core.seda.names import (
    EXT_NS,
    EXT_PREFIX,
    REFERENTIAL_CODE_LIST,
    REPLY_CODE_LISTS,
    SEDA_NS,
    SedaVersion,
    nsmap,
    seda,
    transfer_code_lists,
)

__all__ = ["DeliveryInput", "build_delivery_reply"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryInput:
    """Everything an ``ArchiveDeliveryRequestReply`` holds.

    ``package`` gives the units (``root`` and its subtree, already limited to what is
    delivered) and the objects; its ``archival_agency`` is ours. ``holds``: unit id → the
    active holds placed on that unit (dicts with ``id``, ``reason``, ``reference``,
    ``placed_by``, ``placed_at``). ``notes``: the message's ``Comment`` lines.
    """

    message_identifier: str
    request_identifier: str
    date: datetime
    requester: str
    package: TransferManifestInput
    holds: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    reply_code: str = "OK"

    def __post_init__(self) -> None:
        require_utc(self.date, "delivery date")
        for value, what in (
            (self.message_identifier, "message_identifier"),
            (self.request_identifier, "request_identifier"),
            (self.requester, "requester"),
        ):
            if not value.strip():
                msg = f"{what} must not be empty"
                raise ValueError(msg)


class _DeliveryWriter(_TransferWriter):
    def __init__(self, version: SedaVersion, delivery: DeliveryInput) -> None:
        super().__init__(version, delivery.package, REFERENTIAL_CODE_LIST)
        self.delivery = delivery

    def render(self) -> bytes:
        d = self.delivery
        m = d.package
        root = etree.Element(
            seda(self.version, "ArchiveDeliveryRequestReply"),
            nsmap=nsmap({None: SEDA_NS[self.version], EXT_PREFIX: EXT_NS}),
        )
        for note in d.notes:
            self.el(root, "Comment", note)
        self.el(root, "Date", xml_datetime(d.date))
        self.el(root, "MessageIdentifier", d.message_identifier)
        code_lists = self.el(root, "CodeListVersions")
        for name, value in (*REPLY_CODE_LISTS, *transfer_code_lists(REFERENTIAL_CODE_LIST)):
            self.el(code_lists, name, value)
        if any(d.holds.values()):
            self.el(code_lists, "HoldRuleCodeListVersion", HOLD_CODE_LIST)
        package = self.el(root, "DataObjectPackage")
        for obj in sorted(m.objects, key=lambda o: o.id):
            self.data_object_group(package, obj)
        descriptive = self.el(package, "DescriptiveMetadata")
        self.archive_unit(descriptive, m.root, is_root=True)
        management = self.el(package, "ManagementMetadata")
        if m.originating_agency is not None:
            self.el(management, "OriginatingAgencyIdentifier", m.originating_agency)
        self.el(root, "ReplyCode", d.reply_code)
        self.el(root, "MessageRequestIdentifier", d.request_identifier)
        self.el(root, "UnitIdentifier", m.root.id)
        self.organization(root, "ArchivalAgency", m.archival_agency)
        self.organization(root, "Requester", d.requester)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def archive_unit(self, parent: etree._Element, node: ArchiveUnitNode, *, is_root: bool) -> None:
        unit = self.el(parent, "ArchiveUnit")
        unit.set("id", node.id)
        holds = self.delivery.holds.get(node.id, ())
        if node.appraisal is not None or node.access is not None or holds:
            # ManagementGroup order: AppraisalRule, AccessRule, …, NeedAuthorization, HoldRule.
            management = self.el(unit, "Management")
            if node.appraisal is not None:
                self.appraisal_rule(management, node.appraisal)
            if node.access is not None:
                self.access_rule(management, node.access)
            if node.appraisal is not None and node.appraisal.review:
                self.el(management, "NeedAuthorization", "true")
            if holds:
                hold = self.el(management, "HoldRule")
                for entry in hold_rule_entries(holds):
                    self.el(hold, "Rule", entry["rule"])
                    self.el(hold, "StartDate", entry["start_date"])
                    self.el(hold, "HoldOwner", entry["owner"])
                    self.el(hold, "HoldReason", entry["reason"])
        self.content(unit, node, is_root=is_root)
        for object_id in node.data_object_ids:
            ref = self.el(unit, "DataObjectReference")
            self.el(ref, "DataObjectGroupReferenceId", group_id(object_id))
        for child in node.children:
            self.archive_unit(unit, child, is_root=False)


def build_delivery_reply(delivery: DeliveryInput, *, version: SedaVersion = "2.3") -> bytes:
    """The ``ArchiveDeliveryRequestReply`` of ``delivery``, as UTF-8 bytes (byte-stable)."""
    if version not in SEDA_NS:
        msg = f"unsupported SEDA version {version!r}"
        raise ValueError(msg)
    return _DeliveryWriter(version, delivery).render()
