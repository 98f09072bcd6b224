"""Procurement dossiers: ingest metadata, document categories and the dossier's ArchiveUnit tree.

Pure code: the metadata arrives as an already-parsed JSON value, the DECP schema check (if any)
as a callable, the retention référentiel as a :class:`~archive_service.core.retention.Referential`.

Sources (see ``domain/procurement.md``):

- §1: what a dossier de marché contains, by phase; DAJ forms (DC, ATTRI, NOTI, EXE) and the
  Pastell "Pièces de marché" codes (``megalis-bretagne/pastell``, module ``piece-marche``);
- §3: DECP 2.0.3 (arrêtés du 22 décembre 2022 modifiés), official JSON schema
  ``139bercy/format-commande-publique`` ``schema_decp_v2.0.3.json``;
- §6: the Pastell "Dossier de marché (archivage)" flow (``type_marche``, ``type_consultation``,
  ``recurrent``, ``infructueux``, ``sans_suite``), which this metadata format follows.
"""

from __future__ import annotations

import copy
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any, TypeGuard

from archive_service.core.model import (
    ArchiveUnitNode,
    DataObject,
    Description,
    DescriptionLevel,
    Keyword,
)
from archive_service.errors import InvalidInput, Issue

if TYPE_CHECKING:
    from archive_service.core.retention import Referential

# --------------------------------------------------------------------------------------------
# Controlled vocabularies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """A phase of the dossier (procurement.md §1); ``label`` titles the phase archive unit."""

    code: str
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentCategory:
    """One kind of procurement document, ``<phase>.<name>``.

    ``forms`` are the DAJ (Bercy) form codes (DC1, NOTI3, EXE10…) and ``pastell`` the codes of
    Pastell's "Pièces de marché" vocabulary (RC, AE, OS…), where procurement.md §1 names them.
    """

    code: str
    label: str
    forms: tuple[str, ...] = ()
    pastell: tuple[str, ...] = ()

    @property
    def phase(self) -> str:
        return self.code.split(".", 1)[0]


#: Phases in dossier order (procurement.md §1). The order is the order of the phase units.
PHASES: tuple[Phase, ...] = (
    Phase(code="preparation", label="Préparation et définition du besoin"),
    Phase(code="dce", label="Dossier de consultation des entreprises (DCE)"),
    Phase(code="publicite", label="Publicité"),
    Phase(code="candidatures", label="Candidatures"),
    Phase(code="offres", label="Offres"),
    Phase(code="analyse", label="Analyse des candidatures et des offres"),
    Phase(code="attribution", label="Attribution et notification"),
    Phase(code="execution", label="Exécution"),
    Phase(code="donnees", label="Données essentielles (DECP)"),
)

PHASE_BY_CODE: Mapping[str, Phase] = {p.code: p for p in PHASES}

_EXE_RECEPTION_FORMS = ("EXE4", "EXE5", "EXE6", "EXE7", "EXE8", "EXE9")

