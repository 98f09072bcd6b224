"""The documents people sign and keep at the end of an archive's life, next to their SEDA
messages (core/seda/lifecycle.py):

* :func:`bordereau_pdf` — « Bordereau d'élimination » (or « de transfert ») for the Archives
  départementales: the service d'archives, the producers, the request's reference and date,
  one line per unit (title, category, DUA start, rule, DUA end, final action, objects and
  volume), the totals, and a signature block for the visa;
* :func:`bordereau_csv` — the same lines for a spreadsheet (UTF-8 with BOM, ``;``), with each
  unit's objects and their SHA-256;
* :func:`certificate_pdf` — « Certificat de destruction » (or « de transfert »): what was
  destroyed (units, objects, digests), under which visa, when, and the service's signature as
  given (key, public key fingerprint, signature, TSA time) — rendered, not verified, here.

Text uses Bitstream Vera, the TrueType font shipped inside reportlab (``reportlab/fonts``),
embedded in the PDF: it covers Latin-1 and the French typography we print (é, è, ç, œ, « »,
’, —, €), where the PDF base-14 fonts would not render « » reliably. PDFs are written with
reportlab's ``invariant`` mode (no creation date, fixed document id): same input, same bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any, Final

from archive_service.core.model import add_years
from archive_service.core.seda.lifecycle import (
    AuthorizationRequestInput,
    DestructionNotificationInput,
    LifecycleUnit,
)

FONT: Final = "ArchiveVera"
FONT_BOLD: Final = "ArchiveVera-Bold"

FINAL_ACTIONS: Final = {"Destroy": "Élimination", "Keep": "Conservation"}

#: ``signature_info`` keys printed by :func:`certificate_pdf`, with their labels, in order;
#: any other key is printed after them under its own name.
SIGNATURE_FIELDS: Final = (
    ("key_name", "Clé de signature du service"),
    ("public_key_fingerprint", "Empreinte de la clé publique"),
    ("algorithm", "Algorithme"),
    ("signature", "Signature (base64)"),
    ("tsa_gen_time", "Horodatage (genTime de l'autorité d'horodatage)"),
    ("tsa_name", "Autorité d'horodatage"),
)

CSV_HEADER: Final = (
    "Référence de la demande",
    "Type",
    "Dossier",
    "Titre du dossier",
    "Unité d'archives",
    "Titre",
    "Niveau",
    "Catégorie",
    "Producteur",
    "Règle de DUA",
    "Durée (ans)",
    "Début de DUA",
    "Fin de DUA",
    "Sort final",
    "Règle de communicabilité",
    "Nombre d'objets",
    "Taille (octets)",
    "Objets (chemin=sha256)",
)


def _fonts() -> tuple[str, str]:
    """Register the Vera TrueType fonts of the installed reportlab once; their names."""
    import reportlab
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT not in pdfmetrics.getRegisteredFontNames():
        directory = Path(reportlab.__file__).resolve().parent / "fonts"
        pdfmetrics.registerFont(TTFont(FONT, str(directory / "Vera.ttf")))
        pdfmetrics.registerFont(TTFont(FONT_BOLD, str(directory / "VeraBd.ttf")))
        pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD)
    return FONT, FONT_BOLD


def french_date(value: date | datetime | str | None) -> str:
    """``04/03/2031`` (a datetime: in UTC with the time, ``04/03/2031 10:30 UTC``)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        text = value
        try:
            value = (
                date.fromisoformat(text)
                if len(text) == 10
                else datetime.fromisoformat(text.replace("Z", "+00:00"))
            )
        except ValueError:
            return text
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.strftime("%d/%m/%Y %H:%M UTC")
    return value.strftime("%d/%m/%Y")


def human_size(size: int) -> str:
    """French-style size: ``987 octets``, ``12,3 Ko``, ``4,5 Mo``, ``1,2 Go``."""
    if size < 1024:
        return f"{size} octet{'s' if size > 1 else ''}"
    value = float(size)
    for unit in ("Ko", "Mo", "Go", "To"):
        value /= 1024
        if value < 1024 or unit == "To":
            break
    return f"{value:.1f}".replace(".", ",") + f" {unit}"


