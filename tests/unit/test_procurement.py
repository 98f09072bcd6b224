"""Procurement metadata, document categories and the dossier tree (core/procurement.py).

The DECP blocks come from the official DECP 2.0.3 examples (``shared/decp/exemples``), located
next to the schema named by ``ARCHIVE_DECP_SCHEMA``. Without them the tests skip, except in CI
(``CI=true``) where missing reference data is a failure.
"""

from __future__ import annotations

import copy
import json
import os
import unicodedata
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from archive_service.core.model import (
    DataObject,
    DescriptionLevel,
    FileFingerprints,
    FinalAction,
    Fingerprint,
    FormatInfo,
)
from archive_service.core.procurement import (
    CATEGORIES,
    CATEGORY_BY_CODE,
    DOSSIER_EXTENSION_FIELDS,
    PHASE_BY_CODE,
    PHASES,
    DossierMetadata,
    build_dossier_tree,
    cpv_root,
    is_valid_cpv,
    is_valid_siret,
    parse_metadata,
    path_problem,
    siret_problem,
)
from archive_service.core.retention import Referential
from archive_service.errors import InvalidInput, Issue

DEFAULT_SCHEMA = "/work/shared/decp/schema_decp_v2.0.3.json"
BUYER = "21750001630040"  # acheteur of the official example "TEST2022Bis" (valid SIRET)
SHA = "A" * 64


def _reference(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"DECP reference data missing in CI: {path} (set ARCHIVE_DECP_SCHEMA)")
        pytest.skip(f"DECP reference data not found at {path}; set ARCHIVE_DECP_SCHEMA")
    return path


@pytest.fixture(scope="module")
def schema_path() -> Path:
    return _reference(Path(os.environ.get("ARCHIVE_DECP_SCHEMA", DEFAULT_SCHEMA)))


@pytest.fixture(scope="module")
def examples(schema_path: Path) -> list[dict[str, Any]]:
    path = _reference(schema_path.parent / "exemples" / "marches_avec_modifications.json")
    marches: list[dict[str, Any]] = json.loads(path.read_text("utf-8"))["marches"]["marche"]
    return marches


