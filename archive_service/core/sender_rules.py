"""The management rules a foreign SEDA transfer declares, resolved into ours (fail-closed).

A foreign transfer keeps the sender's ``ArchiveUnit`` tree; each unit records what its
``Management`` said (``content["sender_rules"]``: category, rule id, ``StartDate``,
``FinalAction``; ``content["sender_inheritance"]``: ``PreventInheritance`` and
``RefNonRuleId`` per category). A manifest names rules, never their durations: those live in
the sender's référentiel. :func:`resolve_sender_rules` gives every unit its effective
``AppraisalRule`` and ``AccessRule``:

- **Inheritance** (SEDA 2.x ``Management``, as Vitam applies it): a unit has the rules of
  its parent of the same category plus its own; its own rule with an inherited id replaces
  that one (its own ``StartDate``). ``PreventInheritance`` drops everything inherited of the
  category; ``RefNonRuleId`` drops the inherited rules it names. Of several rules in force,
  the latest end governs (every délai must have run; the DUA is the longest). ``FinalAction``
  is the unit's own, else the inherited one, else ``Keep`` (nothing is destroyed by default).
- **Durations**: the rule id is looked up in the tenant's référentiel (our ids, e.g.
  ``MP-ACC-SA-25A``; an appraisal rule of several terms counts its longest), then in
  :data:`KNOWN_RULES` (a few standard Vitam ids, each with its source).
- **Fail-closed**: an id found nowhere (or found only in the other category) is
  *unresolved*: ``duration_years`` null, no end date. An unresolved access rule makes the unit
  not communicable (``core/communicability.py``: "unknown sender rule <id>"); an unresolved or
  undated appraisal rule is never due (an archivist must map it first). A rule without
  ``StartDate`` is *pending* (no end, not communicable, not due), except a 0-year access rule
  which restricts nothing.

The JSON written on a unit has the shape of ``services/ingest.py`` ``rule_json`` plus
``source: "sender"``, ``unresolved``, ``declared_on`` (the sender's unit id carrying the
governing rule), ``rules`` (each rule in force with its own resolution) and ``referential``
(the version that resolved it, so that a new version is visible as a change). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from archive_service.core.model import NO_START_EVENT, add_years
from archive_service.core.retention import Referential

__all__ = [
    "ACCESS",
    "APPRAISAL",
    "KNOWN_RULES",
    "SOURCE",
    "START_EVENT",
    "KnownRule",
    "SenderResolution",
    "SenderUnit",
    "known_rule",
    "resolve_sender_rules",
]

SOURCE = "sender"
APPRAISAL = "AppraisalRule"
ACCESS = "AccessRule"
#: ``start_event`` of a sender's rule: it runs from the ``StartDate`` the manifest gives.
START_EVENT = "StartDate"
KEEP = "Keep"
DESTROY = "Destroy"


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownRule:
    """A rule id whose duration we know: from the tenant's référentiel or a cited table."""

    rule_id: str
    category: str
    years: int
    label: str
    basis: str
    final_action: str | None = None
    review: bool = False


_VITAM_R16 = (
    "Vitam référentiel des règles de gestion, ProgrammeVitam/vitam "
    "doc/fr/autres/fonctionnel/Jeux_de_tests_fonctionnels_R16/referentiels/regles_gestion/"
    "regles_OK-complete.csv"
)


def _vitam(rule_id: str, category: str, years: int, label: str) -> KnownRule:
    return KnownRule(rule_id=rule_id, category=category, years=years, label=label, basis=_VITAM_R16)