#: The controlled vocabulary of document categories (procurement.md §1), in phase order.
CATEGORIES: tuple[DocumentCategory, ...] = (
    # Préparation / besoin
    DocumentCategory(code="preparation.besoin", label="Estimation et définition des besoins"),
    DocumentCategory(
        code="preparation.etude",
        label="Études préalables (programme, APS, APD)",
        pastell=("E", "P", "APS", "APD"),
    ),
    DocumentCategory(
        code="preparation.decision",
        label="Délibération ou décision de lancer la consultation",
    ),
    # DCE
    DocumentCategory(code="dce.rc", label="Règlement de la consultation (RC)", pastell=("RC",)),
    DocumentCategory(
        code="dce.ccap",
        label="Cahier des clauses administratives particulières (CCAP)",
        pastell=("CCAP",),
    ),
    DocumentCategory(
        code="dce.cctp",
        label="Cahier des clauses techniques particulières (CCTP)",
        pastell=("CCTP",),
    ),
    DocumentCategory(
        code="dce.prix",
        label="Cadre de réponse financière vierge (BPU, DPGF, DQE)",
        pastell=("BPU", "DPGF", "DQE"),
    ),
    DocumentCategory(
        code="dce.ae", label="Modèle d'acte d'engagement (ATTRI1 vierge)", forms=("ATTRI1",)
    ),
    DocumentCategory(code="dce.annexe", label="Annexes du DCE", pastell=("AN",)),
    DocumentCategory(code="dce.plan", label="Plans"),
    # Publicité
    DocumentCategory(
        code="publicite.avis",
        label="Avis d'appel public à la concurrence (BOAMP, JOUE, JAL, profil d'acheteur)",
        pastell=("AC", "AL"),
    ),
    DocumentCategory(code="publicite.rectificatif", label="Avis rectificatif"),
    DocumentCategory(
        code="publicite.questions_reponses",
        label="Questions et réponses en cours de consultation",
        pastell=("EC",),
    ),
    DocumentCategory(code="publicite.avis_attribution", label="Avis d'attribution"),
    DocumentCategory(
        code="publicite.registre", label="Registres des retraits et des dépôts des plis"
    ),
    DocumentCategory(
        code="publicite.recepisse", label="Récépissé de dépôt de pli", pastell=("RDP",)
    ),
    # Candidatures
    DocumentCategory(
        code="candidatures.retenue",
        label="Candidature retenue (DC1, DC2, DUME, attestations)",
        forms=("DC1", "DC2", "DUME"),
    ),
    DocumentCategory(
        code="candidatures.non_retenue",
        label="Candidature non retenue (DC1, DC2, DUME)",
        forms=("DC1", "DC2", "DUME"),
    ),
    # Offres
    DocumentCategory(
        code="offres.retenue",
        label="Offre retenue (mémoire technique, offre financière)",
        pastell=("DR",),
    ),
    DocumentCategory(
        code="offres.non_retenue",
        label="Offre non retenue (mémoire technique, offre financière)",
        pastell=("DR",),
    ),
    # Analyse
    DocumentCategory(
        code="analyse.ouverture_plis",
        label="Procès-verbal d'ouverture des plis, liste des candidatures",
        pastell=("COP", "LC"),
    ),
    DocumentCategory(
        code="analyse.rao", label="Rapport d'analyse des offres (RAO)", pastell=("AO",)
    ),
    DocumentCategory(
        code="analyse.pv_cao",
        label="Procès-verbal de la commission d'appel d'offres (CAO)",
        pastell=("CAO",),
    ),
    DocumentCategory(
        code="analyse.rapport_presentation",
        label="Rapport de présentation de la procédure",
        pastell=("RP",),
    ),
    DocumentCategory(code="analyse.negociation", label="Comptes rendus de négociation"),
    # Attribution
    DocumentCategory(
        code="attribution.information_attributaire",
        label="Information de l'attributaire pressenti (NOTI1)",
        forms=("NOTI1",),
        pastell=("CA",),
    ),
    DocumentCategory(
        code="attribution.acte_engagement",
        label="Acte d'engagement signé et annexes (ATTRI1)",
        forms=("ATTRI1",),
        pastell=("AE",),
    ),
    DocumentCategory(
        code="attribution.marche_signe",
        label="Marché signé (pièces contractuelles signées)",
    ),
    DocumentCategory(code="attribution.mise_au_point", label="Mise au point", pastell=("MP",)),
    DocumentCategory(
        code="attribution.notification",
        label="Notification du marché (NOTI5)",
        forms=("NOTI5",),
        pastell=("CN",),
    ),
    DocumentCategory(
        code="attribution.ar_notification",
        label="Accusé de réception de la notification",
        pastell=("ARN",),
    ),
    DocumentCategory(
        code="attribution.rejet",
        label="Lettre de rejet d'une candidature ou d'une offre (NOTI3)",
        forms=("NOTI3",),
        pastell=("LR",),
    ),
    DocumentCategory(
        code="attribution.infructuosite",
        label="Décision ou procès-verbal d'infructuosité",
        forms=("NOTI3",),
    ),
    DocumentCategory(
        code="attribution.sans_suite", label="Déclaration sans suite", pastell=("DS",)
    ),
    DocumentCategory(
        code="attribution.sous_traitance",
        label="Déclaration de sous-traitance et acte spécial (DC4)",
        forms=("DC4",),
        pastell=("AS",),
    ),
    # Exécution (forms: 2011 EXE list, S24; the EXE4–EXE9 range is not split in the sources)
    DocumentCategory(
        code="execution.ordre_service", label="Ordre de service", forms=("EXE1",), pastell=("OS",)
    ),
    DocumentCategory(
        code="execution.bon_commande", label="Bon de commande", forms=("EXE2",), pastell=("BC",)
    ),
    DocumentCategory(
        code="execution.avenant",
        label="Avenant ou modification du marché et son rapport de présentation",
        forms=("EXE10", "EXE11"),
        pastell=("AV",),
    ),
    DocumentCategory(
        code="execution.admission", label="Décision d'admission (fournitures)", forms=("EXE3",)
    ),
    DocumentCategory(
        code="execution.reception",
        label="Réception des travaux (procès-verbal des opérations préalables, décision)",
        forms=_EXE_RECEPTION_FORMS,
    ),
    DocumentCategory(
        code="execution.levee_reserves",
        label="Levée des réserves",
        forms=_EXE_RECEPTION_FORMS,
    ),
    DocumentCategory(code="execution.doe", label="Dossier des ouvrages exécutés (DOE)"),
    DocumentCategory(
        code="execution.diuo", label="Dossier d'intervention ultérieure sur l'ouvrage (DIUO)"
    ),
    DocumentCategory(code="execution.penalites", label="Pénalités", forms=("EXE13",)),
    DocumentCategory(code="execution.mise_en_demeure", label="Mise en demeure", forms=("EXE14",)),
    DocumentCategory(code="execution.resiliation", label="Résiliation", forms=("EXE15",)),
    DocumentCategory(code="execution.acompte", label="État d'acompte", pastell=("EA",)),
    DocumentCategory(code="execution.decompte", label="Décompte"),
    DocumentCategory(
        code="execution.dgd", label="Décompte général et définitif (DGD)", pastell=("DG",)
    ),
    DocumentCategory(
        code="execution.reconduction", label="Décision de reconduction", forms=("EXE12",)
    ),
    # Données essentielles
    DocumentCategory(
        code="donnees.decp", label="Données essentielles du marché (DECP, format 2.0.3)"
    ),
)

CATEGORY_BY_CODE: Mapping[str, DocumentCategory] = {c.code: c for c in CATEGORIES}

#: Pastell ``type_marche`` (procurement.md §6). T and MO carry the 10-year rules (R2184-13).
CONTRACT_TYPES: Mapping[str, str] = {
    "T": "Travaux",
    "F": "Fournitures",
    "S": "Services",
    "TIC": "Techniques de l'information et de la communication",
    "MO": "Maîtrise d'œuvre",
    "PI": "Prestations intellectuelles",
}

#: Pastell ``type_consultation`` (procurement.md §6, module dossier-marche).
PROCEDURE_TYPES: Mapping[str, str] = {
    "MAPA": "Marché à procédure adaptée",
    "AOO": "Appel d'offres ouvert",
    "AOR": "Appel d'offres restreint",
    "DC": "Dialogue compétitif",
    "MS": "Marché subséquent",
    "PC": "Procédure concurrentielle",
    "MSMC": "Marché sans mise en concurrence",
}

#: Start events of retention and access rules (procurement.md §2.4, "configurable start events").
EVENT_NAMES: tuple[str, ...] = (
    "signature",
    "notification",
    "infructuosite",
    "sans_suite",
    "reception",
    "paiement_solde",
)

EVENT_LABELS: Mapping[str, str] = {
    "signature": "Signature du marché",
    "notification": "Notification du marché",
    "infructuosite": "Déclaration d'infructuosité",
    "sans_suite": "Déclaration sans suite",
    "reception": "Réception des travaux",
    "paiement_solde": "Paiement du solde (fin d'exécution financière)",
}

