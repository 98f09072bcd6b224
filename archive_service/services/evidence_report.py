"""The human-readable report of an evidence bundle, « Relevé de valeur probante », in HTML and
PDF (reportlab): what was checked, when, with which algorithms, the results, the identifiers.

Both are rendered from the same summary and the same checklist the service ran on the bundle
(``core.evidence_check``), so they say exactly what ``archive-verify`` will check again.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from html import escape
from typing import Any

from archive_service.core.model import VerificationReport

TITLE = "Relevé de valeur probante"

ALGORITHMS = [
    ("Empreintes des objets et du bordereau", "SHA-256 et SHA-512 (FIPS 180-4)"),
    ("Horodatage du bordereau et du point de contrôle", "RFC 3161 (jeton TimeStampResp, CMS)"),
    ("Journal des opérations", "arbre de Merkle RFC 9162 (SHA-256, feuille 0x00, nœud 0x01)"),
    ("Forme canonique des entrées", "JSON Canonicalization Scheme (RFC 8785)"),
    ("Signature du point de contrôle", "Ed25519 (RFC 8032), note signée C2SP"),
]


def _identifiers(s: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Unité d'archives", f"{s['unit_id']} — {s['title']}"),
        ("Dossier (unité racine)", s["root_unit_id"]),
        ("Paquet archivé", s["package_id"]),
        ("Versement", s["transfer_id"]),
        ("Service d'archives (tenant)", s["tenant_id"]),
        ("Relevé établi le (UTC)", s["created_at"]),
        ("Demandé par", s["created_by"]),
        ("Bordereau SHA-256", s["manifest_sha256"]),
        ("Bordereau SHA-512", s["manifest_sha512"]),
        ("Jeton d'horodatage", f"{s['token_gen_time']} — n° {s['token_serial']}"),
        ("Politique / algorithme", f"{s['token_policy']} / {s['token_hash']}"),
        ("Autorité d'horodatage", s["tsa_name"] or "(non nommée)"),
        ("Racine de la chaîne TSA", s["tsa_root_subject"]),
        ("Empreinte SHA-256 de la racine", s["tsa_root_sha256"]),
        ("Journal (origine)", s["checkpoint_origin"]),
        ("Point de contrôle", f"taille {s['checkpoint_size']}, racine {s['checkpoint_root']}"),
        ("Horodatage du point de contrôle", s["checkpoint_gen_time"]),
        ("Clé du journal", f"{s['key_name']} — SHA-256 {s['key_sha256']}"),
    ]


#: Columns of the dossier's versions (one package each) and of the objects no longer held.
VERSION_HEAD = ["N°", "Paquet", "Versement", "Date (UTC)", "SHA-256 du bordereau", "Horodatage"]
GONE_HEAD = ["Chemin", "Statut", "Unité", "SHA-256"]


def render_html(summary: dict[str, Any], report: VerificationReport) -> bytes:
    def table(head: list[str], rows: list[list[str]]) -> str:
        cells = "".join(f"<th>{escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"

    verdict = "Toutes les vérifications sont satisfaites." if report.ok else "ÉCHEC"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="fr"><head><meta charset="utf-8">',
        f"<title>{TITLE} — {escape(summary['unit_id'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;"
        "padding:.2em .5em;text-align:left;vertical-align:top;font-size:90%;"
        "word-break:break-all}.ok{color:#060}.ko{color:#a00}</style></head><body>",
        f"<h1>{TITLE}</h1>",
        f"<p><strong>{escape(verdict)}</strong> {len(report.checks)} vérifications, "
        f"effectuées le {escape(summary['created_at'])} par le service, "
        "à refaire hors ligne avec <code>archive-verify</code> ou les commandes de "
        "<code>VERIFY.md</code>.</p>",
        "<h2>Identifiants</h2>",
        table(["", ""], [[k, v] for k, v in _identifiers(summary)]),
        "<h2>Algorithmes</h2>",
        table(["Objet", "Algorithme"], [[a, b] for a, b in ALGORITHMS]),
        "<h2>Vérifications</h2>",
        table(
            ["Vérification", "Fichier", "Attendu", "Constaté", "Résultat"],
            [
                [c.name, c.subject or "", c.expected, c.found, "OK" if c.ok else "ÉCHEC"]
                for c in report.checks
            ],
        ),
        *(
            [
                f"<h2>Versions du dossier ({len(summary['versions'])} paquets)</h2>",
                table(VERSION_HEAD, [list(v) for v in summary["versions"]]),
            ]
            if summary.get("versions")
            else []
        ),
        *(
            [
                f"<h2>Objets éliminés ou transférés ({len(summary['destroyed'])})</h2>",
                table(GONE_HEAD, [list(d) for d in summary["destroyed"]]),
            ]
            if summary.get("destroyed")
            else []
        ),
        f"<h2>Objets ({len(summary['objects'])})</h2>",
        table(["Chemin", "Taille (octets)", "SHA-256"], [list(o) for o in summary["objects"]]),
        f"<h2>Journal du cycle de vie ({len(summary['entries'])} entrées)</h2>",
        table(
            ["Entrée", "Feuille", "Date (UTC)", "Opération", "Issue"],
            [list(e) for e in summary["entries"]],
        ),
        "</body></html>",
    ]
    return "\n".join(parts).encode("utf-8")


def render_pdf(summary: dict[str, Any], report: VerificationReport) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=landscape(A4),
        title=f"{TITLE} — {summary['unit_id']}",
        author="archive-service",
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
    )
    width = landscape(A4)[0] - 3 * cm

    def p(text: object) -> Paragraph:
        return Paragraph(escape(str(text)), small)

    def grid(rows: Sequence[Sequence[object]], widths: list[float]) -> Table:
        t = Table([[p(c) for c in row] for row in rows], colWidths=[w * width for w in widths])
        t.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                ]
            )
        )
        return t

    verdict = "Toutes les vérifications sont satisfaites." if report.ok else "ÉCHEC"
    story: list[Any] = [
        Paragraph(TITLE, styles["Title"]),
        Paragraph(
            escape(
                f"{verdict} {len(report.checks)} vérifications effectuées le "
                f"{summary['created_at']} ; à refaire hors ligne avec archive-verify ou VERIFY.md."
            ),
            styles["BodyText"],
        ),
        Paragraph("Identifiants", styles["Heading2"]),
        grid([["", ""], *[[k, v] for k, v in _identifiers(summary)]], [0.25, 0.75]),
        Paragraph("Algorithmes", styles["Heading2"]),
        grid([["Objet", "Algorithme"], *[[a, b] for a, b in ALGORITHMS]], [0.4, 0.6]),
        Paragraph("Vérifications", styles["Heading2"]),
        grid(
            [
                ["Vérification", "Fichier", "Attendu", "Constaté", "Résultat"],
                *[
                    [c.name, c.subject or "", c.expected, c.found, "OK" if c.ok else "ÉCHEC"]
                    for c in report.checks
                ],
            ],
            [0.24, 0.14, 0.27, 0.27, 0.08],
        ),
        Spacer(1, 0.3 * cm),
    ]
    if summary.get("versions"):
        story += [
            Paragraph(
                f"Versions du dossier ({len(summary['versions'])} paquets)", styles["Heading2"]
            ),
            grid([VERSION_HEAD, *summary["versions"]], [0.06, 0.16, 0.16, 0.16, 0.3, 0.16]),
        ]
    if summary.get("destroyed"):
        story += [
            Paragraph(
                f"Objets éliminés ou transférés ({len(summary['destroyed'])})",
                styles["Heading2"],
            ),
            grid([GONE_HEAD, *summary["destroyed"]], [0.35, 0.1, 0.15, 0.4]),
        ]
    story += [
        Paragraph(f"Objets ({len(summary['objects'])})", styles["Heading2"]),
        grid([["Chemin", "Taille", "SHA-256"], *summary["objects"]], [0.4, 0.1, 0.5]),
        Paragraph(
            f"Journal du cycle de vie ({len(summary['entries'])} entrées)", styles["Heading2"]
        ),
        grid(
            [["Entrée", "Feuille", "Date (UTC)", "Opération", "Issue"], *summary["entries"]],
            [0.1, 0.1, 0.3, 0.35, 0.15],
        ),
    ]
    doc.build(story)
    return out.getvalue()
