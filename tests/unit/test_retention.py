"""The retention référentiel (core/retention.py, data/retention_referential.json).

Expected values come from procurement.md §2.4 (working retention table) and §2.5.
"""

from __future__ import annotations

import itertools
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import archive_service
from archive_service.core.model import FinalAction
from archive_service.core.procurement import (
    CATEGORIES,
    CONTRACT_TYPES,
    DossierEvents,
    DossierMetadata,
    FileEntry,
)
from archive_service.core.retention import NO_EVENT, Referential

DATA = Path(archive_service.__file__).parent / "data" / "retention_referential.json"


@pytest.fixture(scope="module")
def text() -> str:
    return DATA.read_text("utf-8")


@pytest.fixture(scope="module")
def ref(text: str) -> Referential:
    return Referential.from_json(text)


def dossier(contract_type: str = "S", **kwargs: Any) -> DossierMetadata:
    events = DossierEvents(**kwargs.pop("events", {}))
    return DossierMetadata(
        message_identifier="MSG-1",
        organization="21750001600019",
        title="Dossier de test",
        contract_type=contract_type,
        files=(FileEntry(path="a.pdf", category="dce.rc"),),
        events=events,
        **kwargs,
    )


NOTIFIED = date(2024, 5, 15)
SIGNED = date(2024, 5, 2)
SOLDE = date(2027, 3, 31)
RECEPTION = date(2026, 9, 30)


# --------------------------------------------------------------------------------------------
# The default file
# --------------------------------------------------------------------------------------------


def test_default_referential_loads_and_covers_every_category(ref: Referential) -> None:
    assert ref.version == "2026-11-default"
    assert "§2.4" in ref.source
    assert set(ref.categories) == {c.code for c in CATEGORIES}


def test_every_rule_has_a_basis(ref: Referential) -> None:
    for appraisal in ref.appraisal_rules.values():
        assert appraisal.basis and appraisal.label
        assert all(b.reference and b.source and b.confidence in "VSI" for b in appraisal.basis)
        if appraisal.review:
            assert appraisal.final_action is FinalAction.KEEP
    for access in ref.access_rules.values():
        assert access.basis and access.label


def test_every_category_resolves_for_every_kind_of_dossier(ref: Referential) -> None:
    events = {
        "signature": SIGNED,
        "notification": NOTIFIED,
        "infructuosite": NOTIFIED,
        "sans_suite": NOTIFIED,
        "reception": RECEPTION,
        "paiement_solde": SOLDE,
    }
    for kind, inf, ss, rec in itertools.product(CONTRACT_TYPES, *[(False, True)] * 3):
        meta = dossier(kind, infructueux=inf, sans_suite=ss, recurrent=rec, events=events)
        for category in CATEGORIES:
            appraisal = ref.appraisal_for(category.code, meta)
            access = ref.access_for(category.code, meta)
            assert not appraisal.pending, (category.code, kind, inf, ss, rec)
            assert appraisal.duration_years in (5, 10)
            assert access.duration_years in (0, 25)


def test_unknown_category(ref: Referential) -> None:
    with pytest.raises(KeyError, match=r"offres\.perdante"):
        ref.appraisal_for("offres.perdante", dossier())


# --------------------------------------------------------------------------------------------
# Appraisal rules (§2.4)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["offres.non_retenue", "candidatures.non_retenue"])
def test_unsuccessful_offers_destroyed_5_years_after_notification(
    ref: Referential, category: str
) -> None:
    rule = ref.appraisal_for(category, dossier(events={"notification": NOTIFIED}))
    assert rule.rule_id == "MP-NR-5A"
    assert (rule.duration_years, rule.start_event, rule.start_date) == (5, "notification", NOTIFIED)
    assert rule.final_action is FinalAction.DESTROY and not rule.review
    assert rule.end_date == date(2029, 5, 15)


def test_dce_copies_destroyed_after_5_years(ref: Referential) -> None:
    rule = ref.appraisal_for("dce.cctp", dossier(events={"notification": NOTIFIED}))
    assert (rule.rule_id, rule.final_action) == ("MP-DCE-5A", FinalAction.DESTROY)


def test_analysis_kept(ref: Referential) -> None:
    rule = ref.appraisal_for("analyse.rao", dossier(events={"notification": NOTIFIED}))
    assert (rule.rule_id, rule.final_action, rule.review) == ("MP-ANA-5A", FinalAction.KEEP, False)


def test_contract_pieces_pending_until_final_payment(ref: Referential) -> None:
    before = ref.appraisal_for(
        "attribution.acte_engagement", dossier(events={"notification": NOTIFIED})
    )
    assert before.rule_id == "MP-CONST-10A"
    assert before.pending and before.end_date is None
    assert (before.duration_years, before.start_event) == (10, "paiement_solde")
    assert before.final_action is FinalAction.KEEP and before.review  # tri

    after = ref.appraisal_for(
        "attribution.acte_engagement",
        dossier(events={"notification": NOTIFIED, "paiement_solde": SOLDE}),
    )
    assert not after.pending
    assert after.end_date == date(2037, 3, 31)


