"""Communicability decisions (core/communicability.py): every branch and the date edges."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from archive_service.core import communicability as c
from archive_service.core.communicability import access_decision, effective_rule
from archive_service.core.retention import Referential
from archive_service.services.ingest import rule_json
from tests.unit.test_retention import dossier

TODAY = date(2030, 6, 15)


def rule(
    years: int, event: str = "signature", start: str | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "rule_id": "R",
        "label": "Règle",
        "duration_years": years,
        "start_event": event,
        "start_date": start,
        **kw,
    }


def test_no_rule_is_communicable() -> None:
    d = access_decision(None, today=TODAY)
    assert d.communicable and d.reason == c.FREE and d.rule_id is None and not d.pending


def test_zero_years_without_event_is_free() -> None:
    d = access_decision(rule(0, "none"), today=TODAY)
    assert d.communicable and d.reason == c.FREE
    assert d.end_date is None and d.start_date is None and not d.pending


def test_pending_until_the_start_event_happens() -> None:
    d = access_decision(rule(25, "signature"), today=TODAY)
    assert not d.communicable and d.pending and d.reason == c.PENDING
    assert d.end_date is None and d.start_event == "signature" and d.duration_years == 25
    assert "25 years after « Signature du marché »" in d.explanation
    zero = access_decision(rule(0, "signature"), today=TODAY)
    assert not zero.communicable and zero.pending
    assert "after « Signature du marché »" in zero.explanation


def test_delay_running_restricts_until_the_end_date() -> None:
    d = access_decision(rule(25, start="2025-03-01"), today=TODAY)
    assert not d.communicable and d.reason == c.DELAY and not d.pending
    assert d.start_date == date(2025, 3, 1) and d.end_date == date(2050, 3, 1)
    assert d.members()["end_date"] == "2050-03-01"
    assert "not communicable before 2050-03-01" in d.explanation


@pytest.mark.parametrize(
    ("today", "communicable"),
    [(date(2050, 2, 28), False), (date(2050, 3, 1), True), (date(2050, 3, 2), True)],
)
def test_the_end_date_is_the_first_communicable_day(today: date, communicable: bool) -> None:
    d = access_decision(rule(25, start="2025-03-01"), today=today)
    assert d.communicable is communicable
    assert d.reason == (c.ELAPSED if communicable else c.DELAY)


def test_zero_year_rule_is_communicable_on_the_day_of_its_event() -> None:
    assert access_decision(rule(0, start="2030-06-15"), today=TODAY).communicable
    assert not access_decision(rule(0, start="2030-06-16"), today=TODAY).communicable


def test_leap_day_start_ends_on_28_february() -> None:
    d = access_decision(rule(25, start="2028-02-29"), today=date(2053, 2, 27))
    assert d.end_date == date(2053, 2, 28) and not d.communicable
    assert access_decision(rule(25, start="2028-02-29"), today=date(2053, 2, 28)).communicable


def test_a_later_recorded_end_wins_an_earlier_one_does_not() -> None:
    later = access_decision(
        rule(25, start="2025-03-01"), today=date(2050, 6, 1), recorded_end=date(2051, 1, 1)
    )
    assert not later.communicable and later.end_date == date(2051, 1, 1)
    earlier = access_decision(
        rule(25, start="2025-03-01"), today=date(2050, 6, 1), recorded_end=date(2040, 1, 1)
    )
    assert earlier.communicable and earlier.end_date == date(2050, 3, 1)


@pytest.mark.parametrize(
    "bad",
    [
        rule(-1, start="2025-01-01"),
        rule(True, start="2025-01-01"),  # type: ignore[arg-type]
        {**rule(5, start="2025-01-01"), "duration_years": "5"},
        rule(5, start="not a date"),
        rule(5, "none"),
        {"rule_id": "X"},
    ],
)
def test_unreadable_rules_fail_closed(bad: dict[str, Any]) -> None:
    d = access_decision(bad, today=TODAY)
    assert not d.communicable and d.reason == c.UNREADABLE and d.pending
    assert "cannot be read" in d.explanation


def test_effective_rule_inherits_from_the_nearest_ancestor() -> None:
    parents = {"root": None, "phase": "root", "doc": "phase", "annex": "doc"}
    own = rule(25, start="2025-03-01")
    top = rule(0, start="2025-03-01")
    rules: dict[str, dict[str, Any] | None] = {
        "root": top,
        "phase": None,
        "doc": own,
        "annex": None,
    }
    assert effective_rule("annex", parents, rules) == (own, "doc")
    assert effective_rule("doc", parents, rules) == (own, "doc")
    assert effective_rule("phase", parents, rules) == (top, "root")
    assert effective_rule("phase", parents, {**rules, "root": None}) == (None, None)
    # A cycle in corrupt data ends the walk instead of looping.
    assert effective_rule("a", {"a": "b", "b": "a"}, {}) == (None, None)


def test_referential_rules_on_offers() -> None:
    """The shipped référentiel: offers pending before signature, 25 years after it; DCE free."""
    ref = Referential.from_json(Path("archive_service/data/retention_referential.json").read_text())
    unsigned = dossier("T")
    signed = dossier("T", events={"signature": date(2025, 3, 1)})
    for category in ("offres.non_retenue", "offres.retenue", "candidatures.non_retenue"):
        before = access_decision(rule_json(ref.access_for(category, unsigned)), today=TODAY)
        assert before.pending and not before.communicable and before.rule_id == "MP-ACC-SA-25A"
        after = access_decision(rule_json(ref.access_for(category, signed)), today=TODAY)
        assert after.end_date == date(2050, 3, 1) and not after.communicable
    dce = access_decision(rule_json(ref.access_for("dce.rc", unsigned)), today=TODAY)
    assert dce.communicable and dce.reason == c.FREE
    ae = rule_json(ref.access_for("attribution.acte_engagement", signed))
    assert access_decision(ae, today=TODAY).reason == c.ELAPSED
    assert not access_decision(
        rule_json(ref.access_for("attribution.acte_engagement", unsigned)), today=TODAY
    ).communicable


def test_explanations_name_what_decided() -> None:
    assert "producer" in c.AccessDecision(communicable=True, reason=c.PRODUCER).explanation
    assert "disposal" in c.AccessDecision(communicable=False, reason=c.GONE).explanation
    assert "no access rule" in access_decision(None, today=TODAY).explanation
    elapsed = access_decision(rule(25, start="2000-01-01"), today=TODAY)
    assert elapsed.explanation == "communicable since 2025-01-01 under R (Règle)"