#: Standard Vitam rule ids (RuleId, RuleType, RuleDuration in YEAR) as the Vitam functional
#: test référentiel of release R16 defines them (source: :data:`_VITAM_R16`, rows quoted by
#: id). Vitam lets each installation define its own ids: the tenant's référentiel is looked
#: up first, and an id absent from both stays unresolved. Vitam's référentiel carries no
#: final action (the manifest's ``FinalAction`` does).
KNOWN_RULES: Mapping[str, KnownRule] = {
    r.rule_id: r
    for r in (
        _vitam("ACC-00001", ACCESS, 0, "Libre communicabilité"),
        _vitam("ACC-00002", ACCESS, 25, "Secret des délibérations du gouvernement"),
        _vitam("ACC-00003", ACCESS, 25, "Conduite des relations extérieures"),
        _vitam("ACC-00004", ACCESS, 25, "Monnaie et crédit public"),
        _vitam("ACC-00005", ACCESS, 25, "Secret en matière commerciale et industrielle"),
        _vitam("ACC-00006", ACCESS, 25, "Recherche des infractions fiscales ou douanières"),
        _vitam("ACC-00008", ACCESS, 25, "Documents mentionnés à l'article L311-2 du CRPA"),
        _vitam("ACC-00011", ACCESS, 50, "Secret de la défense nationale"),
        _vitam("ACC-00016", ACCESS, 50, "Protection de la vie privée"),
        _vitam("APP-00001", APPRAISAL, 80, "Dossier individuel d'agent civil"),
        _vitam("APP-00002", APPRAISAL, 5, "Offres non retenues des marchés"),
    )
}


def known_rule(referential: Referential | None, category: str, rule_id: str) -> KnownRule | None:
    """The duration of ``rule_id`` for ``category``: the tenant's référentiel first, then
    :data:`KNOWN_RULES`; ``None`` when neither defines it for that category."""
    if referential is not None:
        if category == APPRAISAL and rule_id in referential.appraisal_rules:
            a = referential.appraisal_rules[rule_id]
            return KnownRule(
                rule_id=rule_id,
                category=category,
                years=max(t.years for t in a.terms),
                label=a.label,
                basis=f"référentiel {referential.version}",
                final_action=a.final_action.value,
                review=a.review,
            )
        if category == ACCESS and rule_id in referential.access_rules:
            c = referential.access_rules[rule_id]
            return KnownRule(
                rule_id=rule_id,
                category=category,
                years=c.years,
                label=c.label,
                basis=f"référentiel {referential.version}",
            )
    found = KNOWN_RULES.get(rule_id)
    return found if found is not None and found.category == category else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderUnit:
    """One unit of a foreign transfer as recorded: our ids and what its Management said."""

    id: str
    parent_id: str | None
    sender_id: str | None
    rules: Sequence[Mapping[str, Any]] = ()
    """``content["sender_rules"]``: ``{"category", "rule_id", "start_date", "final_action"}``."""
    inheritance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``content["sender_inheritance"]``: category → ``{"prevent_inheritance",
    "ref_non_rule_ids", "final_action"}``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderResolution:
    """A unit's effective rules (JSON for ``archive_units.appraisal``/``access``) and ends."""

    appraisal: dict[str, Any] | None
    access: dict[str, Any] | None
    appraisal_end: date | None
    access_end: date | None


@dataclass(frozen=True, slots=True)
class _Entry:
    rule_id: str
    start_date: str | None
    declared_on: str | None


@dataclass(frozen=True, slots=True)
class _Inherited:
    entries: dict[str, _Entry]
    final_action: str | None


def _date(value: object) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def resolve_sender_rules(
    units: Sequence[SenderUnit], referential: Referential | None
) -> dict[str, SenderResolution]:
    """The effective rules of every unit of ``units`` (a foreign transfer's units, parents
    before or after children; a unit whose parent is not among them starts a tree)."""
    ids = {u.id for u in units}
    children: dict[str | None, list[SenderUnit]] = {}
    for u in units:
        children.setdefault(u.parent_id if u.parent_id in ids else None, []).append(u)
    out: dict[str, SenderResolution] = {}
    empty = _Inherited({}, None)

    def visit(unit: SenderUnit, inherited: Mapping[str, _Inherited]) -> None:
        passed: dict[str, _Inherited] = {}
        rules: dict[str, dict[str, Any] | None] = {}
        for category in (APPRAISAL, ACCESS):
            parent = inherited.get(category, empty)
            block = unit.inheritance.get(category) or {}
            prevent = bool(block.get("prevent_inheritance"))
            entries = {} if prevent else dict(parent.entries)
            for refused in block.get("ref_non_rule_ids") or ():
                entries.pop(str(refused), None)
            final_action = None if prevent else parent.final_action
            own_action: str | None = None
            for r in unit.rules:
                if r.get("category") != category or not r.get("rule_id"):
                    continue
                rid = str(r["rule_id"])
                entries[rid] = _Entry(rid, r.get("start_date"), unit.sender_id)
                own_action = own_action or r.get("final_action")
            final_action = own_action or block.get("final_action") or final_action
            passed[category] = _Inherited(entries, final_action)
            rules[category] = _rule_json(
                category, list(entries.values()), final_action, referential, cleared=prevent
            )
        appraisal, access = rules[APPRAISAL], rules[ACCESS]
        out[unit.id] = SenderResolution(
            appraisal=appraisal,
            access=access,
            appraisal_end=_date((appraisal or {}).get("end_date")),
            access_end=_date((access or {}).get("end_date")),
        )
        for child in children.get(unit.id, []):
            visit(child, passed)

    for top in children.get(None, []):
        visit(top, {})
    return out


