"""A foreign transfer's management rules resolved into ours (core/sender_rules.py), fail-closed.

The référentiel is the default shipped with the service (our ids: MP-ACC-SA-25A is 25 years,
MP-DCE-5A 5 years Destroy, MP-CONST-TRV-10A two 10-year terms, Keep with review).
"""

from __future__ import annotations

import io
from datetime import date
from importlib import resources
from typing import Any

import pytest

from archive_service.core.communicability import UNKNOWN_SENDER_RULE, access_decision
from archive_service.core.retention import Referential
from archive_service.core.seda import SedaValidator, profile_dir
from archive_service.core.seda.sip import read_sip
from archive_service.core.sender_rules import (
    ACCESS,
    APPRAISAL,
    KNOWN_RULES,
    SenderUnit,
    known_rule,
    resolve_sender_rules,
)
from tests.seda_helpers import seda_xsd_dir
from tests.unit.test_sip_zipsafe import PDF, SMALL, Sink, build_zip, manifest_for


@pytest.fixture(scope="module")
def ref() -> Referential:
    text = resources.files("archive_service.data").joinpath("retention_referential.json")
    return Referential.from_json(text.read_text(encoding="utf-8"))


def rule(category: str, rule_id: str, start: str | None = None, action: str | None = None) -> Any:
    return {"category": category, "rule_id": rule_id, "start_date": start, "final_action": action}


def unit(uid: str, parent: str | None = None, *rules: Any, **inheritance: Any) -> SenderUnit:
    return SenderUnit(
        id=uid, parent_id=parent, sender_id=f"S-{uid}", rules=rules, inheritance=inheritance
    )


def test_our_access_rule_runs_25_years_from_the_senders_start_date(ref: Referential) -> None:
    got = resolve_sender_rules([unit("a", None, rule(ACCESS, "MP-ACC-SA-25A", "2020-01-01"))], ref)
    access = got["a"].access
    assert access is not None
    assert got["a"].access_end == date(2045, 1, 1)
    assert access["rule_id"] == "MP-ACC-SA-25A"
    assert access["duration_years"] == 25
    assert access["source"] == "sender"
    assert access["unresolved"] is False
    assert access["pending"] is False
    assert access["referential"] == ref.version
    assert got["a"].appraisal is None and got["a"].appraisal_end is None
    decision = access_decision(access, today=date(2044, 12, 31), recorded_end=got["a"].access_end)
    assert not decision.communicable and decision.end_date == date(2045, 1, 1)
    assert access_decision(access, today=date(2045, 1, 1)).communicable


def test_an_appraisal_rule_keeps_the_senders_final_action_and_dates_its_end(
    ref: Referential,
) -> None:
    got = resolve_sender_rules(
        [unit("a", None, rule(APPRAISAL, "MP-DCE-5A", "2015-03-01", "Destroy"))], ref
    )["a"]
    assert got.appraisal is not None
    assert got.appraisal_end == date(2020, 3, 1)
    assert got.appraisal["final_action"] == "Destroy"
    assert got.appraisal["review"] is False
    # Keep declared by the sender wins over the référentiel's Destroy.
    kept = resolve_sender_rules(
        [unit("a", None, rule(APPRAISAL, "MP-DCE-5A", "2015-03-01", "Keep"))], ref
    )["a"]
    assert kept.appraisal is not None and kept.appraisal["final_action"] == "Keep"


def test_a_rule_of_several_terms_counts_its_longest(ref: Referential) -> None:
    got = resolve_sender_rules(
        [unit("a", None, rule(APPRAISAL, "MP-CONST-TRV-10A", "2010-06-30", "Keep"))], ref
    )["a"]
    assert got.appraisal_end == date(2020, 6, 30)
    assert got.appraisal is not None and got.appraisal["review"] is True