@pytest.fixture
def decp(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The official example marché "TEST2022Bis" (works, CPV 45000000-7, notified 2024-05-15)."""
    marche = next(m for m in examples if m["id"] == "TEST2022Bis")
    return copy.deepcopy(marche)


@pytest.fixture(scope="module")
def schema_validator(schema_path: Path) -> Callable[[dict[str, Any]], list[str]]:
    """What the service layer provides: the official ``marche`` definition with jsonschema."""
    from jsonschema import Draft7Validator

    schema = json.loads(schema_path.read_text("utf-8"))
    validator = Draft7Validator(
        {"$ref": "#/definitions/marche", "definitions": schema["definitions"]}
    )

    def check(marche: dict[str, Any]) -> list[str]:
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '(marche)'}: {error.message}"
            for error in sorted(validator.iter_errors(marche), key=lambda e: list(e.absolute_path))
        ]

    return check


def metadata(decp: dict[str, Any] | None, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "message_identifier": "MAXI-2026-000123",
        "organization": BUYER,
        "title": "Construction du gymnase Jean Moulin",
        "description": "Marché de travaux, lot unique",
        "consultation_number": "2025-T-017",
        "contract_number": "TEST2022Bis",
        "contract_type": "T",
        "procedure_type": "AOO",
        "infructueux": False,
        "sans_suite": False,
        "recurrent": False,
        "keywords": ["gymnase", "travaux"],
        "events": {"signature": "2024-05-02"},
        "decp": decp,
        "files": [
            {"path": "2-DCE/RC.pdf", "category": "dce.rc", "sha256": SHA},
            {"path": "2-DCE/CCAP.pdf", "category": "dce.ccap", "title": "CCAP signé"},
            {"path": "4-Offres/Entreprise A/memoire.pdf", "category": "offres.retenue"},
            {"path": "4-Offres/Entreprise B/memoire.pdf", "category": "offres.non_retenue"},
            {"path": "6-Attribution/NOTI5.pdf", "category": "attribution.notification"},
            {"path": "7-Execution/PV réception.pdf", "category": "execution.reception"},
            {"path": "decp.json", "category": "donnees.decp", "mime_type": "application/json"},
        ],
    }
    if decp is None:
        del raw["decp"]
    raw.update(overrides)
    return raw


def issues_of(raw: object, **kwargs: Any) -> list[Issue]:
    with pytest.raises(InvalidInput) as caught:
        parse_metadata(raw, **kwargs)
    assert caught.value.issues, "InvalidInput must carry at least one issue"
    return list(caught.value.issues)


def where(issues: Iterable[Issue]) -> set[tuple[str, str | None]]:
    return {(i.code, i.location) for i in issues}


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


def test_every_category_is_phase_dot_name_with_a_french_label() -> None:
    codes = [c.code for c in CATEGORIES]
    assert len(codes) == len(set(codes))
    for category in CATEGORIES:
        phase, _, name = category.code.partition(".")
        assert phase in PHASE_BY_CODE and name, category.code
        assert category.phase == phase
        assert category.label.strip()
    assert {c.phase for c in CATEGORIES} == {p.code for p in PHASES}


def test_vocabulary_carries_daj_and_pastell_codes() -> None:
    assert "NOTI3" in CATEGORY_BY_CODE["attribution.rejet"].forms
    assert "EXE10" in CATEGORY_BY_CODE["execution.avenant"].forms
    assert "DC1" in CATEGORY_BY_CODE["candidatures.non_retenue"].forms
    assert "OS" in CATEGORY_BY_CODE["execution.ordre_service"].pastell
    assert PHASE_BY_CODE["dce"].label == "Dossier de consultation des entreprises (DCE)"


# --------------------------------------------------------------------------------------------
# SIRET and CPV
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("siret", [BUYER, "21750001600019", "55204599900869", "73282932000074"])
def test_valid_siret(siret: str) -> None:
    assert is_valid_siret(siret)
    assert is_valid_siret(siret)


@pytest.mark.parametrize(
    ("siret", "reason"),
    [
        ("21750001630066", "Luhn"),  # acheteur of the official example "TEST2022": bad key
        ("12345678010005", "SIREN"),  # SIRET key fine, SIREN key wrong
        ("2175000160001", "14 chiffres"),
        ("217500016000190", "14 chiffres"),
        ("2175000160001A", "14 chiffres"),
        ("２１７５０００１６０００１９", "14 chiffres"),  # full-width digits
    ],
)
def test_invalid_siret(siret: str, reason: str) -> None:
    problem = siret_problem(siret)
    assert problem is not None and reason in problem


def test_la_poste_siret_uses_digit_sum_except_head_office() -> None:
    assert is_valid_siret("35600000000001")  # digit sum 15, Luhn would refuse it
    assert not is_valid_siret("35600000000014")
    assert "La Poste" in (siret_problem("35600000000014") or "")
    assert is_valid_siret("35600000000048")  # head office keeps Luhn


@pytest.mark.parametrize("code", ["45000000-7", "45000000", "03111000-2", "09100000-0"])
def test_cpv_shape_accepted(code: str) -> None:
    assert is_valid_cpv(code)


def test_cpv_check_digit_is_not_verified() -> None:
    """No published algorithm reproduces the official check digits: pattern only."""
    assert is_valid_cpv("45000000-3")


@pytest.mark.parametrize(
    "code", ["4500000", "450000000", "45000000-77", "45000000-X", " 45000000", "45000000-"]
)
def test_cpv_shape_refused(code: str) -> None:
    assert not is_valid_cpv(code)


def test_cpv_root_drops_check_digit() -> None:
    assert cpv_root("45000000-7") == "45000000"
    assert cpv_root("45000000") == "45000000"


# --------------------------------------------------------------------------------------------
# parse_metadata: the happy path
# --------------------------------------------------------------------------------------------


def test_parse_real_decp_example(decp: dict[str, Any]) -> None:
    raw = metadata(decp)
    meta = parse_metadata(raw)
    assert meta.organization == BUYER
    assert meta.contract_type == "T" and meta.procedure_type == "AOO"
    assert meta.keywords == ("gymnase", "travaux")
    assert meta.events.signature == date(2024, 5, 2)
    assert meta.events.notification == date(2024, 5, 15)  # from decp.dateNotification
    assert meta.files[0].sha256 == "a" * 64  # normalised to lowercase
    assert meta.files[1].title == "CCAP signé"
    assert meta.files[6].mime_type == "application/json"
    # Lossless: the DECP object is kept exactly as given, not aliased.
    assert meta.decp == decp
    assert meta.decp is not decp
    assert meta.marche is not None
    assert meta.marche.id == "TEST2022Bis"
    assert meta.marche.cpv_code == "45000000-7"
    assert meta.marche.montant == 575000
    assert meta.marche.procedure == "Appel d'offres ouvert"
    assert [(t.id_type, t.id) for t in meta.marche.titulaires] == [("SIRET", "55204599900869")]


def test_parse_does_not_mutate_input(decp: dict[str, Any]) -> None:
    raw = metadata(decp)
    before = copy.deepcopy(raw)
    parse_metadata(raw)
    assert raw == before


def test_parse_with_official_schema_validator(
    decp: dict[str, Any], schema_validator: Callable[[dict[str, Any]], list[str]]
) -> None:
    meta = parse_metadata(metadata(decp), decp_validator=schema_validator)
    assert meta.marche is not None


def test_schema_validator_messages_become_issues(
    decp: dict[str, Any], schema_validator: Callable[[dict[str, Any]], list[str]]
) -> None:
    decp["nomAcheteur"] = "Ville de Paris"  # not a DECP 2.0.3 property (additionalProperties)
    del decp["ccag"]  # required by the schema, not used by us
    found = issues_of(metadata(decp), decp_validator=schema_validator)
    assert {i.code for i in found} == {"decp-schema"}
    assert {i.location for i in found} == {"/decp"}
    assert len(found) == 2
    assert any("nomAcheteur" in i.message for i in found)
    assert any("ccag" in i.message for i in found)


def test_infructueux_without_decp() -> None:
    raw = metadata(
        None,
        infructueux=True,
        events={"infructuosite": "2025-06-01"},
        files=[{"path": "PV infructuosité.pdf", "category": "attribution.infructuosite"}],
    )
    meta = parse_metadata(raw)
    assert meta.decp is None and meta.marche is None
    assert meta.events.infructuosite == date(2025, 6, 1)
    assert meta.events.notification is None


def test_cpv_without_check_digit_accepted(decp: dict[str, Any]) -> None:
    decp["codeCPV"] = "45000000"
    assert parse_metadata(metadata(decp)).marche is not None


def test_declared_notification_matching_decp_is_kept(decp: dict[str, Any]) -> None:
    meta = parse_metadata(metadata(decp, events={"notification": "2024-05-15"}))
    assert meta.events.notification == date(2024, 5, 15)


# --------------------------------------------------------------------------------------------
# parse_metadata: one issue per problem, at the right pointer
# --------------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = raw
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = raw
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]

    return mutate


def _both(*mutators: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        for mutator in mutators:
            mutator(raw)

    return mutate


BAD_FIELDS = [
    (_drop("message_identifier"), "missing-field", "/message_identifier"),
    (_set("message_identifier", "x" * 129), "invalid-length", "/message_identifier"),
    (_set("message_identifier", "MAXI\x07"), "invalid-value", "/message_identifier"),
    (_set("message_identifier", ""), "invalid-value", "/message_identifier"),
    (
        _both(_set("organization", "21750001630066"), _set("decp/acheteur/id", "21750001630066")),
        "invalid-siret",
        "/organization",
    ),
    (_set("organization", 21750001630040), "invalid-type", "/organization"),
    (_drop("title"), "missing-field", "/title"),
    (_set("title", "   "), "invalid-value", "/title"),
    (_set("description", "ligne\x00"), "invalid-value", "/description"),
    (_set("consultation_number", 17), "invalid-type", "/consultation_number"),
    (_set("contract_type", "X"), "invalid-value", "/contract_type"),
    (_drop("contract_type"), "missing-field", "/contract_type"),
    (_set("procedure_type", "AO"), "invalid-value", "/procedure_type"),
    (_set("recurrent", "oui"), "invalid-type", "/recurrent"),
    (_set("infructueux", 1), "invalid-type", "/infructueux"),
    (_set("keywords", "gymnase"), "invalid-type", "/keywords"),
    (_set("keywords/1", ""), "invalid-value", "/keywords/1"),
    (_set("events/signature", "2024-02-30"), "invalid-date", "/events/signature"),
    (_set("events/signature", "2024-05-02T10:00:00+02:00"), "invalid-date", "/events/signature"),
    (_set("events/livraison", "2024-05-02"), "unknown-event", "/events/livraison"),
    (_set("events/notification", "2024-05-16"), "event-conflict", "/events/notification"),
    (_set("events", ["2024-05-02"]), "invalid-type", "/events"),
    (_set("colour", "blue"), "unknown-field", "/colour"),
    (lambda raw: raw.update({"a/b~c": 1}), "unknown-field", "/a~1b~0c"),  # RFC 6901 escapes
    (_drop("decp"), "missing-field", "/decp"),
    (_set("decp", []), "invalid-type", "/decp"),
    (_set("decp/id", "12345678901234567"), "invalid-length", "/decp/id"),
    (_drop("decp/id"), "missing-field", "/decp/id"),
    (_set("decp/acheteur/id", "21750001600019"), "buyer-mismatch", "/decp/acheteur/id"),
    (_set("decp/acheteur", "21750001630040"), "invalid-type", "/decp/acheteur"),
    (_set("decp/nature", "Concession"), "invalid-value", "/decp/nature"),
    (_set("decp/objet", "o" * 1001), "invalid-length", "/decp/objet"),
    (_set("decp/codeCPV", "4500000-7"), "invalid-cpv", "/decp/codeCPV"),
    (_set("decp/procedure", "AOO"), "invalid-value", "/decp/procedure"),
    (_set("decp/dateNotification", "15/05/2024"), "invalid-date", "/decp/dateNotification"),
    (_drop("decp/dateNotification"), "missing-field", "/decp/dateNotification"),
    (_set("decp/montant", 0), "invalid-value", "/decp/montant"),
    (_set("decp/montant", "575000"), "invalid-type", "/decp/montant"),
    (_set("decp/montant", True), "invalid-type", "/decp/montant"),
    (_set("decp/montant", float("nan")), "invalid-type", "/decp/montant"),
    (_set("decp/titulaires", []), "invalid-value", "/decp/titulaires"),
    (
        _set("decp/titulaires", [{"id": "55204599900869", "typeIdentifiant": "SIRET"}]),
        "invalid-type",
        "/decp/titulaires/0",
    ),
    (
        _drop("decp/titulaires/0/titulaire/typeIdentifiant"),
        "missing-field",
        "/decp/titulaires/0/titulaire/typeIdentifiant",
    ),
    (
        _set("decp/titulaires/0/titulaire/typeIdentifiant", "DUNS"),
        "invalid-value",
        "/decp/titulaires/0/titulaire/typeIdentifiant",
    ),
    (_drop("files"), "missing-field", "/files"),
    (_set("files", []), "invalid-value", "/files"),
    (_set("files/3", "memoire.pdf"), "invalid-type", "/files/3"),
    (_set("files/3/category", "offres.perdante"), "unknown-category", "/files/3/category"),
    (_drop("files/3/category"), "missing-field", "/files/3/category"),
    (_set("files/0/sha256", "abc"), "invalid-sha256", "/files/0/sha256"),
    (_set("files/0/sha256", "g" * 64), "invalid-sha256", "/files/0/sha256"),
    (_set("files/0/mime_type", "pdf"), "invalid-value", "/files/0/mime_type"),
    (_set("files/0/title", 3), "invalid-type", "/files/0/title"),
    (_set("files/0/size", 3), "unknown-field", "/files/0/size"),
]


@pytest.mark.parametrize(("mutate", "code", "location"), BAD_FIELDS)
def test_each_bad_field_gives_one_issue_at_its_pointer(
    decp: dict[str, Any], mutate: Callable[[dict[str, Any]], None], code: str, location: str
) -> None:
    raw = metadata(decp)
    mutate(raw)
    found = issues_of(raw)
    assert where(found) == {(code, location)}, found
    assert len(found) == 1
    assert all(i.message for i in found)


def test_several_problems_give_several_issues(decp: dict[str, Any]) -> None:
    decp["codeCPV"] = "CPV45"
    decp["montant"] = -3
    raw = metadata(decp, organization="21750001630066", contract_type="Z", extra=True)
    raw["files"][2]["category"] = "nope"
    raw["files"][4]["path"] = "../../etc/passwd"
    found = issues_of(raw)
    assert where(found) == {
        ("unknown-field", "/extra"),
        ("invalid-siret", "/organization"),
        ("invalid-value", "/contract_type"),
        # decp.acheteur.id is compared with what was sent as organization
        ("buyer-mismatch", "/decp/acheteur/id"),
        ("invalid-cpv", "/decp/codeCPV"),
        ("invalid-value", "/decp/montant"),
        ("unknown-category", "/files/2/category"),
        ("invalid-path", "/files/4/path"),
    }


def test_official_example_with_bad_buyer_siret_is_refused(
    examples: list[dict[str, Any]],
) -> None:
    """The official example "TEST2022" has acheteur 21750001630066, whose Luhn key is wrong."""
    marche = copy.deepcopy(next(m for m in examples if m["id"] == "TEST2022"))
    found = issues_of(metadata(marche, organization=marche["acheteur"]["id"]))
    assert where(found) == {("invalid-siret", "/organization")}


def test_not_an_object() -> None:
    found = issues_of(["not", "an", "object"])
    assert where(found) == {("invalid-type", "")}


def test_invalid_input_message_counts_issues(decp: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_metadata(metadata(decp, title="", contract_type="Z"))
    assert "2 problèmes" in caught.value.message


# --------------------------------------------------------------------------------------------
# File paths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../secret.pdf",
        "a/../../b.pdf",
        "a/..",
        "/etc/passwd",
        "a\\b.pdf",
        "a\x00b.pdf",
        "a\nb.pdf",
        "a\x7fb.pdf",
        "a\x85b.pdf",  # C1 control (NEL)
        "a//b.pdf",
        "dossier/",
        "./a.pdf",
        "a/" + "x" * 256,
        "",
    ],
)
def test_bad_paths_are_refused(decp: dict[str, Any], path: str) -> None:
    raw = metadata(decp)
    raw["files"][1]["path"] = path
    found = issues_of(raw)
    codes = where(found)
    assert codes in (
        {("invalid-path", "/files/1/path")},
        {("invalid-value", "/files/1/path")},  # empty string
    ), found


def test_segment_of_255_characters_is_accepted() -> None:
    assert path_problem("a/" + "x" * 255) is None


def test_duplicate_paths_after_nfc_normalisation(decp: dict[str, Any]) -> None:
    composed = unicodedata.normalize("NFC", "Réception/PV.pdf")
    decomposed = unicodedata.normalize("NFD", "Réception/PV.pdf")
    assert composed != decomposed
    raw = metadata(decp)
    raw["files"][1]["path"] = composed
    raw["files"][3]["path"] = decomposed
    found = issues_of(raw)
    assert where(found) == {("duplicate-path", "/files/3/path")}
    assert "/files/1/path" in found[0].message


def test_exact_duplicate_path(decp: dict[str, Any]) -> None:
    raw = metadata(decp)
    raw["files"][5]["path"] = raw["files"][0]["path"]
    assert where(issues_of(raw)) == {("duplicate-path", "/files/5/path")}


def test_paths_differing_by_case_are_distinct_and_kept_as_given(decp: dict[str, Any]) -> None:
    raw = metadata(decp)
    raw["files"][0]["path"] = "DCE/RC.pdf"
    raw["files"][1]["path"] = "dce/rc.pdf"
    raw["files"][2]["path"] = unicodedata.normalize("NFD", "Offres/Mémoire.pdf")
    meta = parse_metadata(raw)
    assert meta.files[0].path == "DCE/RC.pdf" and meta.files[1].path == "dce/rc.pdf"
    assert meta.files[2].path == unicodedata.normalize("NFD", "Offres/Mémoire.pdf")


# --------------------------------------------------------------------------------------------
# The official schema accepts every DECP block these tests accept
# --------------------------------------------------------------------------------------------


def _accepted_decp_blocks(decp: dict[str, Any]) -> list[dict[str, Any]]:
    without_check_digit = copy.deepcopy(decp)
    without_check_digit["codeCPV"] = "45000000"
    return [decp, without_check_digit]


def test_accepted_decp_blocks_validate_against_official_schema(
    decp: dict[str, Any], schema_validator: Callable[[dict[str, Any]], list[str]]
) -> None:
    for block in _accepted_decp_blocks(decp):
        assert parse_metadata(metadata(block)).marche is not None
        assert schema_validator(block) == []


# --------------------------------------------------------------------------------------------
# The dossier tree
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def referential() -> Referential:
    import archive_service

    text = (
        Path(archive_service.__file__).parent / "data" / "retention_referential.json"
    ).read_text("utf-8")
    return Referential.from_json(text)


def _objects(meta: DossierMetadata) -> dict[str, DataObject]:
    out = {}
    for index, entry in enumerate(meta.files):
        digest = f"{index:064x}"
        out[entry.path] = DataObject(
            id=f"obj-{index:02d}",
            path=entry.path,
            fingerprints=FileFingerprints(
                size=100 + index,
                sha256=Fingerprint("sha256", digest),
                sha512=Fingerprint("sha512", digest * 2),
            ),
            format=FormatInfo(mime_type="application/pdf"),
            uri=f"content/obj-{index:02d}",
        )
    return out


def _counter() -> tuple[Callable[[str], str], list[str]]:
    calls: list[str] = []

    def new_id(prefix: str) -> str:
        calls.append(prefix)
        return f"{prefix}-{len(calls):03d}"

    return new_id, calls


def test_tree_shape_across_phases(decp: dict[str, Any], referential: Referential) -> None:
    meta = parse_metadata(metadata(decp))
    new_id, calls = _counter()
    root = build_dossier_tree(meta, _objects(meta), referential, new_id=new_id)

    assert root.description.level is DescriptionLevel.RECORD_GROUP
    assert root.description.title == "Construction du gymnase Jean Moulin"
    assert root.description.description == "Marché de travaux, lot unique"
    assert root.description.originating_agency == BUYER
    assert root.description.originating_system_ids == ("TEST2022Bis", "2025-T-017")
    assert root.description.start_date == date(2024, 5, 2)
    assert root.description.end_date == date(2024, 5, 15)
    assert root.appraisal is None and root.data_object_ids == ()

    phases = [(p.description.title, [d.category for d in p.children]) for p in root.children]
    assert phases == [
        ("Dossier de consultation des entreprises (DCE)", ["dce.rc", "dce.ccap"]),
        ("Offres", ["offres.retenue", "offres.non_retenue"]),
        ("Attribution et notification", ["attribution.notification"]),
        ("Exécution", ["execution.reception"]),
        ("Données essentielles (DECP)", ["donnees.decp"]),
    ]
    for phase in root.children:
        assert phase.description.level is DescriptionLevel.SUB_GROUP
        for doc in phase.children:
            assert doc.description.level is DescriptionLevel.ITEM
            assert doc.appraisal is not None and doc.access is not None
            assert doc.category is not None
            assert doc.description.document_type == CATEGORY_BY_CODE[doc.category].label

    docs = [d for p in root.children for d in p.children]
    assert [d.data_object_ids for d in docs] == [(f"obj-{i:02d}",) for i in range(7)]
    assert docs[0].description.title == "RC.pdf"  # no title: the file name
    assert docs[1].description.title == "CCAP signé"
    assert dict(docs[5].description.extension)["source_path"] == "7-Execution/PV réception.pdf"

    # Ids are drawn depth first: dossier, phase, its documents, next phase…
    assert calls == ["au"] * 13
    assert root.id == "au-001"
    assert [root.children[0].id, *(d.id for d in root.children[0].children)] == [
        "au-002",
        "au-003",
        "au-004",
    ]
    assert len({n.id for n in root.walk()}) == 13


def test_tree_keywords_and_extension(decp: dict[str, Any], referential: Referential) -> None:
    meta = parse_metadata(metadata(decp))
    root = build_dossier_tree(meta, _objects(meta), referential, new_id=_counter()[0])
    keywords = [(k.content, k.type, k.reference) for k in root.description.keywords]
    assert keywords == [
        ("45000000-7", "subject", "45000000"),
        ("gymnase", None, None),
        ("travaux", None, None),
        ("55204599900869", "corpname", "SIRET:55204599900869"),
        # titulaire added by modification n° 1 of the official example
        ("868768687576575", "corpname", "SIRET:868768687576575"),
    ]
    extension = dict(root.description.extension)
    assert extension["decp_nature"] == "Marché"
    assert extension["decp_procedure"] == "Appel d'offres ouvert"
    assert extension["decp_montant"] == "575000"
    assert extension["decp_dateNotification"] == "2024-05-15"
    assert extension["decp_codeCPV"] == "45000000-7"
    assert extension["contract_type"] == "T"
    assert extension["recurrent"] == "false"
    assert extension["event_notification"] == "2024-05-15"
    names = [name for name, _ in root.description.extension]
    assert names == [n for n in DOSSIER_EXTENSION_FIELDS if n in extension]


def test_tree_rules_follow_the_referential(decp: dict[str, Any], referential: Referential) -> None:
    meta = parse_metadata(metadata(decp))
    root = build_dossier_tree(meta, _objects(meta), referential, new_id=_counter()[0])
    by_category = {d.category: d for p in root.children for d in p.children}
    losing = by_category["offres.non_retenue"]
    assert losing.appraisal is not None and losing.access is not None
    assert losing.appraisal.rule_id == "MP-NR-5A"
    assert losing.appraisal.final_action is FinalAction.DESTROY
    assert losing.appraisal.end_date == date(2029, 5, 15)
    assert losing.access.duration_years == 25
    assert losing.access.start_date == date(2024, 5, 2)  # signature
    works = by_category["execution.reception"].appraisal
    assert works is not None and works.pending  # no réception nor solde yet


def test_tree_is_deterministic(decp: dict[str, Any], referential: Referential) -> None:
    meta = parse_metadata(metadata(decp))
    first = build_dossier_tree(meta, _objects(meta), referential, new_id=_counter()[0])
    second = build_dossier_tree(meta, _objects(meta), referential, new_id=_counter()[0])
    assert first == second


def test_tree_description_falls_back_to_decp_objet(
    decp: dict[str, Any], referential: Referential
) -> None:
    raw = metadata(decp)
    del raw["description"]
    meta = parse_metadata(raw)
    root = build_dossier_tree(meta, _objects(meta), referential, new_id=_counter()[0])
    assert root.description.description == "envoi pour Json test 2"


def test_tree_refuses_missing_and_undeclared_files(
    decp: dict[str, Any], referential: Referential
) -> None:
    meta = parse_metadata(metadata(decp))
    objects = _objects(meta)
    extra = objects.pop("2-DCE/CCAP.pdf")
    objects["2-DCE/autre.pdf"] = extra
    with pytest.raises(InvalidInput) as caught:
        build_dossier_tree(meta, objects, referential, new_id=_counter()[0])
    assert where(caught.value.issues) == {
        ("file-missing", "/files/1/path"),
        ("file-not-listed", "/files"),
    }


def test_tree_matches_objects_by_nfc_path(decp: dict[str, Any], referential: Referential) -> None:
    meta = parse_metadata(metadata(decp))
    objects = {unicodedata.normalize("NFD", k): v for k, v in _objects(meta).items()}
    root = build_dossier_tree(meta, objects, referential, new_id=_counter()[0])
    assert len([n for n in root.walk() if n.data_object_ids]) == 7


def test_tree_of_unsuccessful_procedure(referential: Referential) -> None:
    raw = metadata(
        None,
        infructueux=True,
        events={"infructuosite": "2025-06-01"},
        files=[
            {"path": "RC.pdf", "category": "dce.rc"},
            {"path": "offre.pdf", "category": "offres.non_retenue"},
            {"path": "PV.pdf", "category": "attribution.infructuosite"},
        ],
    )
    meta = parse_metadata(raw)
    root = build_dossier_tree(meta, _objects(meta), referential, new_id=_counter()[0])
    assert [p.description.title for p in root.children] == [
        "Dossier de consultation des entreprises (DCE)",
        "Offres",
        "Attribution et notification",
    ]
    assert root.description.originating_system_ids == ("2025-T-017",)
    assert dict(root.description.extension)["infructueux"] == "true"
    offer = root.children[1].children[0]
    assert offer.appraisal is not None
    assert offer.appraisal.start_event == "infructuosite"
    assert offer.appraisal.end_date == date(2030, 6, 1)


def test_tree_matches_nfd_metadata_with_nfc_objects(
    decp: dict[str, Any], referential: Referential
) -> None:
    raw = metadata(decp)
    raw["files"][5]["path"] = unicodedata.normalize("NFD", raw["files"][5]["path"])
    meta = parse_metadata(raw)
    objects = {unicodedata.normalize("NFC", k): v for k, v in _objects(meta).items()}
    root = build_dossier_tree(meta, objects, referential, new_id=_counter()[0])
    reception = root.children[3].children[0]
    assert reception.data_object_ids == ("obj-05",)