def _item(
    category: str, entry: _Entry, referential: Referential | None
) -> tuple[dict[str, Any], KnownRule | None]:
    known = known_rule(referential, category, entry.rule_id)
    start = _date(entry.start_date)
    item: dict[str, Any] = {
        "rule_id": entry.rule_id,
        "start_date": start.isoformat() if start else entry.start_date,
        "duration_years": known.years if known else None,
        "end_date": None,
        "unresolved": known is None,
        "pending": known is None or start is None,
        "label": known.label if known else f"unknown sender rule {entry.rule_id}",
        "basis": known.basis if known else None,
        "declared_on": entry.declared_on,
    }
    if known is not None and start is not None:
        item["end_date"] = add_years(start, known.years).isoformat()
    return item, known


def _governing(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Fail-closed choice: an unresolved rule, else an undated one (longest), else the one
    ending last."""
    unresolved = [i for i in items if i["unresolved"]]
    if unresolved:
        return unresolved[0]
    pending = [i for i in items if i["pending"]]
    if pending:
        return max(pending, key=lambda i: int(i["duration_years"] or 0))
    return max(items, key=lambda i: str(i["end_date"]))


def _rule_json(
    category: str,
    entries: list[_Entry],
    final_action: str | None,
    referential: Referential | None,
    *,
    cleared: bool,
) -> dict[str, Any] | None:
    version = referential.version if referential is not None else None
    if not entries:
        if cleared and category == ACCESS:
            # PreventInheritance with no rule of its own: the sender lifted every délai here;
            # recorded, so that the unit does not fall back on an ancestor's rule.
            return {
                "rule_id": None,
                "duration_years": 0,
                "start_event": NO_START_EVENT,
                "start_date": None,
                "end_date": None,
                "pending": False,
                "label": "PreventInheritance (sender)",
                "source": SOURCE,
                "unresolved": False,
                "prevent_inheritance": True,
                "rules": [],
                "referential": version,
            }
        return None
    resolved = [_item(category, e, referential) for e in entries]
    items = [i for i, _ in resolved]
    chosen = _governing(items)
    known = next(k for i, k in resolved if i is chosen)
    out: dict[str, Any] = {
        "rule_id": chosen["rule_id"],
        "duration_years": chosen["duration_years"],
        "start_event": START_EVENT,
        "start_date": chosen["start_date"],
        "end_date": chosen["end_date"],
        "pending": chosen["pending"],
        "label": chosen["label"],
    }
    if category == ACCESS and known is not None and known.years == 0 and not chosen["start_date"]:
        # A zero délai restricts nothing, whatever it would run from.
        out.update(start_event=NO_START_EVENT, pending=False)
    if category == APPRAISAL:
        action = final_action if final_action in (KEEP, DESTROY) else None
        if action is None and known is not None:
            action = known.final_action
        out["final_action"] = action or KEEP
        out["review"] = bool(known is not None and known.review and out["final_action"] == KEEP)
    out.update(
        source=SOURCE,
        unresolved=chosen["unresolved"],
        declared_on=chosen["declared_on"],
        basis=chosen["basis"],
        rules=items,
        referential=version,
    )
    if chosen["unresolved"]:
        out["duration_years"] = None
        out["end_date"] = None
    return out