# DECP 2.0.3 enumerations of the fields we use (schema_decp_v2.0.3.json, definitions/marche).
DECP_NATURES = ("Marché", "Marché de partenariat", "Marché de défense ou de sécurité")
DECP_PROCEDURES = (
    "Procédure adaptée",
    "Appel d'offres ouvert",
    "Appel d'offres restreint",
    "Procédure avec négociation",
    "Marché passé sans publicité ni mise en concurrence préalable",
    "Dialogue compétitif",
)
DECP_ID_TYPES = ("SIRET", "TVA", "TAHITI", "RIDET", "FRWF", "IREP", "HORS-UE")

#: Names of the ``Description.extension`` pairs of the dossier unit, in the order emitted.
DOSSIER_EXTENSION_FIELDS: tuple[str, ...] = (
    "consultation_number",
    "contract_number",
    "contract_type",
    "procedure_type",
    "infructueux",
    "sans_suite",
    "recurrent",
    *(f"event_{name}" for name in EVENT_NAMES),
    "decp_id",
    "decp_nature",
    "decp_procedure",
    "decp_montant",
    "decp_dateNotification",
    "decp_codeCPV",
)

# --------------------------------------------------------------------------------------------
# Identifiers: SIRET, CPV
# --------------------------------------------------------------------------------------------

_LA_POSTE_SIREN = "356000000"
_LA_POSTE_HEAD_OFFICE = "35600000000048"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def siret_problem(value: str) -> str | None:
    """Why ``value`` is not a valid SIRET, in French, or ``None`` when it is valid.

    A SIRET is 14 digits; the SIRET and its SIREN (first 9 digits) both satisfy the Luhn
    checksum (INSEE). La Poste's establishments (SIREN 356000000) are the documented exception:
    their digit sum is a multiple of 5 instead; the head office 35600000000048 keeps Luhn.
    Same rule as python-stdnum ``stdnum.fr.siret``.
    """
    if len(value) != 14 or not value.isascii() or not value.isdigit():
        return "un SIRET comporte exactement 14 chiffres"
    if value.startswith(_LA_POSTE_SIREN) and value != _LA_POSTE_HEAD_OFFICE:
        if sum(int(c) for c in value) % 5 != 0:
            return "SIRET de La Poste invalide : la somme des chiffres doit être multiple de 5"
        return None
    if not _luhn_ok(value):
        return "clé de contrôle du SIRET invalide (algorithme de Luhn)"
    if not _luhn_ok(value[:9]):
        return "clé de contrôle du SIREN invalide (algorithme de Luhn)"
    return None


def is_valid_siret(value: str) -> bool:
    """True for a 14-digit SIRET whose checksum verifies (see :func:`siret_problem`)."""
    return siret_problem(value) is None


_CPV = re.compile(r"^[0-9]{8}(-[0-9])?$")


def is_valid_cpv(code: str) -> bool:
    """True when ``code`` has the DECP 2.0.3 ``CodeCPV`` shape ``^[0-9]{8}(-[0-9])?$``.

    The check digit is *not* verified. Regulation (EC) 213/2008 publishes the codes with their
    check digit but no algorithm; Luhn, ISO 7064 (MOD 11-10, MOD 11-2, MOD 97-10), Verhoeff,
    Damm and every weighted sum modulo 10, 11, 13, 37 or 97 fail on published codes (e.g.
    03000000-1, 09100000-0, 45000000-7). The DECP schema itself recommends omitting the digit.
    """
    return bool(_CPV.match(code))


