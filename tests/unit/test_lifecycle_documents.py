"""The bordereau (PDF, CSV) and the certificate (PDF) of disposals and transfers: real PDFs
whose text, extracted by pypdf, carries the French labels and the data; CSV that a spreadsheet
reads back (BOM, ``;``) line for line."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest
from pypdf import PdfReader

from archive_service.services.lifecycle_documents import (
    CSV_HEADER,
    bordereau_csv,
    bordereau_pdf,
    certificate_pdf,
    french_date,
    human_size,
)
from tests.unit.test_seda_lifecycle import notification, request, unit


def text_of(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    """Extracted text with line breaks and runs of spaces as single spaces."""
    return " ".join(text.split())


def test_the_elimination_bordereau_names_everything_the_authority_needs() -> None:
    inp = request()
    text = flat(text_of(bordereau_pdf(inp)))
    for expected in (
        "Bordereau d'élimination",
        "Service d'archives",
        "GIP-ARCHIVES",
        "Autorité de contrôle",
        "AD13",
        "Service(s) producteur(s)",
        "21130055300016",
        "DEM-2031-0001",
        "04/03/2031 10:30 UTC",
        "DUA échue, sort final : élimination",
        "Offre non retenue n° 1 — « Société Génie »",
        "Marché de travaux — école élémentaire",
        "offres.non_retenue",
        "DUA-OFFRES-5 (5 ans)",
        "10/01/2026",
        "10/01/2031",
        "Élimination",
        "Fin de DUA",
        "Total",
        "2 unités d'archives",
        "Visa de l'autorité de contrôle",
        "Référence du visa",
        "Signature et cachet",
        "R212-14",
    ):
        assert expected in text, expected
    size = sum(u.size for u in inp.units)
    assert f"({size} octets)" in text


def test_the_transfer_bordereau_says_transfer() -> None:
    text = flat(text_of(bordereau_pdf(request("transfer"))))
    assert "Bordereau de transfert" in text
    assert "archives définitives" in text
    assert "Bordereau d'élimination" not in text


def test_pdfs_are_byte_stable() -> None:
    assert bordereau_pdf(request()) == bordereau_pdf(request())
    info = {"key_name": "k", "signature": "c2ln"}
    assert certificate_pdf(notification(), signature_info=info) == certificate_pdf(
        notification(), signature_info=info
    )


def test_the_csv_round_trips() -> None:
    inp = request(units=(unit(2), unit(1, objects=3)))
    data = bordereau_csv(inp)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == 3
    by_unit = {r[4]: dict(zip(CSV_HEADER, r, strict=True)) for r in rows[1:]}
    for u in inp.units:
        row = by_unit[u.unit_id]
        assert row["Titre"] == u.title
        assert row["Titre du dossier"] == "Marché de travaux — école élémentaire"
        assert row["Règle de DUA"] == "DUA-OFFRES-5"
        assert row["Fin de DUA"] == "2031-01-10"  # start + 5 years, computed
        assert row["Début de DUA"] == "2026-01-10"
        assert row["Sort final"] == "Destroy"
        assert row["Nombre d'objets"] == str(len(u.objects))
        assert row["Taille (octets)"] == str(u.size)
        pairs = dict(p.split("=") for p in row["Objets (chemin=sha256)"].split(" | "))
        assert pairs == {o.path: o.sha256 for o in u.objects}
        assert row["Type"] == "élimination"


def test_the_certificate_shows_units_digests_visa_and_signature() -> None:
    note = notification()
    signature = {
        "key_name": "archive-service/gip",
        "public_key_fingerprint": "SHA256:" + "ab" * 32,
        "signature": "MEUCIQ" + "A" * 80 + "==",
        "tsa_gen_time": "2031-04-13T10:30:02Z",
        "certificate_sha256": "cd" * 32,
    }
    text = text_of(certificate_pdf(note, signature_info=signature))
    squeezed = "".join(text.split())
    flat_text = flat(text)
    for expected in (
        "Certificat de destruction",
        "AD13-VISA-2031-17",
        "DEM-2031-0001",
        "CERT-2031-0001",
        "13/04/2031 10:30 UTC",
        "Empreinte de la clé publique",
        "archive-service/gip",
        "Horodatage",
        "certificate_sha256",
        "détruit",
    ):
        assert expected in flat_text, expected
    for u in note.units:
        assert u.title in flat_text
        for o in u.objects:
            assert o.sha256 in squeezed
            assert o.sha512 in squeezed
    assert signature["signature"] in squeezed
    assert signature["public_key_fingerprint"] in squeezed
    transferred = flat(
        text_of(
            certificate_pdf(dataclasses.replace(note, outcome="transferred"), signature_info={})
        )
    )
    assert "Certificat de transfert" in transferred


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "—"),
        ("2031-03-04", "04/03/2031"),
        ("2031-03-04T10:30:00+00:00", "04/03/2031 10:30 UTC"),
        ("en attente", "en attente"),
    ],
)
def test_french_dates(value: str | None, expected: str) -> None:
    assert french_date(value) == expected


def test_a_pending_rule_has_no_end() -> None:
    pending = dataclasses.replace(
        unit(1),
        appraisal={
            "rule_id": "DUA-CONTRAT-10",
            "duration_years": 10,
            "start_date": None,
            "end_date": None,
            "pending": True,
            "final_action": "Keep",
        },
    )
    inp = request("transfer", units=(pending,))
    text = flat(text_of(bordereau_pdf(inp)))
    assert "en attente" in text and "Conservation" in text
    rows = list(csv.reader(io.StringIO(bordereau_csv(inp).decode("utf-8-sig")), delimiter=";"))
    assert dict(zip(CSV_HEADER, rows[1], strict=True))["Fin de DUA"] == ""


def test_human_sizes() -> None:
    assert human_size(1) == "1 octet"
    assert human_size(999) == "999 octets"
    assert human_size(12_600) == "12,3 Ko"
    assert human_size(5 * 1024 * 1024) == "5,0 Mo"
