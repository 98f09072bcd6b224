"""Events drive retention: the pure recomputation of core/retention.py.

Expected values come from procurement.md §2.4: DUA = max of the applicable rules (a works
contract: 10 years from réception and 10 years from paiement du solde), rules pending until
their start event is known, an infructuosité changing the sort final of the passation
pieces, and the suspension of the DUA while a dispute (contentieux) is open.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

import archive_service
from archive_service.core.model import FinalAction
from archive_service.core.retention import (
    CONTRADICTION,
    DUPLICATE,
    NEW,
    Dispute,
    Referential,
    ReferentialInvalid,
    UnitNode,
    check_event,
    compute_rules,
    dossier_facts,
    recompute_dossier,
    suspend,
)
from archive_service.errors import Conflict, InvalidInput

DATA = Path(archive_service.__file__).parent / "data" / "retention_referential.json"

NOTIFIED = date(2025, 3, 10)
RECEPTION = date(2027, 6, 30)
SOLDE = date(2027, 11, 15)


@pytest.fixture(scope="module")
def ref() -> Referential:
    return Referential.from_json(DATA.read_text("utf-8"))


# -- facts ---------------------------------------------------------------------------------------


def test_later_statement_of_a_date_replaces_the_earlier_one() -> None:
    facts = dossier_facts(
        contract_type="T",
        events=[("notification", NOTIFIED), ("reception", RECEPTION), ("reception", SOLDE)],
    )
    assert facts.events.notification == NOTIFIED
    assert facts.events.reception == SOLDE
    assert facts.disputes == ()


def test_infructuosite_and_sans_suite_events_set_their_flags() -> None:
    assert dossier_facts(contract_type="S", events=[("infructuosite", NOTIFIED)]).infructueux
    assert dossier_facts(contract_type="S", events=[("sans_suite", NOTIFIED)]).sans_suite
    plain = dossier_facts(contract_type="S", events=[("notification", NOTIFIED)])
    assert not plain.infructueux and not plain.sans_suite


def test_disputes_pair_openings_and_closings_in_order() -> None:
    facts = dossier_facts(
        contract_type="T",
        events=[
            ("dispute_opened", date(2028, 1, 1)),
            ("dispute_closed", date(2028, 3, 1)),
            ("dispute_opened", date(2029, 1, 1)),
        ],
    )
    assert facts.disputes == (
        Dispute(date(2028, 1, 1), date(2028, 3, 1)),
        Dispute(date(2029, 1, 1), None),
    )
    assert facts.dispute_open


# -- max of terms, pending -> dated ----------------------------------------------------------


def test_works_contract_pieces_stay_pending_until_both_start_events_are_known(
    ref: Referential,
) -> None:
    facts = dossier_facts(contract_type="T", events=[("notification", NOTIFIED)])
    rules = compute_rules(ref, "attribution.acte_engagement", facts)
    assert rules.appraisal.rule_id == "MP-CONST-TRV-10A"
    assert rules.appraisal.pending and rules.appraisal_end is None

    facts = dossier_facts(
        contract_type="T", events=[("notification", NOTIFIED), ("reception", RECEPTION)]
    )
    rules = compute_rules(ref, "attribution.acte_engagement", facts)
    assert rules.appraisal.pending, "paiement du solde is still unknown: no end yet"
    assert rules.appraisal.start_event == "paiement_solde"

    facts = dossier_facts(
        contract_type="T",
        events=[("notification", NOTIFIED), ("reception", RECEPTION), ("paiement_solde", SOLDE)],
    )
    rules = compute_rules(ref, "attribution.acte_engagement", facts)
    # 10 years from the solde (later than 10 years from réception): the max wins.
    assert rules.appraisal_end == date(2037, 11, 15)
    assert rules.appraisal.start_event == "paiement_solde"
    assert rules.appraisal.final_action is FinalAction.KEEP and rules.appraisal.review
    assert not rules.suspended


def test_the_latest_term_wins_whichever_event_it_runs_from(ref: Referential) -> None:
    late_reception = date(2028, 2, 1)  # réception after the solde (reserves lifted late)
    facts = dossier_facts(
        contract_type="T", events=[("reception", late_reception), ("paiement_solde", SOLDE)]
    )
    rules = compute_rules(ref, "execution.reception", facts)
    assert rules.appraisal.rule_id == "MP-OUV-10A"
    assert rules.appraisal_end == date(2038, 2, 1)
    assert rules.appraisal.start_event == "reception"


def test_unsuccessful_offers_run_five_years_from_notification(ref: Referential) -> None:
    facts = dossier_facts(contract_type="T", events=[("notification", NOTIFIED)])
    rules = compute_rules(ref, "offres.non_retenue", facts)
    assert rules.appraisal.rule_id == "MP-NR-5A"
    assert rules.appraisal_end == date(2030, 3, 10)
    assert rules.appraisal.final_action is FinalAction.DESTROY
    # Secret des affaires: 25 years from the signature, or the notification without one.
    assert rules.access.rule_id == "MP-ACC-SA-25A"
    assert rules.access_end == date(2050, 3, 10)


def test_an_infructuosite_event_changes_the_rule_and_dates_it(ref: Referential) -> None:
    before = compute_rules(ref, "offres.non_retenue", dossier_facts(contract_type="S"))
    assert before.appraisal.rule_id == "MP-NR-5A" and before.appraisal.pending
    declared = date(2025, 5, 2)
    after = compute_rules(
        ref,
        "offres.non_retenue",
        dossier_facts(contract_type="S", events=[("infructuosite", declared)]),
    )
    assert after.appraisal.rule_id == "MP-INF-5A"
    assert after.appraisal_end == date(2030, 5, 2)
    assert after.access.rule_id == "MP-ACC-SA-INF-25A"


# -- suspension arithmetic ---------------------------------------------------------------------


START, END = date(2027, 11, 15), date(2037, 11, 15)


def test_no_dispute_no_change() -> None:
    assert suspend(START, END, []) == (END, 0, False)


def test_an_open_dispute_suspends_the_dua_even_after_its_end() -> None:
    assert suspend(START, END, [Dispute(date(2030, 1, 1))]) == (None, 0, True)
    assert suspend(START, END, [Dispute(date(2040, 1, 1))]) == (None, 0, True)


def test_a_closed_dispute_pushes_the_end_by_its_length() -> None:
    dispute = Dispute(date(2030, 1, 1), date(2031, 4, 11))
    days = (dispute.closed - dispute.opened).days  # type: ignore[operator]
    assert days == 465
    assert suspend(START, END, [dispute]) == (END + timedelta(days=465), 465, False)


def test_a_dispute_before_the_start_pushes_nothing_and_a_straddling_one_its_running_part() -> None:
    before = Dispute(date(2026, 1, 1), date(2026, 6, 1))
    assert suspend(START, END, [before]) == (END, 0, False)
    straddling = Dispute(date(2027, 11, 5), date(2027, 11, 25))
    assert suspend(START, END, [straddling]) == (END + timedelta(days=10), 10, False)


def test_a_dispute_after_the_dua_ended_pushes_nothing_once_closed() -> None:
    after = Dispute(date(2038, 1, 1), date(2038, 6, 1))
    assert suspend(START, END, [after]) == (END, 0, False)


def test_disputes_count_in_order_so_one_in_the_extension_counts_too() -> None:
    first = Dispute(date(2030, 1, 1), date(2030, 3, 2))  # 60 days: end 2038-01-14
    second = Dispute(date(2038, 1, 1), date(2038, 1, 11))  # inside the extension: 10 days
    end, days, suspended = suspend(START, END, [second, first])
    assert (end, days, suspended) == (END + timedelta(days=70), 70, False)


def test_compute_rules_applies_disputes_to_the_dua_not_to_communicability(
    ref: Referential,
) -> None:
    events = [
        ("notification", NOTIFIED),
        ("dispute_opened", date(2026, 1, 10)),
    ]
    open_ = compute_rules(
        ref, "offres.non_retenue", dossier_facts(contract_type="T", events=events)
    )
    assert open_.suspended and open_.appraisal_end is None
    assert open_.appraisal.end_date == date(2030, 3, 10), "the rule's own end is still known"
    assert open_.access_end == date(2050, 3, 10)
    closed = compute_rules(
        ref,
        "offres.non_retenue",
        dossier_facts(contract_type="T", events=[*events, ("dispute_closed", date(2026, 4, 20))]),
    )
    assert not closed.suspended
    assert closed.suspension_days == 100
    assert closed.appraisal_end == date(2030, 3, 10) + timedelta(days=100)
    assert closed.access_end == date(2050, 3, 10)


def test_a_pending_rule_under_an_open_dispute_is_pending_and_suspended(ref: Referential) -> None:
    facts = dossier_facts(contract_type="T", events=[("dispute_opened", date(2026, 1, 10))])
    rules = compute_rules(ref, "attribution.acte_engagement", facts)
    assert rules.appraisal.pending and rules.suspended and rules.appraisal_end is None


# -- the dossier tree ------------------------------------------------------------------------


def test_recompute_dossier_touches_categorized_units_and_what_inherits_from_them(
    ref: Referential,
) -> None:
    facts = dossier_facts(contract_type="T", events=[("notification", NOTIFIED)])
    units = [
        UnitNode(id="root", parent_id=None, category=None, own_rule=False),
        UnitNode(id="phase", parent_id="root", category=None, own_rule=False),
        UnitNode(id="offer", parent_id="phase", category="offres.non_retenue", own_rule=True),
        UnitNode(id="annex", parent_id="offer", category=None, own_rule=False),
        UnitNode(id="gone", parent_id="phase", category="dce.rc", own_rule=True, active=False),
        UnitNode(id="foreign", parent_id="root", category=None, own_rule=True),
        UnitNode(id="foreign-child", parent_id="foreign", category=None, own_rule=False),
    ]
    out = recompute_dossier(ref, facts, units)
    assert set(out) == {"offer", "annex"}
    assert out["offer"].rules is not None
    assert out["offer"].appraisal_end == date(2030, 3, 10)
    assert out["annex"].rules is None, "no rule of its own: it inherits the ends"
    assert out["annex"].appraisal_end == date(2030, 3, 10)
    assert out["annex"].access_end == date(2050, 3, 10)


# -- checking a new event ------------------------------------------------------------------


TODAY = date(2026, 1, 1)


def test_check_event_new_duplicate_and_contradiction() -> None:
    known = [("notification", NOTIFIED)]
    assert check_event(known, "reception", date(2025, 12, 1), today=TODAY) == (NEW, None)
    assert check_event(known, "notification", NOTIFIED, today=TODAY) == (DUPLICATE, NOTIFIED)
    assert check_event(known, "notification", date(2025, 3, 11), today=TODAY) == (
        CONTRADICTION,
        NOTIFIED,
    )


def test_check_event_refuses_unknown_events_and_future_dates() -> None:
    with pytest.raises(InvalidInput, match="unknown dossier event"):
        check_event([], "fin_du_monde", TODAY, today=TODAY)
    with pytest.raises(InvalidInput, match="in the future"):
        check_event([], "reception", TODAY + timedelta(days=1), today=TODAY)
    assert check_event([], "reception", TODAY, today=TODAY) == (NEW, None)


def test_check_event_keeps_disputes_one_at_a_time_and_in_order() -> None:
    opened = date(2025, 6, 1)
    with pytest.raises(Conflict, match="no dispute is open"):
        check_event([], "dispute_closed", opened, today=TODAY)
    known = [("dispute_opened", opened)]
    with pytest.raises(Conflict, match="already open"):
        check_event(known, "dispute_opened", date(2025, 7, 1), today=TODAY)
    assert check_event(known, "dispute_opened", opened, today=TODAY) == (DUPLICATE, opened)
    with pytest.raises(InvalidInput, match="cannot close"):
        check_event(known, "dispute_closed", date(2025, 5, 1), today=TODAY)
    assert check_event(known, "dispute_closed", date(2025, 8, 1), today=TODAY) == (NEW, None)
    closed = [*known, ("dispute_closed", date(2025, 8, 1))]
    assert check_event(closed, "dispute_closed", date(2025, 8, 1), today=TODAY)[0] == DUPLICATE
    with pytest.raises(Conflict, match="no dispute is open"):
        check_event(closed, "dispute_closed", date(2025, 9, 1), today=TODAY)
    with pytest.raises(Conflict, match="before the previous one closed"):
        check_event(closed, "dispute_opened", date(2025, 7, 15), today=TODAY)
    assert check_event(closed, "dispute_opened", date(2025, 9, 1), today=TODAY) == (NEW, None)


def test_an_invalid_referential_lists_every_problem() -> None:
    with pytest.raises(ReferentialInvalid) as caught:
        Referential.from_json(
            '{"version": "x", "source": "y", "appraisal_rules": {"R": {"label": "r", '
            '"terms": [{"years": -1, "start_event": "demain"}], "final_action": "Burn", '
            '"basis": []}}, "access_rules": {}, "appraisal_profiles": {}, '
            '"access_profiles": {}, "categories": {}}'
        )
    problems = caught.value.problems
    assert any("years" in p for p in problems)
    assert any("demain" in p for p in problems)
    assert any("final_action" in p for p in problems)
    assert any("basis" in p for p in problems)
    assert any("has no rules" in p for p in problems)
    assert isinstance(caught.value, ValueError)