def test_children_inherit_and_add_their_own_rules_the_latest_end_governs(
    ref: Referential,
) -> None:
    units = [
        unit("root", None, rule(ACCESS, "MP-ACC-SA-25A", "2020-01-01")),
        unit("child", "root", rule(ACCESS, "ACC-00011", "2001-01-01")),
        unit("grandchild", "child"),
        unit("shorter", "root", rule(ACCESS, "MP-ACC-SA-25A", "2010-01-01")),
    ]
    got = resolve_sender_rules(units, ref)
    assert got["child"].access_end == date(2051, 1, 1)  # ACC-00011: 50 years (Vitam)
    assert got["grandchild"].access_end == date(2051, 1, 1)
    grand = got["grandchild"].access
    assert grand is not None and grand["declared_on"] == "S-child"
    assert {r["rule_id"] for r in grand["rules"]} == {"MP-ACC-SA-25A", "ACC-00011"}
    # Its own rule with the inherited id replaces the inherited one (its own StartDate).
    assert got["shorter"].access_end == date(2035, 1, 1)


def test_prevent_inheritance_and_ref_non_rule_id_cut_what_is_inherited(
    ref: Referential,
) -> None:
    units = [
        unit(
            "root",
            None,
            rule(ACCESS, "MP-ACC-SA-25A", "2020-01-01"),
            rule(ACCESS, "ACC-00011", "2020-01-01"),
            rule(APPRAISAL, "MP-DCE-5A", "2015-01-01", "Destroy"),
        ),
        unit("free", "root", AccessRule={"prevent_inheritance": True}),
        unit("one", "root", AccessRule={"ref_non_rule_ids": ["ACC-00011"]}),
        unit("below-free", "free"),
    ]
    got = resolve_sender_rules(units, ref)
    assert got["root"].access_end == date(2070, 1, 1)
    # PreventInheritance with no rule of its own: recorded as such, freely communicable, and
    # its children inherit nothing either; the appraisal rule still comes down.
    free = got["free"].access
    assert free is not None and free["prevent_inheritance"] is True
    assert access_decision(free, today=date(2026, 1, 1)).communicable
    # Below it nothing is inherited (communicability falls back on its parent's record).
    assert got["below-free"].access is None and got["below-free"].access_end is None
    assert got["free"].appraisal_end == date(2020, 1, 1)
    # RefNonRuleId drops only the named rule.
    assert got["one"].access_end == date(2045, 1, 1)
    one = got["one"].access
    assert one is not None and [r["rule_id"] for r in one["rules"]] == ["MP-ACC-SA-25A"]


def test_an_unknown_access_rule_fails_closed(ref: Referential) -> None:
    units = [
        unit("a", None, rule(ACCESS, "AR038", "2020-01-01"), rule(ACCESS, "ACC-00001")),
        unit("b", "a"),
    ]
    got = resolve_sender_rules(units, ref)
    access = got["a"].access
    assert access is not None
    assert access["unresolved"] is True and access["rule_id"] == "AR038"
    assert access["duration_years"] is None and access["start_date"] == "2020-01-01"
    assert access["source"] == "sender" and access["label"] == "unknown sender rule AR038"
    assert got["a"].access_end is None
    decision = access_decision(access, today=date(2199, 1, 1))
    assert not decision.communicable and decision.reason == UNKNOWN_SENDER_RULE
    assert "unknown sender rule AR038" in decision.explanation
    inherited = got["b"].access
    assert inherited is not None and inherited["unresolved"] is True


def test_an_unknown_appraisal_rule_is_never_due(ref: Referential) -> None:
    got = resolve_sender_rules(
        [unit("a", None, rule(APPRAISAL, "APP-99999", "1990-01-01", "Destroy"))], ref
    )["a"]
    assert got.appraisal is not None
    assert got.appraisal_end is None
    assert {k: got.appraisal[k] for k in ("rule_id", "start_date", "final_action")} == {
        "rule_id": "APP-99999",
        "start_date": "1990-01-01",
        "final_action": "Destroy",
    }
    assert got.appraisal["duration_years"] is None
    assert got.appraisal["unresolved"] is True and got.appraisal["source"] == "sender"


def test_an_id_of_the_other_category_is_unknown(ref: Referential) -> None:
    assert known_rule(ref, ACCESS, "MP-DCE-5A") is None
    assert known_rule(ref, APPRAISAL, "ACC-00005") is None
    got = resolve_sender_rules([unit("a", None, rule(ACCESS, "MP-DCE-5A", "2020-01-01"))], ref)
    access = got["a"].access
    assert access is not None and access["unresolved"] is True


