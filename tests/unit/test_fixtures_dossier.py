"""The generated dossiers are what they claim: real files, stable bytes, valid DECP metadata.

Other tests trust these fixtures (format identification, ingest, benchmarks); if a generator
silently produced a text file named ``.pdf`` or non-deterministic bytes, those tests would
test the wrong thing.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import zipfile
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from tests.fixtures.dossier import (
    BUYER_SIRET,
    CATEGORIES,
    luhn_check_digit,
    luhn_siret,
    luhn_valid,
    make_dossier,
    make_large_file,
    make_siren,
    make_small_dossier,
    odt_bytes,
)

_REPO = Path(__file__).resolve().parents[2]
_DEFAULT_DECP_SCHEMA = _REPO.parent / "shared" / "decp" / "schema_decp_v2.0.3.json"


@pytest.fixture(scope="module")
def dossier(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Path], Path]:
    root = tmp_path_factory.mktemp("dossier")
    metadata, paths = make_dossier(root)
    return metadata, paths, root


def _by_path(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["path"]: entry for entry in metadata["files"]}


# --- SIRET ---------------------------------------------------------------------------------


def test_luhn_siret_matches_published_sirets() -> None:
    # Two real, published SIRETs (head offices of Apple France and Google France).
    assert luhn_siret("7328293200007") == "73282932000074"
    assert luhn_siret("4430618410004") == "44306184100047"
    assert luhn_valid("73282932000074")
    assert not luhn_valid("73282932000075")


def test_luhn_siret_rejects_bad_prefixes() -> None:
    for bad in ("123", "12345678901234", "123456789012a"):
        with pytest.raises(ValueError):
            luhn_siret(bad)
    assert luhn_check_digit("7992739871") == "3"  # the textbook Luhn example


def test_every_siret_in_the_metadata_is_valid(
    dossier: tuple[dict[str, Any], list[Path], Path],
) -> None:
    metadata, _paths, _root = dossier
    sirets = [metadata["organization"], metadata["decp"]["acheteur"]["id"]]
    sirets += [t["titulaire"]["id"] for t in metadata["decp"]["titulaires"]]
    assert metadata["organization"] == BUYER_SIRET == metadata["decp"]["acheteur"]["id"]
    for siret in sirets:
        assert len(siret) == 14 and siret.isdigit()
        assert luhn_valid(siret), siret
        assert luhn_valid(siret[:9]), f"SIREN of {siret}"
    assert make_siren("73282932") == "732829320"


# --- Files are what they claim -------------------------------------------------------------


def test_metadata_lists_every_file_with_its_digest(
    dossier: tuple[dict[str, Any], list[Path], Path],
) -> None:
    metadata, paths, root = dossier
    assert [root / entry["path"] for entry in metadata["files"]] == paths
    for entry, path in zip(metadata["files"], paths, strict=True):
        assert set(entry) == {"path", "category", "sha256", "title"}
        assert not entry["path"].startswith("/") and ".." not in entry["path"].split("/")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert entry["category"] in CATEGORIES
        assert entry["title"].strip()
    phases = {entry["path"].split("/", 1)[0] for entry in metadata["files"]}
    assert len(phases) >= 5
    assert {e["category"] for e in metadata["files"]} == set(CATEGORIES)


def test_metadata_has_the_agreed_shape(dossier: tuple[dict[str, Any], list[Path], Path]) -> None:
    metadata, _paths, _root = dossier
    assert list(metadata) == [
        "message_identifier",
        "organization",
        "title",
        "description",
        "consultation_number",
        "contract_type",
        "procedure_type",
        "infructueux",
        "sans_suite",
        "recurrent",
        "keywords",
        "events",
        "decp",
        "files",
    ]
    assert metadata["message_identifier"] == "MAXI-2026-0001"
    assert metadata["consultation_number"] == "2025-T-017"
    assert metadata["contract_type"] == "T"
    assert metadata["procedure_type"] == "AOO"
    assert metadata["events"] == {"signature": "2025-03-01", "notification": "2025-03-10"}
    assert "gymnase" in metadata["keywords"]
    assert json.loads(json.dumps(metadata)) == metadata  # plain JSON, as the API receives it


def test_pdfs_are_pdfs_with_french_text(dossier: tuple[dict[str, Any], list[Path], Path]) -> None:
    _metadata, paths, _root = dossier
    pdfs = [p for p in paths if p.suffix == ".pdf"]
    assert len(pdfs) >= 7
    for path in pdfs:
        data = path.read_bytes()
        assert data.startswith(b"%PDF-1.")
        assert data.rstrip().endswith(b"%%EOF")
        assert b"/Type /Catalog" in data and b"/Type /Page" in data
    # The document title is in the Info dictionary (WinAnsi: \350 is "è").
    assert b"R\\350glement de la consultation" in (pdfs[0].parent / "RC.pdf").read_bytes()


def test_pdfa_styled_pdfs_carry_the_pdfa_identification(
    dossier: tuple[dict[str, Any], list[Path], Path],
) -> None:
    _metadata, _paths, root = dossier
    data = (root / "7-Attribution/acte_engagement.pdf").read_bytes()
    assert data.startswith(b"%PDF-1.4")
    assert b"<pdfaid:part>1</pdfaid:part>" in data
    assert b"<pdfaid:conformance>B</pdfaid:conformance>" in data


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return archive.namelist()


def test_office_files_are_ooxml_containers(
    dossier: tuple[dict[str, Any], list[Path], Path],
) -> None:
    _metadata, paths, _root = dossier
    docx = [p for p in paths if p.suffix == ".docx"]
    xlsx = [p for p in paths if p.suffix == ".xlsx"]
    assert docx and xlsx
    for path in docx:
        names = _zip_names(path)
        assert "[Content_Types].xml" in names and "word/document.xml" in names
    for path in xlsx:
        names = _zip_names(path)
        assert "[Content_Types].xml" in names and "xl/workbook.xml" in names


def test_office_files_open_with_their_libraries(
    dossier: tuple[dict[str, Any], list[Path], Path],
) -> None:
    import docx
    import openpyxl

    _metadata, _paths, root = dossier
    document = docx.Document(str(root / "2-DCE/CCTP.docx"))
    assert document.core_properties.title == "Cahier des clauses techniques particulières"
    assert any("Description des prestations" in p.text for p in document.paragraphs)
    workbook = openpyxl.load_workbook(root / "2-DCE/DPGF.xlsx")
    sheet = workbook.active
    assert sheet is not None
    assert [c.value for c in sheet[1]][:2] == ["N°", "Désignation"]
    assert sheet.max_row > 2


def test_offer_zip_holds_a_pdf_and_a_csv(dossier: tuple[dict[str, Any], list[Path], Path]) -> None:
    _metadata, _paths, root = dossier
    with zipfile.ZipFile(root / "5-Offres/Entreprise-B/offre.zip") as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert sorted(n.rsplit(".", 1)[-1] for n in names) == ["csv", "pdf"]
        pdf = next(n for n in names if n.endswith(".pdf"))
        assert archive.read(pdf).startswith(b"%PDF-")
        assert all(info.date_time == (2025, 1, 15, 9, 30, 0) for info in archive.infolist())


def test_xml_notice_and_csv_parse(dossier: tuple[dict[str, Any], list[Path], Path]) -> None:
    metadata, _paths, root = dossier
    notice = (root / "3-Publicite/avis_boamp.xml").read_bytes()
    assert notice.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    element = ET.fromstring(notice)
    assert element.findtext("siret") == metadata["organization"]
    assert element.findtext("reference") == metadata["consultation_number"]
    rows = list(
        csv.reader(
            io.StringIO((root / "6-Analyse/grille_notation.csv").read_text("utf-8")), delimiter=";"
        )
    )
    assert rows[0][0] == "Candidat" and len(rows) == 3
    assert all(len(row) == len(rows[0]) for row in rows)


def test_odt_is_an_opendocument_container() -> None:
    data = odt_bytes(title="Note", paragraphs=["Texte en français."])
    # ODF §3.3: the stored "mimetype" entry comes first, its content readable at offset 38.
    assert data[30:38] == b"mimetype"
    assert data[38:77] == b"application/vnd.oasis.opendocument.text"


# --- Determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_metadata(tmp_path: Path) -> None:
    first, first_paths = make_dossier(tmp_path / "one", seed=3, contract_type="F")
    second, second_paths = make_dossier(tmp_path / "two", seed=3, contract_type="F")
    assert first == second
    for a, b in zip(first_paths, second_paths, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_another_seed_gives_another_dossier(tmp_path: Path) -> None:
    first, _ = make_dossier(tmp_path / "one", seed=0)
    other, _ = make_dossier(tmp_path / "two", seed=1, message_identifier="MAXI-2026-0002")
    assert other["message_identifier"] == "MAXI-2026-0002"
    assert other["consultation_number"] != first["consultation_number"]
    assert other["decp"]["titulaires"] != first["decp"]["titulaires"]
    differing = {
        entry["path"]
        for entry, before in zip(other["files"], first["files"], strict=True)
        if entry["sha256"] != before["sha256"]
    }
    assert len(differing) >= len(first["files"]) // 2


def test_unknown_contract_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="contract_type"):
        make_dossier(tmp_path, contract_type="X")


# --- DECP 2.0.3 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decp_schema() -> dict[str, Any]:
    path = Path(os.environ.get("ARCHIVE_DECP_SCHEMA", str(_DEFAULT_DECP_SCHEMA)))
    if not path.is_file():
        reason = f"official DECP schema not found at {path} (set ARCHIVE_DECP_SCHEMA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    schema: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return schema


def _marche_validator(schema: dict[str, Any]) -> Any:
    from jsonschema import Draft7Validator

    Draft7Validator.check_schema(schema)
    # The marche definition's $refs are absolute within the document
    # ("#/definitions/marche/definitions/…"), so validate against a root that keeps them.
    return Draft7Validator({"$ref": "#/definitions/marche", "definitions": schema["definitions"]})


@pytest.mark.reference
@pytest.mark.parametrize("contract_type", ["T", "F", "S"])
def test_decp_block_validates_against_the_official_schema(
    tmp_path: Path, decp_schema: dict[str, Any], contract_type: str
) -> None:
    from jsonschema import Draft7Validator

    metadata, _ = make_dossier(tmp_path, seed=2, contract_type=contract_type)
    decp = metadata["decp"]
    errors = [e.message for e in _marche_validator(decp_schema).iter_errors(decp)]
    assert errors == []
    # And as the official root document publishes it.
    document = {"marches": {"marche": [decp]}}
    assert [e.message for e in Draft7Validator(decp_schema).iter_errors(document)] == []
    # The schema's date patterns are unanchored: check the dates ourselves.
    for field in ("dateNotification", "datePublicationDonnees"):
        date.fromisoformat(decp[field])
    assert decp["dateNotification"] == metadata["events"]["notification"]
    assert decp["acheteur"]["id"] == metadata["organization"]
    # "Complete": every property the schema requires is present.
    assert set(decp_schema["definitions"]["marche"]["required"]) <= set(decp)


@pytest.mark.reference
def test_schema_check_is_not_vacuous(tmp_path: Path, decp_schema: dict[str, Any]) -> None:
    metadata, _ = make_dossier(tmp_path)
    validator = _marche_validator(decp_schema)
    broken = copy.deepcopy(metadata["decp"])
    del broken["titulaires"]
    broken["acheteur"]["id"] = "123"
    messages = " ".join(e.message for e in validator.iter_errors(broken))
    assert "'titulaires' is a required property" in messages
    assert "'123' does not match" in messages


# --- Large file and benchmark dossiers -----------------------------------------------------


def test_make_large_file_is_sized_and_deterministic(tmp_path: Path) -> None:
    size = 3 * 1024 * 1024 + 17
    digest = make_large_file(tmp_path / "a.bin", size, seed=5)
    assert (tmp_path / "a.bin").stat().st_size == size
    assert hashlib.sha256((tmp_path / "a.bin").read_bytes()).hexdigest() == digest
    assert make_large_file(tmp_path / "b.bin", size, seed=5) == digest
    assert make_large_file(tmp_path / "c.bin", size, seed=6) != digest
    assert make_large_file(tmp_path / "empty.bin", 0) == hashlib.sha256(b"").hexdigest()


def test_small_dossier_sizes_kinds_and_categories(tmp_path: Path) -> None:
    low, high = 20_000, 60_000
    metadata, paths = make_small_dossier(tmp_path, 30, sizes=(low, high), seed=4)
    assert len(paths) == len(metadata["files"]) == 30
    assert len({e["category"] for e in metadata["files"]}) == len(CATEGORIES)
    kinds = {p.suffix for p in paths}
    assert kinds == {".pdf", ".csv", ".txt"}
    for entry, path in zip(metadata["files"], paths, strict=True):
        data = path.read_bytes()
        assert low <= len(data) <= high, (path.name, len(data))
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        if path.suffix == ".pdf":
            assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        else:
            data.decode("utf-8")
    again, _ = make_small_dossier(tmp_path / "again", 30, sizes=(low, high), seed=4)
    assert again == metadata
    assert metadata["decp"]["acheteur"]["id"] == metadata["organization"]