def _rule(rule: Mapping[str, Any] | None) -> tuple[str, str, str, str, str]:
    """(rule id, duration, start, end, final action) of an appraisal rule dict."""
    if rule is None:
        return ("—", "—", "—", "—", "—")
    years = rule.get("duration_years")
    end = rule.get("end_date") or _computed_end(rule.get("start_date"), years)
    if end is None and (rule.get("pending") or not rule.get("start_date")):
        end = "en attente"
    final = str(rule.get("final_action") or "")
    return (
        str(rule.get("rule_id") or "—"),
        "—" if years is None else str(years),
        french_date(rule.get("start_date")),
        end if end == "en attente" else french_date(end),
        FINAL_ACTIONS.get(final, final or "—"),
    )


def _computed_end(start: object, years: object) -> str | None:
    """The DUA end from its start and duration, when the rule dict does not carry it."""
    if not isinstance(start, str) or not isinstance(years, int):
        return None
    try:
        return add_years(date.fromisoformat(start[:10]), years).isoformat()
    except ValueError:
        return None


def _producers(units: Sequence[LifecycleUnit]) -> str:
    found = sorted({u.originating_agency for u in units if u.originating_agency})
    return ", ".join(found) if found else "—"


class _Pdf:
    """The shared layout: A4 landscape, Vera, small grid tables with a grey header row."""

    def __init__(self, title: str) -> None:
        from reportlab.lib.styles import getSampleStyleSheet

        self.title = title
        font, bold = _fonts()
        styles = getSampleStyleSheet()
        self.body = styles["BodyText"].clone("as-body", fontName=font, fontSize=9, leading=11)
        self.small = styles["BodyText"].clone("as-small", fontName=font, fontSize=7, leading=8.5)
        self.head = styles["BodyText"].clone("as-head", fontName=bold, fontSize=7, leading=8.5)
        self.h1 = styles["Title"].clone("as-h1", fontName=bold, fontSize=16, leading=20)
        self.h2 = styles["Heading2"].clone("as-h2", fontName=bold, fontSize=11, leading=14)

    def p(self, text: object, style: Any = None) -> Any:
        from reportlab.platypus import Paragraph

        return Paragraph(escape(str(text)).replace("\n", "<br/>"), style or self.small)

    def grid(
        self, rows: Sequence[Sequence[object]], widths: Sequence[float], *, header: bool = True
    ) -> Any:
        from reportlab.lib import colors
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.lib.units import cm
        from reportlab.platypus import Table, TableStyle

        width = landscape(A4)[0] - 3 * cm
        cells = [
            [self.p(c, self.head if header and i == 0 else self.small) for c in row]
            for i, row in enumerate(rows)
        ]
        table = Table(cells, colWidths=[w * width for w in widths], repeatRows=1 if header else 0)
        style = [
            ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
        if header:
            style.append(("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke))
        table.setStyle(TableStyle(style))
        return table

    def build(self, story: list[Any], subject: str) -> bytes:
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.lib.units import cm
        from reportlab.platypus import SimpleDocTemplate

        out = io.BytesIO()
        font = self.small.fontName

        def footer(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont(font, 7)
            canvas.drawString(1.5 * cm, 0.8 * cm, f"{self.title} — {subject}")
            canvas.drawRightString(landscape(A4)[0] - 1.5 * cm, 0.8 * cm, f"page {doc.page}")
            canvas.restoreState()

        doc = SimpleDocTemplate(
            out,
            pagesize=landscape(A4),
            title=f"{self.title} — {subject}",
            author="archive-service",
            subject=subject,
            invariant=1,
            leftMargin=1.5 * cm,
            rightMargin=1.5 * cm,
            topMargin=1.5 * cm,
            bottomMargin=1.5 * cm,
        )
        doc.build(story, onFirstPage=footer, onLaterPages=footer)
        return out.getvalue()


def bordereau_title(kind: str) -> str:
    return "Bordereau d'élimination" if kind == "destroy" else "Bordereau de transfert"


def bordereau_pdf(inp: AuthorizationRequestInput) -> bytes:
    """The « Bordereau d'élimination » / « de transfert » of a visa request, as a PDF."""
    from reportlab.lib.units import cm
    from reportlab.platypus import KeepTogether, Spacer

    pdf = _Pdf(bordereau_title(inp.kind))
    units = sorted(inp.units, key=lambda u: (u.dossier_id, u.unit_id))
    objects = sum(len(u.objects) for u in units)
    size = sum(u.size for u in units)
    action = (
        "l'élimination des archives publiques décrites ci-dessous, dont la durée d'utilité "
        "administrative est échue et dont le sort final est l'élimination"
        if inp.kind == "destroy"
        else "le transfert aux archives définitives des archives publiques décrites ci-dessous, "
        "dont la durée d'utilité administrative est échue et dont le sort final est la "
        "conservation"
    )
    rows: list[list[object]] = [
        [
            "N°",
            "Dossier",
            "Unité d'archives",
            "Catégorie",
            "Règle (durée)",
            "Début de DUA",
            "Fin de DUA",
            "Sort final",
            "Objets",
            "Volume",
        ]
    ]
    for n, unit in enumerate(units, 1):
        rule_id, years, start, end, final = _rule(unit.appraisal)
        rows.append(
            [
                n,
                f"{unit.dossier_title}\n{unit.dossier_id}",
                f"{unit.title}\n{unit.unit_id}",
                unit.category or "—",
                f"{rule_id} ({years} ans)" if years != "—" else rule_id,
                start,
                end,
                final,
                len(unit.objects),
                human_size(unit.size),
            ]
        )
    rows.append(
        [
            "",
            "Total",
            f"{len(units)} unités d'archives",
            "",
            "",
            "",
            "",
            "",
            objects,
            f"{human_size(size)}\n({size} octets)",
        ]
    )
    story: list[Any] = [
        pdf.p(pdf.title, pdf.h1),
        pdf.p(
            f"Le service d'archives {inp.archival_agency} demande à l'autorité de contrôle "
            f"{inp.control_authority} son visa pour {action} (Code du patrimoine, art. R212-14).",
            pdf.body,
        ),
        Spacer(1, 0.3 * cm),
        pdf.grid(
            [
                ["Service d'archives", inp.archival_agency],
                ["Autorité de contrôle (Archives départementales)", inp.control_authority],
                ["Service(s) producteur(s)", _producers(units)],
                ["Demandeur", inp.requester],
                ["Référence de la demande", inp.message_identifier],
                ["Date de la demande", french_date(inp.date)],
                ["Motif", inp.comment or "—"],
                ["Message SEDA joint", "AuthorizationControlAuthorityRequest"],
            ],
            [0.3, 0.7],
            header=False,
        ),
        pdf.p("Unités d'archives", pdf.h2),
        pdf.grid(rows, [0.04, 0.17, 0.22, 0.11, 0.1, 0.07, 0.07, 0.08, 0.05, 0.09]),
        Spacer(1, 0.6 * cm),
        KeepTogether(
            [
                pdf.p("Visa de l'autorité de contrôle", pdf.h2),
                pdf.grid(
                    [
                        ["Décision", "[  ] visa accordé        [  ] visa refusé"],
                        ["Référence du visa", ""],
                        ["Nom et qualité du signataire", ""],
                        ["Date", ""],
                        ["Signature et cachet", "\n\n\n\n"],
                    ],
                    [0.3, 0.7],
                    header=False,
                ),
                Spacer(1, 0.4 * cm),
                pdf.p(
                    f"Pour le service d'archives {inp.archival_agency} : nom, qualité, date et "
                    "signature du responsable.",
                    pdf.body,
                ),
            ]
        ),
    ]
    return pdf.build(story, inp.message_identifier)


def bordereau_csv(inp: AuthorizationRequestInput) -> bytes:
    """The bordereau's lines as CSV: UTF-8 with BOM, ``;`` separator, a header row, one line
    per unit; its objects as ``path=sha256`` separated by `` | ``."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    kind = "élimination" if inp.kind == "destroy" else "transfert"
    for unit in sorted(inp.units, key=lambda u: (u.dossier_id, u.unit_id)):
        appraisal = unit.appraisal or {}
        access = unit.access or {}
        writer.writerow(
            [
                inp.message_identifier,
                kind,
                unit.dossier_id,
                unit.dossier_title,
                unit.unit_id,
                unit.title,
                unit.level,
                unit.category or "",
                unit.originating_agency or "",
                appraisal.get("rule_id") or "",
                "" if appraisal.get("duration_years") is None else appraisal["duration_years"],
                appraisal.get("start_date") or "",
                appraisal.get("end_date")
                or _computed_end(appraisal.get("start_date"), appraisal.get("duration_years"))
                or "",
                appraisal.get("final_action") or "",
                access.get("rule_id") or "",
                len(unit.objects),
                unit.size,
                " | ".join(
                    f"{o.path}={o.sha256}" for o in sorted(unit.objects, key=lambda o: o.object_id)
                ),
            ]
        )
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def certificate_title(outcome: str) -> str:
    return "Certificat de destruction" if outcome == "destroyed" else "Certificat de transfert"


def certificate_pdf(
    inp: DestructionNotificationInput, *, signature_info: Mapping[str, Any]
) -> bytes:
    """The « Certificat de destruction » / « de transfert » of a notification, with the
    service's signature as given in ``signature_info`` (see :data:`SIGNATURE_FIELDS`)."""
    from reportlab.lib.units import cm
    from reportlab.platypus import KeepTogether, Spacer

    pdf = _Pdf(certificate_title(inp.outcome))
    units = sorted(inp.units, key=lambda u: (u.dossier_id, u.unit_id))
    done = (
        "a détruit, sur tous ses supports de stockage et dans toutes leurs versions, les "
        "unités d'archives et les objets numériques décrits ci-dessous"
        if inp.outcome == "destroyed"
        else "a transféré aux archives définitives, puis purgé de tous ses supports de stockage, "
        "les unités d'archives et les objets numériques décrits ci-dessous"
    )
    objects: list[list[object]] = [["Unité d'archives", "Objet", "Taille", "SHA-256", "SHA-512"]]
    for unit in units:
        for o in sorted(unit.objects, key=lambda o: o.object_id):
            objects.append([unit.unit_id, f"{o.path}\n{o.object_id}", o.size, o.sha256, o.sha512])
    unit_rows: list[list[object]] = [
        [
            "Unité d'archives",
            "Titre",
            "Dossier",
            "Catégorie",
            "Règle",
            "Fin de DUA",
            "Sort final",
            "Objets",
            "Volume",
        ]
    ]
    for unit in units:
        rule_id, _years, _start, end, final = _rule(unit.appraisal)
        unit_rows.append(
            [
                unit.unit_id,
                unit.title,
                f"{unit.dossier_title}\n{unit.dossier_id}",
                unit.category or "—",
                rule_id,
                end,
                final,
                len(unit.objects),
                human_size(unit.size),
            ]
        )
    known = [
        (label, signature_info[key]) for key, label in SIGNATURE_FIELDS if key in signature_info
    ]
    others = [
        (str(key), value)
        for key, value in sorted(signature_info.items())
        if key not in {k for k, _ in SIGNATURE_FIELDS}
    ]
    total = sum(u.size for u in units)
    story: list[Any] = [
        pdf.p(pdf.title, pdf.h1),
        pdf.p(
            f"Le service d'archives {inp.archival_agency} certifie qu'il {done}, en exécution "
            f"du visa {inp.visa_reference} de l'autorité de contrôle, donné sur la demande "
            f"{inp.request_identifier}.",
            pdf.body,
        ),
        Spacer(1, 0.3 * cm),
        pdf.grid(
            [
                ["Service d'archives", inp.archival_agency],
                ["Service producteur", inp.originating_agency],
                ["Référence du certificat", inp.message_identifier],
                ["Date d'exécution", french_date(inp.date)],
                ["Demande d'autorisation", inp.request_identifier],
                ["Référence du visa", inp.visa_reference],
                [
                    "Total",
                    f"{len(units)} unités d'archives, "
                    f"{sum(len(u.objects) for u in units)} objets, {human_size(total)} "
                    f"({total} octets)",
                ],
                ["Message SEDA joint", "ArchiveDestructionNotification"],
            ],
            [0.3, 0.7],
            header=False,
        ),
        pdf.p("Unités d'archives", pdf.h2),
        pdf.grid(unit_rows, [0.14, 0.2, 0.18, 0.1, 0.1, 0.07, 0.08, 0.05, 0.08]),
        pdf.p("Objets numériques et empreintes", pdf.h2),
        pdf.grid(objects, [0.12, 0.17, 0.06, 0.25, 0.4]),
        KeepTogether(
            [
                pdf.p("Signature du service", pdf.h2),
                pdf.grid(
                    [[label, value] for label, value in known + others] or [["Signature", "—"]],
                    [0.3, 0.7],
                    header=False,
                ),
            ]
        ),
    ]
    return pdf.build(story, inp.message_identifier)
