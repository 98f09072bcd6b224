"""Dérogations, the pure parts: which decisions a dérogation opens (core/derogation.py),
which of a client's dérogations counts on a day, and a unit's lineage
(services/communicability.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from archive_service.core import communicability as c
from archive_service.core.communicability import AccessDecision, access_decision
from archive_service.core.derogation import DEROGATION, DerogatedDecision, derogated
from archive_service.ports import DerogationRecord, UnitRecord
from archive_service.services.communicability import covering_derogation, lineage_ids

TODAY = date(2030, 6, 15)
RULE: dict[str, Any] = {
    "rule_id": "MP-ACC-SA-25A",
    "label": "Secret des affaires",
    "duration_years": 25,
    "start_event": "signature",
}


def opened(decision: AccessDecision) -> AccessDecision:
    return derogated(decision, derogation_id="drg-1", reference="AD-42", until=date(2030, 12, 31))


def test_a_running_delay_is_opened_and_keeps_the_rule_facts() -> None:
    rule = access_decision({**RULE, "start_date": "2025-03-01"}, today=TODAY)
    assert rule.reason == c.DELAY and not rule.communicable
    d = opened(rule)
    assert isinstance(d, DerogatedDecision)
    assert d.communicable and d.reason == DEROGATION
    assert (d.rule_id, d.end_date, d.start_date) == (
        rule.rule_id,
        date(2050, 3, 1),
        rule.start_date,
    )
    members = d.members()
    assert members["derogation"] == {"id": "drg-1", "reference": "AD-42", "until": "2030-12-31"}
    assert members["end_date"] == "2050-03-01" and members["reason"] == "derogation"
    assert (
        "drg-1" in d.explanation and "AD-42" in d.explanation and "MP-ACC-SA-25A" in d.explanation
    )


def test_a_pending_delay_is_opened() -> None:
    rule = access_decision(RULE, today=TODAY)
    assert rule.reason == c.PENDING
    d = opened(rule)
    assert d.communicable and d.reason == DEROGATION and d.pending and d.end_date is None


@pytest.mark.parametrize(
    "decision",
    [
        access_decision({**RULE, "duration_years": "x"}, today=TODAY),  # unreadable
        AccessDecision(communicable=False, reason=c.GONE),
        access_decision(None, today=TODAY),  # free
        access_decision({**RULE, "start_date": "2000-01-01"}, today=TODAY),  # elapsed
    ],
    ids=["unreadable", "gone", "free", "elapsed"],
)
def test_other_decisions_are_left_as_they_are(decision: AccessDecision) -> None:
    assert opened(decision) is decision


def record(ident: str, *, until: date | None = None, revoked: bool = False) -> DerogationRecord:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    return DerogationRecord(
        id=ident,
        tenant_id="tn",
        unit_id="au-root",
        root_id="au-root",
        client_id="cl-a",
        reference=f"REF-{ident}",
        decision_date=date(2030, 1, 1),
        reason="r",
        granted_by="Admin",
        granted_by_client="cl-admin",
        granted_at=at,
        until=until,
        revoked_by="Admin" if revoked else None,
        revoked_at=at if revoked else None,
        revoke_reason="done" if revoked else None,
    )


def test_the_last_day_counts_and_the_day_after_does_not() -> None:
    d = record("a", until=TODAY)
    assert d.active_on(TODAY)
    assert not d.active_on(date(2030, 6, 16))
    assert not record("b", revoked=True).active_on(TODAY)
    assert record("c").active_on(date(2999, 1, 1))


def test_the_longest_lasting_active_derogation_is_chosen() -> None:
    short = record("short", until=date(2030, 7, 1))
    long = record("long", until=date(2031, 1, 1))
    expired = record("expired", until=date(2030, 6, 14))
    revoked = record("revoked", revoked=True)
    assert covering_derogation([], today=TODAY) is None
    assert covering_derogation([expired, revoked], today=TODAY) is None
    assert covering_derogation([short, expired, long], today=TODAY) is long
    endless = record("endless")
    assert covering_derogation([short, endless, long], today=TODAY) is endless
    first, second = record("first"), record("second")
    assert covering_derogation([first, second], today=TODAY) is first


def unit(ident: str, parent: str | None) -> UnitRecord:
    return UnitRecord(
        id=ident,
        tenant_id="tn",
        package_id="pkg",
        root_id="root",
        parent_id=parent,
        position=0,
        level="Item",
        title=ident,
        category=None,
        content={},
        appraisal=None,
        access=None,
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
    )


def test_lineage_is_the_unit_then_its_ancestors_nearest_first() -> None:
    root, phase, doc, sibling = (
        unit("root", None),
        unit("phase", "root"),
        unit("doc", "phase"),
        unit("sib", "root"),
    )
    assert lineage_ids(doc, [root, phase, doc, sibling]) == ["doc", "phase", "root"]
    assert lineage_ids(root, [root]) == ["root"]
    # An ancestor missing from the tree ends the walk at the id it knows.
    assert lineage_ids(doc, [doc]) == ["doc", "phase"]