def test_a_missing_start_date_is_pending(ref: Referential) -> None:
    units = [
        unit(
            "a",
            None,
            rule(ACCESS, "MP-ACC-SA-25A"),
            rule(APPRAISAL, "MP-DCE-5A", None, "Destroy"),
        ),
        unit("b", None, rule(ACCESS, "MP-ACC-SA-25A", "2000-01-01"), rule(ACCESS, "ACC-00005")),
        unit("c", None, rule(ACCESS, "ACC-00001")),
    ]
    got = resolve_sender_rules(units, ref)
    a = got["a"]
    assert a.access_end is None and a.appraisal_end is None
    assert a.access is not None and a.access["pending"] is True
    assert not access_decision(a.access, today=date(2199, 1, 1)).communicable
    assert a.appraisal is not None and a.appraisal["pending"] is True
    # One undated rule among dated ones keeps the unit pending (fail-closed).
    assert got["b"].access_end is None
    assert got["b"].access is not None and got["b"].access["rule_id"] == "ACC-00005"
    # A zero délai restricts nothing, dated or not.
    assert got["c"].access is not None
    assert access_decision(got["c"].access, today=date(2026, 1, 1)).communicable


def test_without_the_referential_only_the_cited_table_resolves() -> None:
    got = resolve_sender_rules(
        [unit("a", None, rule(ACCESS, "ACC-00005", "2020-01-01"), rule(ACCESS, "MP-ACC-LIBRE"))],
        None,
    )["a"]
    assert got.access is not None and got.access["unresolved"] is True
    assert got.access["rule_id"] == "MP-ACC-LIBRE"
    assert all("regles_OK-complete.csv" in r.basis for r in KNOWN_RULES.values())


def test_a_missing_final_action_is_the_referentials_else_keep(ref: Referential) -> None:
    units = [
        unit("a", None, rule(APPRAISAL, "MP-DCE-5A", "2015-01-01")),
        unit("b", None, rule(APPRAISAL, "APP-00002", "2015-01-01")),
    ]
    got = resolve_sender_rules(units, ref)
    assert got["a"].appraisal is not None and got["a"].appraisal["final_action"] == "Destroy"
    assert got["b"].appraisal is not None and got["b"].appraisal["final_action"] == "Keep"
    assert got["b"].appraisal_end == date(2020, 1, 1)


def test_the_manifest_reader_records_prevent_inheritance_and_ref_non_rule_id() -> None:
    """What a unit's Management limits of its inheritance is read from a real manifest
    (validated against the official SEDA 2.3 XSD) into ``SipUnit.inheritance``."""

    management = (
        "<Management>"
        "<AppraisalRule><Rule>MP-DCE-5A</Rule><StartDate>2020-01-01</StartDate>"
        "<RefNonRuleId>APP-00002</RefNonRuleId><FinalAction>Destroy</FinalAction>"
        "</AppraisalRule>"
        "<AccessRule><PreventInheritance>true</PreventInheritance></AccessRule>"
        "</Management>"
    )
    xml = manifest_for(PDF).replace(
        b'<ArchiveUnit id="au1">', f'<ArchiveUnit id="au1">{management}'.encode()
    )
    check = read_sip(
        io.BytesIO(build_zip([("manifest.xml", xml), ("content/a.pdf", PDF)])),
        validator=SedaValidator(seda_xsd_dir(), profile_dir()),
        limits=SMALL,
        sink=Sink(),
    )
    assert check.accepted, check.issues
    assert check.transfer is not None
    unit = check.transfer.unit("au1")
    assert [
        (i.category, i.prevent_inheritance, i.ref_non_rule_ids, i.final_action)
        for i in unit.inheritance
    ] == [
        ("AppraisalRule", False, ("APP-00002",), "Destroy"),
        ("AccessRule", True, (), None),
    ]
    assert [(r.category, r.rule_id, r.start_date) for r in unit.rules] == [
        ("AppraisalRule", "MP-DCE-5A", "2020-01-01")
    ]