def cpv_root(code: str) -> str:
    """The 8-digit CPV code without its optional check digit (``45000000-7`` → ``45000000``)."""
    return code.split("-", 1)[0]


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DossierEvents:
    """Known dates of the start events; ``None`` while the event has not happened (yet)."""

    signature: date | None = None
    notification: date | None = None
    infructuosite: date | None = None
    sans_suite: date | None = None
    reception: date | None = None
    paiement_solde: date | None = None

    def get(self, name: str) -> date | None:
        if name not in EVENT_NAMES:
            msg = f"unknown start event {name!r}"
            raise KeyError(msg)
        value: date | None = getattr(self, name)
        return value

    def known(self) -> tuple[tuple[str, date], ...]:
        """``(event, date)`` for every known event, in :data:`EVENT_NAMES` order."""
        out = []
        for name in EVENT_NAMES:
            value = self.get(name)
            if value is not None:
                out.append((name, value))
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Titulaire:
    """A DECP ``titulaire``: identifier and identifier type (DECP 2.0 has no name field)."""

    id: str
    id_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DecpMarche:
    """Typed view of the DECP ``marche`` fields this service uses; the full object stays in
    :attr:`DossierMetadata.decp`."""

    id: str
    buyer_id: str
    nature: str
    objet: str
    cpv_code: str
    procedure: str
    date_notification: date
    montant: int | float
    titulaires: tuple[Titulaire, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One declared file of the transfer.

    ``path`` is the sender's relative POSIX path exactly as declared (uploaded parts are
    matched on it); duplicates are detected after NFC normalisation (:func:`normalize_path`).
    ``sha256`` is lowercase hex when declared.
    """

    path: str
    category: str
    sha256: str | None = None
    title: str | None = None
    mime_type: str | None = None

    def __post_init__(self) -> None:
        problem = path_problem(self.path)
        if problem is not None:
            raise ValueError(f"invalid file path {self.path!r}: {problem}")
        if self.category not in CATEGORY_BY_CODE:
            msg = f"unknown document category {self.category!r}"
            raise ValueError(msg)
        if self.sha256 is not None and not _SHA256_LOWER.match(self.sha256):
            msg = "sha256 must be 64 lowercase hex characters"
            raise ValueError(msg)

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def phase(self) -> str:
        return self.category.split(".", 1)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class DossierMetadata:
    """The validated ingest metadata of one procurement dossier (``metadata`` part).

    ``decp`` is the DECP 2.0.3 ``marche`` object exactly as sent (a deep copy; lossless);
    ``marche`` is the typed view of the fields we use. Both are ``None`` for a procedure
    declared infructueuse or sans suite that sent no DECP.
    """

    message_identifier: str
    organization: str
    title: str
    contract_type: str
    files: tuple[FileEntry, ...]
    description: str | None = None
    consultation_number: str | None = None
    contract_number: str | None = None
    procedure_type: str | None = None
    infructueux: bool = False
    sans_suite: bool = False
    recurrent: bool = False
    keywords: tuple[str, ...] = ()
    events: DossierEvents = field(default_factory=DossierEvents)
    decp: Mapping[str, Any] | None = field(default=None, hash=False)
    marche: DecpMarche | None = None

    def __post_init__(self) -> None:
        if not self.files:
            msg = "a dossier needs at least one file"
            raise ValueError(msg)
        if self.contract_type not in CONTRACT_TYPES:
            msg = f"unknown contract type {self.contract_type!r}"
            raise ValueError(msg)
        if not self.title.strip():
            msg = "a dossier needs a non-empty title"
            raise ValueError(msg)


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------

_SHA256_ANY = re.compile(r"^[0-9a-fA-F]{64}$")
_SHA256_LOWER = re.compile(r"^[0-9a-f]{64}$")


def normalize_path(path: str) -> str:
    """NFC form of a file path: the form in which duplicates are detected and objects matched."""
    return unicodedata.normalize("NFC", path)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def path_problem(path: str) -> str | None:
    """Why ``path`` is not an acceptable relative POSIX path (in French), or ``None``.

    Refused: empty, absolute (leading ``/``), backslashes, control characters, empty segments
    (``a//b``, trailing ``/``), ``.`` and ``..`` segments, segments over 255 characters.
    """
    if not path:
        return "chemin vide"
    if path.startswith("/"):
        return "le chemin doit être relatif (pas de « / » initial)"
    if "\\" in path:
        return "la barre oblique inverse « \\ » est interdite ; séparateur : « / »"
    if _has_control(path):
        return "caractère de contrôle interdit dans le chemin"
    for segment in path.split("/"):
        if segment == "":
            return "segment vide dans le chemin (« // » ou « / » final)"
        if segment in (".", ".."):
            return f"segment « {segment} » interdit dans le chemin"
        if len(segment) > 255:
            return "segment de plus de 255 caractères"
    return None


# --------------------------------------------------------------------------------------------
# parse_metadata
# --------------------------------------------------------------------------------------------

_TOP_LEVEL_KEYS = frozenset(
    {
        "message_identifier",
        "organization",
        "title",
        "description",
        "consultation_number",
        "contract_number",
        "contract_type",
        "procedure_type",
        "infructueux",
        "sans_suite",
        "recurrent",
        "keywords",
        "events",
        "decp",
        "files",
    }
)
_FILE_KEYS = frozenset({"path", "category", "sha256", "title", "mime_type"})
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_MIME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"]*\"|[A-Za-z0-9!#$&^_.+-]+))*$"
)
# XML 1.0 cannot carry C0 controls other than tab, LF and CR (nor U+FFFE/U+FFFF).
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

DecpValidator = Callable[[dict[str, Any]], Iterable[str]]
"""Checks a DECP ``marche`` object (e.g. against the official JSON schema); returns messages."""


def _pointer(*parts: str | int) -> str:
    """RFC 6901 JSON pointer; ``~`` and ``/`` in keys are escaped."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Issues:
    def __init__(self) -> None:
        self.items: list[Issue] = []

    def add(self, code: str, message: str, *parts: str | int) -> None:
        self.items.append(Issue(code, message, _pointer(*parts)))


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "booléen"
    if isinstance(value, int | float):
        return "nombre"
    if isinstance(value, str):
        return "chaîne"
    if isinstance(value, list):
        return "tableau"
    if isinstance(value, dict):
        return "objet"
    return type(value).__name__


def _text(
    obj: Mapping[str, Any],
    key: str,
    issues: _Issues,
    *where: str | int,
    required: bool,
    max_length: int | None = None,
    single_line: bool = True,
) -> str | None:
    """A string field: present (if required), a string, non-blank, no forbidden characters."""
    if key not in obj:
        if required:
            issues.add("missing-field", f"champ obligatoire « {key} » absent", *where, key)
        return None
    value = obj[key]
    if not isinstance(value, str):
        issues.add(
            "invalid-type",
            f"« {key} » doit être une chaîne, pas un(e) {_type_name(value)}",
            *where,
            key,
        )
        return None
    if not value.strip():
        issues.add("invalid-value", f"« {key} » ne doit pas être vide", *where, key)
        return None
    if max_length is not None and len(value) > max_length:
        issues.add(
            "invalid-length",
            f"« {key} » dépasse {max_length} caractères ({len(value)})",
            *where,
            key,
        )
        return None
    bad = _has_control(value) if single_line else bool(_XML_FORBIDDEN.search(value))
    if bad:
        issues.add("invalid-value", f"« {key} » contient un caractère de contrôle", *where, key)
        return None
    return value


def _bool(obj: Mapping[str, Any], key: str, issues: _Issues) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        issues.add("invalid-type", f"« {key} » doit être un booléen (true/false)", key)
        return False
    return value


def _parse_date(value: object, issues: _Issues, *where: str | int) -> date | None:
    if not isinstance(value, str) or not _DATE.match(value):
        issues.add("invalid-date", "date attendue au format AAAA-MM-JJ", *where)
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        issues.add("invalid-date", f"date inexistante : {value}", *where)
        return None


def _parse_events(raw: object, issues: _Issues) -> dict[str, date]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.add("invalid-type", "« events » doit être un objet {événement: date}", "events")
        return {}
    out: dict[str, date] = {}
    for key, value in raw.items():
        if key not in EVENT_NAMES:
            issues.add(
                "unknown-event",
                f"événement inconnu « {key} » ; attendus : {', '.join(EVENT_NAMES)}",
                "events",
                key,
            )
            continue
        parsed = _parse_date(value, issues, "events", key)
        if parsed is not None:
            out[key] = parsed
    return out


def _parse_keywords(raw: object, issues: _Issues) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        issues.add("invalid-type", "« keywords » doit être un tableau de chaînes", "keywords")
        return ()
    out: list[str] = []
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not value.strip():
            issues.add("invalid-value", "mot-clé : chaîne non vide attendue", "keywords", index)
        elif _has_control(value):
            issues.add("invalid-value", "mot-clé : caractère de contrôle", "keywords", index)
        else:
            out.append(value)
    return tuple(out)


def _parse_files(raw: object, issues: _Issues) -> list[FileEntry]:
    if raw is None:
        issues.add("missing-field", "champ obligatoire « files » absent", "files")
        return []
    if not isinstance(raw, list):
        issues.add("invalid-type", "« files » doit être un tableau", "files")
        return []
    if not raw:
        issues.add("invalid-value", "le versement doit déclarer au moins un fichier", "files")
        return []
    out: list[FileEntry] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        where = ("files", index)
        if not isinstance(item, dict):
            issues.add("invalid-type", "chaque fichier est décrit par un objet", *where)
            continue
        before = len(issues.items)
        for key in sorted(set(item) - _FILE_KEYS):
            issues.add("unknown-field", f"champ inconnu « {key} »", *where, key)
        path = _text(item, "path", issues, *where, required=True)
        if path is not None:
            problem = path_problem(path)
            if problem is not None:
                issues.add("invalid-path", problem, *where, "path")
                path = None
            else:
                norm = normalize_path(path)
                if norm in seen:
                    issues.add(
                        "duplicate-path",
                        f"chemin déjà déclaré en /files/{seen[norm]}/path",
                        *where,
                        "path",
                    )
                    path = None
                else:
                    seen[norm] = index
        category = _text(item, "category", issues, *where, required=True)
        if category is not None and category not in CATEGORY_BY_CODE:
            issues.add(
                "unknown-category",
                f"catégorie documentaire inconnue « {category} »",
                *where,
                "category",
            )
        sha256 = _text(item, "sha256", issues, *where, required=False)
        if sha256 is not None and not _SHA256_ANY.match(sha256):
            issues.add(
                "invalid-sha256", "empreinte SHA-256 : 64 caractères hexadécimaux", *where, "sha256"
            )
        title = _text(item, "title", issues, *where, required=False)
        mime = _text(item, "mime_type", issues, *where, required=False, max_length=255)
        if mime is not None and not _MIME.match(mime):
            issues.add("invalid-value", f"type MIME invalide « {mime} »", *where, "mime_type")
        if len(issues.items) == before and path is not None and category is not None:
            out.append(
                FileEntry(
                    path=path,
                    category=category,
                    sha256=sha256.lower() if sha256 is not None else None,
                    title=title,
                    mime_type=mime,
                )
            )
    return out


def _number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number; booleans (a subclass of int in Python) are not numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_decp(raw: object, organization: str | None, issues: _Issues) -> DecpMarche | None:
    """Check the DECP ``marche`` fields we use (schema_decp_v2.0.3.json, definitions/marche)."""
    if not isinstance(raw, dict):
        issues.add("invalid-type", "« decp » doit être un objet DECP « marche »", "decp")
        return None
    before = len(issues.items)
    where = ("decp",)
    decp_id = _text(raw, "id", issues, *where, required=True, max_length=16)

    buyer_id: str | None = None
    buyer = raw.get("acheteur")
    if buyer is None:
        issues.add("missing-field", "champ obligatoire « acheteur » absent", *where, "acheteur")
    elif not isinstance(buyer, dict):
        issues.add("invalid-type", "« acheteur » doit être un objet {id}", *where, "acheteur")
    else:
        buyer_id = _text(buyer, "id", issues, *where, "acheteur", required=True)
        if buyer_id is not None and organization is not None and buyer_id != organization:
            issues.add(
                "buyer-mismatch",
                f"l'acheteur DECP ({buyer_id}) n'est pas le service producteur ({organization})",
                *where,
                "acheteur",
                "id",
            )

    nature = _text(raw, "nature", issues, *where, required=True)
    if nature is not None and nature not in DECP_NATURES:
        issues.add("invalid-value", f"nature inconnue « {nature} »", *where, "nature")
    objet = _text(raw, "objet", issues, *where, required=True, max_length=1000, single_line=False)
    cpv = _text(raw, "codeCPV", issues, *where, required=True)
    if cpv is not None and not is_valid_cpv(cpv):
        issues.add(
            "invalid-cpv",
            f"code CPV invalide « {cpv} » (attendu 12345678 ou 12345678-9)",
            *where,
            "codeCPV",
        )
    procedure = _text(raw, "procedure", issues, *where, required=True)
    if procedure is not None and procedure not in DECP_PROCEDURES:
        issues.add("invalid-value", f"procédure inconnue « {procedure} »", *where, "procedure")

    notified: date | None = None
    if "dateNotification" not in raw:
        issues.add(
            "missing-field",
            "champ obligatoire « dateNotification » absent",
            *where,
            "dateNotification",
        )
    else:
        notified = _parse_date(raw["dateNotification"], issues, *where, "dateNotification")

    montant = raw.get("montant")
    if "montant" not in raw:
        issues.add("missing-field", "champ obligatoire « montant » absent", *where, "montant")
    elif not _number(montant):
        issues.add("invalid-type", "« montant » doit être un nombre", *where, "montant")
    elif montant < 1:
        issues.add("invalid-value", "« montant » doit être au moins 1", *where, "montant")

    titulaires = _parse_titulaires(raw.get("titulaires"), issues)

    if len(issues.items) != before:
        return None
    assert decp_id is not None and buyer_id is not None and nature is not None
    assert objet is not None and cpv is not None and procedure is not None
    assert notified is not None and isinstance(montant, int | float)
    return DecpMarche(
        id=decp_id,
        buyer_id=buyer_id,
        nature=nature,
        objet=objet,
        cpv_code=cpv,
        procedure=procedure,
        date_notification=notified,
        montant=montant,
        titulaires=titulaires,
    )


def _parse_titulaires(raw: object, issues: _Issues) -> tuple[Titulaire, ...]:
    where = ("decp", "titulaires")
    if raw is None:
        issues.add("missing-field", "champ obligatoire « titulaires » absent", *where)
        return ()
    if not isinstance(raw, list) or not raw:
        issues.add("invalid-value", "« titulaires » : tableau non vide de {titulaire: {…}}", *where)
        return ()
    out: list[Titulaire] = []
    for index, item in enumerate(raw):
        inner = item.get("titulaire") if isinstance(item, dict) else None
        if not isinstance(inner, dict):
            issues.add(
                "invalid-type",
                'chaque entrée est un objet {"titulaire": {"id", "typeIdentifiant"}}',
                *where,
                index,
            )
            continue
        at = (*where, index, "titulaire")
        tid = _text(inner, "id", issues, *at, required=True)
        ttype = _text(inner, "typeIdentifiant", issues, *at, required=True)
        if ttype is not None and ttype not in DECP_ID_TYPES:
            issues.add(
                "invalid-value",
                f"type d'identifiant inconnu « {ttype} »",
                *at,
                "typeIdentifiant",
            )
            continue
        if tid is not None and ttype is not None:
            out.append(Titulaire(id=tid, id_type=ttype))
    return tuple(out)


def parse_metadata(raw: object, *, decp_validator: DecpValidator | None = None) -> DossierMetadata:
    """Validate the ``metadata`` part of ``POST /v1/transfers`` and return it typed.

    Every problem found becomes one :class:`~archive_service.errors.Issue` whose ``location``
    is a JSON pointer into ``raw`` (``/files/3/category``); all of them are raised together in
    one :class:`~archive_service.errors.InvalidInput`. Unknown keys are refused (strict).

    ``decp_validator`` (from the service layer, e.g. built on the official DECP 2.0.3 JSON
    schema with jsonschema) is called on the ``decp`` object; each message it returns becomes
    a ``decp-schema`` issue at ``/decp``. When ``events.notification`` is absent it is taken
    from ``decp.dateNotification``.
    """
    issues = _Issues()
    if not isinstance(raw, dict):
        issues.items.append(Issue("invalid-type", "les métadonnées doivent être un objet JSON", ""))
        raise InvalidInput("Métadonnées du versement invalides", issues=issues.items)

    for key in sorted(set(raw) - _TOP_LEVEL_KEYS):
        issues.add("unknown-field", f"champ inconnu « {key} »", key)

    message_identifier = _text(raw, "message_identifier", issues, required=True, max_length=128)

    organization = _text(raw, "organization", issues, required=True)
    if organization is not None:
        problem = siret_problem(organization)
        if problem is not None:
            issues.add("invalid-siret", f"SIRET du service producteur : {problem}", "organization")
            organization = None

    title = _text(raw, "title", issues, required=True)
    description = _text(raw, "description", issues, required=False, single_line=False)
    consultation_number = _text(raw, "consultation_number", issues, required=False)
    contract_number = _text(raw, "contract_number", issues, required=False)

    contract_type = _text(raw, "contract_type", issues, required=True)
    if contract_type is not None and contract_type not in CONTRACT_TYPES:
        issues.add(
            "invalid-value",
            f"type de marché inconnu « {contract_type} » ; attendus : " + ", ".join(CONTRACT_TYPES),
            "contract_type",
        )
        contract_type = None
    procedure_type = _text(raw, "procedure_type", issues, required=False)
    if procedure_type is not None and procedure_type not in PROCEDURE_TYPES:
        issues.add(
            "invalid-value",
            f"type de procédure inconnu « {procedure_type} » ; attendus : "
            + ", ".join(PROCEDURE_TYPES),
            "procedure_type",
        )

    infructueux = _bool(raw, "infructueux", issues)
    sans_suite = _bool(raw, "sans_suite", issues)
    recurrent = _bool(raw, "recurrent", issues)
    keywords = _parse_keywords(raw.get("keywords"), issues)
    events = _parse_events(raw.get("events"), issues)

    decp_raw = raw.get("decp")
    marche: DecpMarche | None = None
    if "decp" not in raw or decp_raw is None:
        if not (infructueux or sans_suite):
            issues.add(
                "missing-field",
                "champ « decp » obligatoire sauf procédure infructueuse ou sans suite",
                "decp",
            )
        decp_raw = None
    else:
        # A bad SIRET is already reported at /organization; compare with what was sent.
        sent_org = raw.get("organization") if isinstance(raw.get("organization"), str) else None
        marche = _parse_decp(decp_raw, sent_org, issues)
        if isinstance(decp_raw, dict) and decp_validator is not None:
            for message in decp_validator(decp_raw):
                issues.add("decp-schema", f"schéma DECP 2.0.3 : {message}", "decp")

    if marche is not None:
        declared = events.get("notification")
        if declared is None:
            events["notification"] = marche.date_notification
        elif declared != marche.date_notification:
            issues.add(
                "event-conflict",
                f"notification {declared.isoformat()} ≠ decp.dateNotification "
                f"{marche.date_notification.isoformat()}",
                "events",
                "notification",
            )

    files = _parse_files(raw.get("files"), issues)

    if issues.items:
        count = len(issues.items)
        raise InvalidInput(
            f"Métadonnées du versement invalides ({count} problème{'s' if count > 1 else ''})",
            issues=issues.items,
        )
    assert message_identifier is not None and organization is not None
    assert title is not None and contract_type is not None
    return DossierMetadata(
        message_identifier=message_identifier,
        organization=organization,
        title=title,
        description=description,
        consultation_number=consultation_number,
        contract_number=contract_number,
        contract_type=contract_type,
        procedure_type=procedure_type,
        infructueux=infructueux,
        sans_suite=sans_suite,
        recurrent=recurrent,
        keywords=keywords,
        events=DossierEvents(**events),
        decp=copy.deepcopy(decp_raw) if isinstance(decp_raw, dict) else None,
        marche=marche,
        files=tuple(files),
    )


# --------------------------------------------------------------------------------------------
# The dossier's ArchiveUnit tree
# --------------------------------------------------------------------------------------------


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _number_text(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


def _titulaire_keywords(meta: DossierMetadata) -> list[Keyword]:
    """Titulaires of the marché and of its modifications (``corpname``), without duplicates."""
    found: list[tuple[str, str]] = []
    if meta.marche is not None:
        found.extend((t.id_type, t.id) for t in meta.marche.titulaires)
    modifications = meta.decp.get("modifications") if meta.decp is not None else None
    if isinstance(modifications, list):
        for entry in modifications:
            mod = entry.get("modification") if isinstance(entry, dict) else None
            holders = mod.get("titulaires") if isinstance(mod, dict) else None
            for holder in holders if isinstance(holders, list) else ():
                inner = holder.get("titulaire") if isinstance(holder, dict) else None
                if isinstance(inner, dict):
                    tid, ttype = inner.get("id"), inner.get("typeIdentifiant")
                    if isinstance(tid, str) and isinstance(ttype, str) and tid.strip():
                        found.append((ttype, tid))
    out: list[Keyword] = []
    seen: set[tuple[str, str]] = set()
    for id_type, tid in found:
        if (id_type, tid) not in seen:
            seen.add((id_type, tid))
            out.append(Keyword(content=tid, type="corpname", reference=f"{id_type}:{tid}"))
    return out


def _dossier_description(meta: DossierMetadata) -> Description:
    keywords: list[Keyword] = []
    if meta.marche is not None:
        cpv = meta.marche.cpv_code
        keywords.append(Keyword(content=cpv, type="subject", reference=cpv_root(cpv)))
    keywords.extend(Keyword(content=k) for k in meta.keywords)
    keywords.extend(_titulaire_keywords(meta))

    system_ids: list[str] = []
    for value in (
        meta.marche.id if meta.marche is not None else None,
        meta.consultation_number,
    ):
        if value is not None and value not in system_ids:
            system_ids.append(value)

    extension: list[tuple[str, str]] = []
    if meta.consultation_number is not None:
        extension.append(("consultation_number", meta.consultation_number))
    if meta.contract_number is not None:
        extension.append(("contract_number", meta.contract_number))
    extension.append(("contract_type", meta.contract_type))
    if meta.procedure_type is not None:
        extension.append(("procedure_type", meta.procedure_type))
    extension.extend(
        [
            ("infructueux", _flag(meta.infructueux)),
            ("sans_suite", _flag(meta.sans_suite)),
            ("recurrent", _flag(meta.recurrent)),
        ]
    )
    known = meta.events.known()
    extension.extend((f"event_{name}", day.isoformat()) for name, day in known)
    if meta.marche is not None:
        m = meta.marche
        extension.extend(
            [
                ("decp_id", m.id),
                ("decp_nature", m.nature),
                ("decp_procedure", m.procedure),
                ("decp_montant", _number_text(m.montant)),
                ("decp_dateNotification", m.date_notification.isoformat()),
                ("decp_codeCPV", m.cpv_code),
            ]
        )

    dates = [day for _, day in known]
    description = meta.description
    if description is None and meta.marche is not None:
        description = meta.marche.objet
    return Description(
        level=DescriptionLevel.RECORD_GROUP,
        title=meta.title,
        description=description,
        keywords=tuple(keywords),
        originating_agency=meta.organization,
        originating_system_ids=tuple(system_ids),
        start_date=min(dates) if dates else None,
        end_date=max(dates) if dates else None,
        extension=tuple(extension),
    )


def _match_objects(
    meta: DossierMetadata, objects: Mapping[str, DataObject]
) -> dict[str, DataObject]:
    """Objects re-keyed by NFC path; every declared file must have exactly one object."""
    issues = _Issues()
    by_path: dict[str, DataObject] = {}
    for key, obj in objects.items():
        norm = normalize_path(key)
        if norm in by_path:
            issues.add("duplicate-path", f"deux fichiers reçus pour le chemin « {norm} »", "files")
        by_path[norm] = obj
    declared = {normalize_path(f.path) for f in meta.files}
    for index, entry in enumerate(meta.files):
        if normalize_path(entry.path) not in by_path:
            issues.add(
                "file-missing",
                f"fichier déclaré mais non reçu : {entry.path}",
                "files",
                index,
                "path",
            )
    for path in sorted(set(by_path) - declared):
        issues.add("file-not-listed", f"fichier reçu mais non déclaré : {path}", "files")
    if issues.items:
        raise InvalidInput("Fichiers reçus et fichiers déclarés diffèrent", issues=issues.items)
    return by_path


def build_dossier_tree(
    meta: DossierMetadata,
    objects: Mapping[str, DataObject],
    referential: Referential,
    *,
    new_id: Callable[[str], str],
) -> ArchiveUnitNode:
    """The dossier's ArchiveUnit tree: dossier (RecordGrp) → phases (SubGrp) → documents (Item).

    Phases appear in :data:`PHASES` order, only when they hold a file; documents keep the order
    of ``meta.files``. Each document carries its category, the appraisal and access rules the
    référentiel gives for it, and references its data object (``objects`` is keyed by file
    path). ``new_id("au")`` is called depth first (dossier, phase, its documents, next phase…),
    so the same inputs and the same id sequence give the same tree.

    Raises :class:`~archive_service.errors.InvalidInput` when a declared file has no object or
    an object was not declared.
    """
    by_path = _match_objects(meta, objects)
    root_id = new_id("au")
    phases: list[ArchiveUnitNode] = []
    for phase in PHASES:
        entries = [f for f in meta.files if f.phase == phase.code]
        if not entries:
            continue
        phase_id = new_id("au")
        documents: list[ArchiveUnitNode] = []
        for entry in entries:
            category = CATEGORY_BY_CODE[entry.category]
            documents.append(
                ArchiveUnitNode(
                    id=new_id("au"),
                    description=Description(
                        level=DescriptionLevel.ITEM,
                        title=entry.title or entry.filename,
                        document_type=category.label,
                        extension=(("category", category.code), ("source_path", entry.path)),
                    ),
                    category=category.code,
                    appraisal=referential.appraisal_for(category.code, meta),
                    access=referential.access_for(category.code, meta),
                    data_object_ids=(by_path[normalize_path(entry.path)].id,),
                )
            )
        phases.append(
            ArchiveUnitNode(
                id=phase_id,
                description=Description(
                    level=DescriptionLevel.SUB_GROUP,
                    title=phase.label,
                    extension=(("phase", phase.code),),
                ),
                children=tuple(documents),
            )
        )
    return ArchiveUnitNode(
        id=root_id, description=_dossier_description(meta), children=tuple(phases)
    )


# --------------------------------------------------------------------------------------------
# Additions to an existing dossier (growing dossiers, issue 5 item 2)
# --------------------------------------------------------------------------------------------

DOSSIER_KEY = "dossier"
"""Top-level key of the ingest metadata naming the dossier a transfer adds to."""

_ADDITION_KEYS = frozenset({DOSSIER_KEY, "message_identifier", "organization", "events", "files"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AdditionMetadata:
    """The validated metadata of a transfer that adds documents to an archived dossier.

    ``dossier`` is the id of any archive unit of the dossier (its root is found by the
    service). Title, contract type, DECP… are the dossier's, from its first transfer: an
    addition only brings files and, optionally, events that happened since (``réception``,
    ``paiement_solde``…). ``organization``, when given, must be the dossier's.
    """

    dossier: str
    message_identifier: str
    files: tuple[FileEntry, ...]
    organization: str | None = None
    events: DossierEvents = field(default_factory=DossierEvents)


def is_addition(raw: object) -> bool:
    """Whether the ingest metadata ``raw`` names an existing dossier to add to."""
    return isinstance(raw, dict) and DOSSIER_KEY in raw


def parse_addition(raw: object) -> AdditionMetadata:
    """Validate the metadata of an addition (``{"dossier": "<unit id>", ...}``).

    Dossier-level fields (title, contract type, DECP…) are refused rather than ignored: they
    are the dossier's own, fixed by its first transfer, and silently dropping what a sender
    sent would hide a mistake (the sender probably meant a new dossier).
    """
    issues = _Issues()
    if not isinstance(raw, dict):
        issues.items.append(Issue("invalid-type", "les métadonnées doivent être un objet JSON", ""))
        raise InvalidInput("Métadonnées du versement invalides", issues=issues.items)
    for key in sorted(set(raw) - _ADDITION_KEYS):
        if key in _TOP_LEVEL_KEYS:
            issues.add(
                "not-allowed-in-addition",
                f"« {key} » est une donnée du dossier, reprise de son premier versement ; "
                "un ajout ne la redéfinit pas",
                key,
            )
        else:
            issues.add("unknown-field", f"champ inconnu « {key} »", key)
    dossier = _text(raw, DOSSIER_KEY, issues, required=True, max_length=40)
    message_identifier = _text(raw, "message_identifier", issues, required=True, max_length=128)
    organization = _text(raw, "organization", issues, required=False)
    if organization is not None:
        problem = siret_problem(organization)
        if problem is not None:
            issues.add("invalid-siret", f"SIRET du service producteur : {problem}", "organization")
            organization = None
    events = _parse_events(raw.get("events"), issues)
    files = _parse_files(raw.get("files"), issues)
    if issues.items:
        count = len(issues.items)
        raise InvalidInput(
            f"Métadonnées de l'ajout invalides ({count} problème{'s' if count > 1 else ''})",
            issues=issues.items,
        )
    assert dossier is not None and message_identifier is not None
    return AdditionMetadata(
        dossier=dossier,
        message_identifier=message_identifier,
        organization=organization,
        events=DossierEvents(**events),
        files=tuple(files),
    )


def merged_events(
    known: Iterable[DossierEvents], *, where: str = "/events"
) -> tuple[DossierEvents, list[Issue]]:
    """The events of a dossier's transfers taken together; an event dated differently by two
    transfers is a conflict (one issue each), the first date is kept."""
    out: dict[str, date] = {}
    issues: list[Issue] = []
    for events in known:
        for name, day in events.known():
            if name in out and out[name] != day:
                issues.append(
                    Issue(
                        "event-conflict",
                        f"événement {name} daté {day.isoformat()} ; le dossier le date déjà du "
                        f"{out[name].isoformat()}",
                        f"{where}/{name}",
                    )
                )
                continue
            out.setdefault(name, day)
    return DossierEvents(**out), issues


def metadata_for_addition(first: DossierMetadata, addition: AdditionMetadata) -> DossierMetadata:
    """The dossier's metadata (from its first transfer) with the addition's files and message
    identifier: what the référentiel computes the new documents' rules over. ``first.events``
    should already hold the events of every transfer of the dossier (:func:`merged_events`)."""
    return DossierMetadata(
        message_identifier=addition.message_identifier,
        organization=first.organization,
        title=first.title,
        contract_type=first.contract_type,
        files=addition.files,
        description=first.description,
        consultation_number=first.consultation_number,
        contract_number=first.contract_number,
        procedure_type=first.procedure_type,
        infructueux=first.infructueux,
        sans_suite=first.sans_suite,
        recurrent=first.recurrent,
        keywords=first.keywords,
        events=first.events,
        decp=first.decp,
        marche=first.marche,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExistingUnit:
    """A unit already archived that an addition attaches to (the dossier or one of its
    phases): referred to in the new manifest by its ``SystemId``, never described again."""

    id: str
    title: str
    level: DescriptionLevel


def build_addition_tree(
    meta: DossierMetadata,
    objects: Mapping[str, DataObject],
    referential: Referential,
    *,
    dossier: ExistingUnit,
    phases: Mapping[str, ExistingUnit],
    new_id: Callable[[str], str],
    phase_id: Callable[[str], str] | None = None,
) -> ArchiveUnitNode:
    """The ArchiveUnit tree of an addition: the existing dossier on top (its id), under it each
    phase of the new files (the existing phase unit of that phase when the dossier has one,
    keyed by phase code in ``phases``; a new phase unit otherwise), then the new documents,
    built exactly as :func:`build_dossier_tree` builds them (rules from ``referential`` over
    ``meta``). Nodes whose id is that of an :class:`ExistingUnit` carry only a title and a
    level; the manifest builder renders them as references (``existing_ids``).

    ``phase_id(code)``, when given, is the id of a phase the dossier does not have yet: one
    id per dossier and phase, so that two additions built at once create the same phase unit
    (recorded once), not two phases of the same name."""
    first = build_dossier_tree(meta, objects, referential, new_id=new_id)
    children: list[ArchiveUnitNode] = []
    for phase_node in first.children:
        code = dict(phase_node.description.extension).get("phase", "")
        existing = phases.get(code)
        if existing is None:
            if phase_id is not None:
                phase_node = replace(phase_node, id=phase_id(code))
            children.append(phase_node)
            continue
        children.append(
            ArchiveUnitNode(
                id=existing.id,
                description=Description(level=existing.level, title=existing.title),
                children=phase_node.children,
            )
        )
    return ArchiveUnitNode(
        id=dossier.id,
        description=Description(level=dossier.level, title=dossier.title),
        children=tuple(children),
    )