def test_works_contract_is_max_of_reception_and_final_payment(ref: Referential) -> None:
    usual = ref.appraisal_for(
        "attribution.marche_signe",
        dossier("T", events={"reception": RECEPTION, "paiement_solde": SOLDE}),
    )
    assert usual.rule_id == "MP-CONST-TRV-10A"
    assert (usual.start_event, usual.end_date) == ("paiement_solde", date(2037, 3, 31))

    late_reception = date(2028, 1, 10)  # réception after the solde: it decides
    odd = ref.appraisal_for(
        "attribution.marche_signe",
        dossier("MO", events={"reception": late_reception, "paiement_solde": SOLDE}),
    )
    assert (odd.start_event, odd.end_date) == ("reception", date(2038, 1, 10))


def test_works_contract_pending_while_one_date_is_unknown(ref: Referential) -> None:
    rule = ref.appraisal_for("execution.avenant", dossier("T", events={"paiement_solde": SOLDE}))
    assert rule.rule_id == "MP-EXE-TRV-10A"
    assert rule.pending and rule.start_event == "reception"


def test_services_contract_ignores_reception(ref: Referential) -> None:
    rule = ref.appraisal_for("execution.avenant", dossier("S", events={"paiement_solde": SOLDE}))
    assert rule.rule_id == "MP-EXE-10A" and not rule.pending


def test_works_documents_follow_reception(ref: Referential) -> None:
    rule = ref.appraisal_for(
        "execution.doe", dossier("T", events={"reception": RECEPTION, "paiement_solde": SOLDE})
    )
    assert rule.rule_id == "MP-OUV-10A"
    assert rule.final_action is FinalAction.KEEP and not rule.review
    assert rule.end_date == date(2037, 3, 31)


@pytest.mark.parametrize(
    ("kind", "category", "expected"),
    [
        ("S", "attribution.acte_engagement", "MP-CONST-REC-10A"),
        ("T", "attribution.acte_engagement", "MP-CONST-TRV-REC-10A"),
        ("F", "execution.bon_commande", "MP-EXE-REC-10A"),
        ("S", "preparation.besoin", "MP-PREP-REC-5A"),
    ],
)
def test_recurrent_turns_tri_into_destroy(
    ref: Referential, kind: str, category: str, expected: str
) -> None:
    events = {"notification": NOTIFIED, "reception": RECEPTION, "paiement_solde": SOLDE}
    normal = ref.appraisal_for(category, dossier(kind, events=events))
    recurrent = ref.appraisal_for(category, dossier(kind, recurrent=True, events=events))
    assert normal.final_action is FinalAction.KEEP and normal.review
    assert recurrent.rule_id == expected
    assert recurrent.final_action is FinalAction.DESTROY and not recurrent.review
    assert recurrent.end_date == normal.end_date


def test_recurrent_does_not_change_non_tri_rules(ref: Referential) -> None:
    meta = dossier(recurrent=True, events={"notification": NOTIFIED})
    assert ref.appraisal_for("analyse.pv_cao", meta).final_action is FinalAction.KEEP
    assert ref.appraisal_for("offres.non_retenue", meta).rule_id == "MP-NR-5A"


@pytest.mark.parametrize(
    "category", ["offres.non_retenue", "dce.rc", "analyse.rao", "publicite.avis"]
)
def test_infructueux_switches_start_event(ref: Referential, category: str) -> None:
    pending = ref.appraisal_for(category, dossier(infructueux=True))
    assert (pending.rule_id, pending.start_event) == ("MP-INF-5A", "infructuosite")
    assert pending.pending
    decided = ref.appraisal_for(
        category, dossier(infructueux=True, events={"infructuosite": date(2025, 6, 1)})
    )
    assert decided.end_date == date(2030, 6, 1)
    assert decided.final_action is FinalAction.DESTROY


def test_sans_suite_switches_start_event(ref: Referential) -> None:
    rule = ref.appraisal_for("offres.non_retenue", dossier(sans_suite=True))
    assert (rule.rule_id, rule.start_event) == ("MP-SS-5A", "sans_suite")


def test_infructuosite_decision_kept_10_years_for_review(ref: Referential) -> None:
    rule = ref.appraisal_for(
        "attribution.infructuosite",
        dossier(infructueux=True, events={"infructuosite": date(2025, 6, 1)}),
    )
    assert rule.rule_id == "MP-INF-DEC-10A"
    assert (rule.duration_years, rule.final_action, rule.review) == (10, FinalAction.KEEP, True)
    assert rule.end_date == date(2035, 6, 1)


def test_contract_pieces_are_not_shortened_by_infructueux_flag(ref: Referential) -> None:
    """A marché that exists keeps its 10-year rule even if the dossier is flagged infructueux."""
    rule = ref.appraisal_for("attribution.acte_engagement", dossier(infructueux=True))
    assert rule.rule_id == "MP-CONST-10A"


