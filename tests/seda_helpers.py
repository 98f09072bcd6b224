"""Shared helpers for the SEDA tests: where the official reference data is, a realistic dossier.

The official SEDA XSDs and example transfers are reference data outside the repository
(``../shared/seda`` by default, or ``ARCHIVE_SEDA_XSD_DIR``). When they are missing, tests that
need them are skipped with the reason — except in CI (``CI=true``), where they fail: a CI run
that silently skipped schema validation would prove nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from archive_service.core.model import (
    NO_START_EVENT,
    AccessRule,
    AppraisalRule,
    ArchiveUnitNode,
    DataObject,
    Description,
    DescriptionLevel,
    FileFingerprints,
    FinalAction,
    Fingerprint,
    FormatInfo,
    Keyword,
    TransferManifestInput,
)

REPO = Path(__file__).resolve().parents[1]
SEDA23 = "fr:gouv:culture:archivesdefrance:seda:v2.3"
SEDA22 = "fr:gouv:culture:archivesdefrance:seda:v2.2"
EXT = "urn:archive-service:seda-ext:1"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: reference data is required)")
    pytest.skip(reason)


def seda_xsd_dir() -> Path:
    """The shared SEDA directory (``2.2/``, ``2.3/``, ``examples/``); skip, or fail in CI."""
    raw = os.environ.get("ARCHIVE_SEDA_XSD_DIR")
    path = Path(raw) if raw else REPO.parent / "shared" / "seda"
    needed = [path / v / f"seda-{v}-main.xsd" for v in ("2.2", "2.3")]
    absent = [str(p) for p in needed if not p.is_file()]
    if absent:
        _missing(
            "official SEDA XSDs not found (" + ", ".join(absent) + "); "
            "set ARCHIVE_SEDA_XSD_DIR to the directory holding 2.2/ and 2.3/"
        )
    return path


def seda_examples_dir() -> Path:
    """``examples/`` next to the official XSDs; skip, or fail in CI."""
    path = seda_xsd_dir() / "examples"
    if not (path / "2.3" / "sip2_3.xml").is_file():
        _missing(f"SEDA example transfers not found in {path}")
    return path


# -- a realistic procurement dossier -------------------------------------------------------------


def fingerprints(data: bytes) -> FileFingerprints:
    return FileFingerprints(
        size=len(data),
        sha256=Fingerprint("sha256", hashlib.sha256(data).hexdigest()),
        sha512=Fingerprint("sha512", hashlib.sha512(data).hexdigest()),
    )


PDF = FormatInfo(
    mime_type="application/pdf",
    puid="fmt/276",
    format_name="Acrobat PDF 1.7 - Portable Document Format",
    format_version="1.7",
    basis="extension match pdf; byte match at 0, 8",
)

#: name -> content of every file of the dossier
FILES: dict[str, bytes] = {
    "obj-01": b"%PDF-1.7 reglement de consultation",
    "obj-02": b"%PDF-1.7 cahier des clauses administratives particulieres",
    "obj-03": b"%PDF-1.7 offre retenue - societe Toitures de l'Ouest",
    "obj-04": b"0\x82\x01\x00 detached CAdES signature of the offer",
    "obj-05": b"PK\x03\x04 offre non retenue (docx)",
    "obj-06": b"%PDF-1.7 acte d'engagement signe",
    "obj-07": b"",
    "obj-08": b"%PDF-1.7 decompte general et definitif",
}


def data_objects() -> tuple[DataObject, ...]:
    paths = {
        "obj-01": "01 Consultation/RC.pdf",
        "obj-02": "01 Consultation/CCAP.pdf",
        "obj-03": "02 Offres/Toitures de l'Ouest/offre.pdf",
        "obj-04": "02 Offres/Toitures de l'Ouest/offre.pdf.p7s",
        "obj-05": "02 Offres/Couvreurs Réunis/offre.docx",
        "obj-06": "03 Attribution/AE signé.pdf",
        "obj-07": "03 Attribution/vide.txt",
        "obj-08": "04 Exécution/DGD.pdf",
    }
    formats = {
        "obj-04": FormatInfo(mime_type="application/pkcs7-signature", puid="x-fmt/88"),
        "obj-05": FormatInfo(
            mime_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            puid="fmt/412",
            format_name="Microsoft Word for Windows",
            format_version="2007 onwards",
            declared_mime="application/pdf",
        ),
        "obj-06": FormatInfo(
            mime_type="application/pdf",
            puid="fmt/276",
            format_name="Acrobat PDF 1.7 - Portable Document Format",
            declared_mime="application/pdf",
        ),
        "obj-07": FormatInfo(mime_type="application/x-empty"),
    }
    return tuple(
        DataObject(
            id=object_id,
            path=paths[object_id],
            fingerprints=fingerprints(content),
            format=formats.get(object_id, PDF),
            uri=f"content/{object_id}",
        )
        for object_id, content in FILES.items()
    )


NOTIFICATION = date(2024, 3, 15)

DCE_RULE = AppraisalRule(
    rule_id="APP-DCE-10",
    duration_years=10,
    start_event="notification",
    final_action=FinalAction.DESTROY,
    start_date=NOTIFICATION,
    label="Dossier de consultation",
)
REJECTED_RULE = AppraisalRule(
    rule_id="APP-00002",
    duration_years=5,
    start_event="notification",
    final_action=FinalAction.DESTROY,
    start_date=NOTIFICATION,
    label="Offres non retenues des marchés",
)
AWARD_RULE = AppraisalRule(
    rule_id="APP-AE-TRI",
    duration_years=10,
    start_event="paiement_solde",
    final_action=FinalAction.KEEP,
    review=True,
    label="Pièces contractuelles (tri)",
)
EXECUTION_RULE = AppraisalRule(
    rule_id="APP-00003",
    duration_years=10,
    start_event="paiement_solde",
    final_action=FinalAction.DESTROY,
    label="Exécution d'un marché de services",
)
SECRECY = AccessRule(
    rule_id="ACC-25-SECRET-AFFAIRES",
    duration_years=25,
    start_event="notification",
    start_date=NOTIFICATION,
    label="Secret des affaires (L.213-2 I 1 b)",
)
#: communicable de plein droit: 0 years, awaiting no event
OPEN_ACCESS = AccessRule(rule_id="ACC-00", duration_years=0, start_event=NO_START_EVENT)
#: communicable after an event that has not happened: pending, restricted until then
AFTER_SIGNATURE_ACCESS = AccessRule(
    rule_id="ACC-00-SIGNATURE", duration_years=0, start_event="signature"
)
PENDING_ACCESS = AccessRule(rule_id="ACC-25-EXEC", duration_years=25, start_event="paiement_solde")


def _doc(
    unit_id: str,
    title: str,
    objects: tuple[str, ...],
    rule: AppraisalRule,
    access: AccessRule | None,
    category: str,
    document_type: str,
) -> ArchiveUnitNode:
    return ArchiveUnitNode(
        id=unit_id,
        description=Description(
            level=DescriptionLevel.ITEM,
            title=title,
            document_type=document_type,
            extension=(("category", category), ("source_path", f"{category}/{unit_id}")),
        ),
        category=category,
        appraisal=rule,
        access=access,
        data_object_ids=objects,
    )


#: ``Description.extension`` of the dossier, as ``core.procurement`` names the fields: events and
#: the contract number have a SEDA element, the others are dropped from the manifest.
DOSSIER_FIELDS: tuple[tuple[str, str], ...] = (
    ("consultation_number", "PLACE-2024-015"),
    ("contract_number", "M2024-015"),
    ("contract_type", "travaux"),
    ("procedure_type", "Appel d'offres ouvert"),
    ("infructueux", "false"),
    ("sans_suite", "false"),
    ("recurrent", "false"),
    ("event_notification", "2024-03-15"),
    ("decp_id", "2024-015-00"),
    ("decp_nature", "Marché"),
    ("decp_procedure", "Appel d'offres ouvert"),
    ("decp_montant", "125000.0"),
    ("decp_dateNotification", "2024-03-15"),
    ("decp_codeCPV", "45261000-4"),
)


def dossier_tree(
    extension: tuple[tuple[str, str], ...] | None = None,
) -> ArchiveUnitNode:
    fields = extension if extension is not None else DOSSIER_FIELDS
    consultation = ArchiveUnitNode(
        id="au-10",
        description=Description(level=DescriptionLevel.SUB_GROUP, title="Consultation"),
        children=(
            _doc(
                "au-11",
                "Règlement de consultation",
                ("obj-01",),
                DCE_RULE,
                OPEN_ACCESS,
                "dce.rc",
                "Règlement de consultation",
            ),
            _doc(
                "au-12",
                "CCAP",
                ("obj-02",),
                DCE_RULE,
                AFTER_SIGNATURE_ACCESS,
                "dce.ccap",
                "Cahier des clauses administratives particulières",
            ),
        ),
    )
    offers = ArchiveUnitNode(
        id="au-20",
        description=Description(
            level=DescriptionLevel.SUB_GROUP,
            title="Candidatures et offres",
            description="Offres reçues sur la plateforme, avec leurs signatures.",
        ),
        access=SECRECY,
        children=(
            _doc(
                "au-21",
                "Offre retenue – Toitures de l'Ouest",
                ("obj-03", "obj-04"),
                AWARD_RULE,
                None,
                "offres.retenue",
                "Offre",
            ),
            _doc(
                "au-22",
                "Offre non retenue – Couvreurs Réunis",
                ("obj-05",),
                REJECTED_RULE,
                None,
                "offres.non_retenue",
                "Offre",
            ),
        ),
    )
    award = ArchiveUnitNode(
        id="au-30",
        description=Description(level=DescriptionLevel.SUB_GROUP, title="Attribution"),
        children=(
            _doc(
                "au-31",
                "Acte d'engagement signé",
                ("obj-06", "obj-07"),
                AWARD_RULE,
                PENDING_ACCESS,
                "attribution.acte_engagement",
                "Acte d'engagement",
            ),
        ),
    )
    execution = ArchiveUnitNode(
        id="au-40",
        description=Description(level=DescriptionLevel.SUB_GROUP, title="Exécution"),
        children=(
            _doc(
                "au-41",
                "Décompte général et définitif",
                ("obj-08",),
                EXECUTION_RULE,
                PENDING_ACCESS,
                "execution.dgd",
                "Décompte général",
            ),
        ),
    )
    return ArchiveUnitNode(
        id="au-01",
        description=Description(
            level=DescriptionLevel.RECORD_GROUP,
            title="Marché 2024-015 – Réfection de la toiture de l'école Jules Ferry",
            description="Dossier de marché public (procédure formalisée).",
            keywords=(
                Keyword(content="marché public", type="genreform", reference="67717/T3-129"),
                Keyword(content="commande publique", type="subject", reference="67717/T1-1161"),
                Keyword(
                    content="Travaux de couverture de toits",
                    type="subject",
                    reference="45261000-4",
                ),
            ),
            originating_agency="21350238800019",
            originating_system_ids=("PLACE-2024-015", "marches-securises:98765"),
            start_date=date(2024, 1, 8),
            end_date=date(2024, 3, 15),
            extension=fields,
        ),
        children=(consultation, offers, award, execution),
    )


def sample_manifest(
    *,
    objects: tuple[DataObject, ...] | None = None,
    extension: tuple[tuple[str, str], ...] | None = None,
    message_identifier: str = "tr-01JDQ4ZKX9Q8YB6V3T2N1M0P7R",
) -> TransferManifestInput:
    return TransferManifestInput(
        message_identifier=message_identifier,
        date=datetime(2024, 6, 3, 9, 30, 12, tzinfo=UTC),
        archival_agency="GIP-ARCHIVES-35",
        transferring_agency="PLACE",
        objects=objects if objects is not None else data_objects(),
        root=dossier_tree(extension),
        comment="Versement du dossier de marché 2024-015",
        archival_agreement="CONV-2024-PROC",
        originating_agency="21350238800019",
    )


# -- XML surgery for negative tests ---------------------------------------------------------------


def mutate(xml: bytes, change: Callable[[etree._Element], None]) -> bytes:
    """Parse ``xml``, apply ``change`` to the root, serialise again (declaration kept)."""
    root = etree.fromstring(xml)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def find(root: etree._Element, path: str) -> etree._Element:
    """First element at ``path`` (``s:`` SEDA of the root's version, ``ase:`` our extension)."""
    namespaces = {"s": etree.QName(root).namespace or "", "ase": EXT}
    found = root.xpath(path, namespaces=namespaces)
    assert isinstance(found, list) and found, f"nothing at {path}"
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


def remove(root: etree._Element, path: str) -> None:
    element = find(root, path)
    parent = element.getparent()
    assert parent is not None
    parent.remove(element)