def test_rule_definition_explains_why(ref: Referential) -> None:
    definition = ref.appraisal_rule_for("offres.non_retenue", dossier())
    assert definition.table_row == 3
    assert any("R2184-12" in b.reference for b in definition.basis)


# --------------------------------------------------------------------------------------------
# Access rules (§2.5)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["offres.retenue", "offres.non_retenue"])
def test_offers_secret_des_affaires_25_years_from_signature(
    ref: Referential, category: str
) -> None:
    rule = ref.access_for(category, dossier(events={"signature": SIGNED, "notification": NOTIFIED}))
    assert rule.rule_id == "MP-ACC-SA-25A"
    assert (rule.duration_years, rule.start_event, rule.start_date) == (25, "signature", SIGNED)
    assert rule.end_date == date(2049, 5, 2)
    assert any("L213-2" in b.reference for b in ref.access_rule_for(category, dossier()).basis)


def test_offers_fall_back_to_notification_then_pending(ref: Referential) -> None:
    fallback = ref.access_for("offres.retenue", dossier(events={"notification": NOTIFIED}))
    assert (fallback.start_event, fallback.start_date) == ("notification", NOTIFIED)
    pending = ref.access_for("offres.retenue", dossier())
    assert pending.pending and pending.start_event == "signature"


def test_offers_of_unsuccessful_procedure(ref: Referential) -> None:
    rule = ref.access_for("offres.non_retenue", dossier(infructueux=True))
    assert (rule.rule_id, rule.start_event, rule.duration_years) == (
        "MP-ACC-SA-INF-25A",
        "infructuosite",
        25,
    )


def test_contract_communicable_after_signature(ref: Referential) -> None:
    rule = ref.access_for("attribution.acte_engagement", dossier(events={"signature": SIGNED}))
    assert (rule.rule_id, rule.duration_years, rule.start_event) == ("MP-ACC-SIGN", 0, "signature")
    assert rule.start_date == SIGNED
    before = ref.access_for("attribution.acte_engagement", dossier())
    assert before.start_date is None and before.start_event == "signature"


@pytest.mark.parametrize("category", ["dce.rc", "publicite.avis", "donnees.decp"])
def test_final_or_published_documents_are_communicable(ref: Referential, category: str) -> None:
    rule = ref.access_for(category, dossier())
    assert (rule.rule_id, rule.duration_years, rule.start_event) == ("MP-ACC-LIBRE", 0, NO_EVENT)
    assert not rule.pending and rule.end_date is None


# --------------------------------------------------------------------------------------------
# Validation of a référentiel file
# --------------------------------------------------------------------------------------------


def _broken(text: str, change: Any) -> str:
    doc = json.loads(text)
    change(doc)
    return json.dumps(doc)


def test_not_json() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        Referential.from_json("{")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["categories"].pop("dce.rc"), "'dce.rc' has no rules"),
        (
            lambda d: d["categories"].update({"dce.x": d["categories"]["dce.rc"]}),
            "categories.dce.x",
        ),
        (lambda d: d["appraisal_profiles"]["dce"][-1].update(rule="MP-NOPE"), "unknown rule"),
        (lambda d: d["appraisal_profiles"]["dce"].reverse(), "last case must have no 'when'"),
        (lambda d: d["appraisal_rules"]["MP-DCE-5A"].update(review=True), "tri (review)"),
        (
            lambda d: d["appraisal_rules"]["MP-DCE-5A"].update(final_action="Tri"),
            "Keep' or 'Destroy",
        ),
        (
            lambda d: d["appraisal_rules"]["MP-DCE-5A"]["terms"][0].update(start_event="livraison"),
            "unknown start event",
        ),
        (lambda d: d["appraisal_rules"]["MP-DCE-5A"]["terms"][0].update(years=-1), "years >= 0"),
        (lambda d: d["appraisal_rules"]["MP-DCE-5A"].update(basis=[]), "basis"),
        (lambda d: d["access_rules"]["MP-ACC-SA-25A"].update(start_events=[]), "needs a start"),
        (lambda d: d["categories"]["dce.rc"].update(access="nope"), "unknown access profile"),
        (
            lambda d: d["access_profiles"]["passation"][0]["when"].update(contract_type=["X"]),
            "among",
        ),
        (lambda d: d.pop("version"), "missing key 'version'"),
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
    ],
)
def test_bad_referential_is_refused(text: str, change: Any, message: str) -> None:
    with pytest.raises(ValueError, match="invalid retention referential") as caught:
        Referential.from_json(_broken(text, change))
    assert message in str(caught.value)


def test_all_problems_are_listed(text: str) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["categories"].pop("dce.rc")
        doc["appraisal_rules"]["MP-DCE-5A"]["final_action"] = "Tri"

    with pytest.raises(ValueError) as caught:
        Referential.from_json(_broken(text, change))
    assert "'dce.rc' has no rules" in str(caught.value)
    assert "Keep' or 'Destroy" in str(caught.value)
