"""The retention référentiel: which appraisal (DUA + sort final) and access rule a document gets.

A référentiel is a versioned JSON document (the default ships as
``archive_service/data/retention_referential.json``, derived from procurement.md §2.4 rows 1–10
and §2.5). It holds:

- ``appraisal_rules``: id → label, ``terms`` (years from a start event), ``final_action``
  (SEDA ``Keep``/``Destroy``), ``review`` (*tri*: Keep, and an archivist must select) and the
  ``basis`` (article, source) an archivist can check;
- ``access_rules``: id → label, ``years`` (0 = communicable), ``start_events`` (the first known
  one is used; later events in the list are later-or-equal substitutes), ``basis``;
- ``appraisal_profiles`` / ``access_profiles``: named ordered decision lists
  ``[{"when": {...}, "rule": id}, …, {"rule": id}]``; the first case whose ``when`` holds for the
  dossier applies (conditions: ``infructueux``, ``sans_suite``, ``recurrent`` booleans and
  ``contract_type`` list, all ANDed); the last case has no ``when``;
- ``categories``: every document category → its appraisal and access profile.

An appraisal rule with several terms is the *max of the applicable rules* (procurement.md
§2.4): its end date is the latest term end; while any term's start date is unknown the rule is
pending (``start_date`` None). SEDA has no "tri" final action; it is rendered as Keep with
``review`` set (§2.4, "SEDA mapping").

Pure: :meth:`Referential.from_json` takes the text; reading the file is the caller's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from archive_service.core.model import AccessRule, AppraisalRule, FinalAction, add_years
from archive_service.core.procurement import (
    CATEGORY_BY_CODE,
    CONTRACT_TYPES,
    EVENT_NAMES,
    DossierEvents,
)

#: ``start_event`` of an access rule that runs from no event (communicable de plein droit).
NO_EVENT = "none"

_CONDITION_FLAGS = ("infructueux", "sans_suite", "recurrent")


class ReferentialInvalid(ValueError):
    """A référentiel that does not validate; ``problems`` lists every one ("where: what")."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid retention referential: " + "; ".join(problems))
        self.problems: tuple[str, ...] = tuple(problems)


class RuleDossier(Protocol):
    """What a rule decision reads of a dossier: its flags, its market type and the known
    dates of its start events (a ``DossierMetadata`` at ingest, :class:`DossierFacts` later)."""

    @property
    def infructueux(self) -> bool: ...
    @property
    def sans_suite(self) -> bool: ...
    @property
    def recurrent(self) -> bool: ...
    @property
    def contract_type(self) -> str: ...
    @property
    def events(self) -> DossierEvents: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Basis:
    """Why a rule exists: the article or document, where it is documented, how sure we are.

    ``confidence`` follows procurement.md: V (checked in the text), S (secondary source),
    I (inference).
    """

    reference: str
    source: str
    confidence: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Term:
    years: int
    start_event: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppraisalRuleDef:
    id: str
    label: str
    terms: tuple[Term, ...]
    final_action: FinalAction
    review: bool
    basis: tuple[Basis, ...]
    table_row: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRuleDef:
    id: str
    label: str
    years: int
    start_events: tuple[str, ...]
    basis: tuple[Basis, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One line of a decision list; ``None`` conditions are not tested."""

    rule: str
    infructueux: bool | None = None
    sans_suite: bool | None = None
    recurrent: bool | None = None
    contract_types: frozenset[str] | None = None

    @property
    def unconditional(self) -> bool:
        return (
            self.infructueux is None
            and self.sans_suite is None
            and self.recurrent is None
            and self.contract_types is None
        )

    def matches(self, dossier: RuleDossier) -> bool:
        if self.infructueux is not None and dossier.infructueux != self.infructueux:
            return False
        if self.sans_suite is not None and dossier.sans_suite != self.sans_suite:
            return False
        if self.recurrent is not None and dossier.recurrent != self.recurrent:
            return False
        return self.contract_types is None or dossier.contract_type in self.contract_types


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoryRules:
    appraisal_profile: str
    access_profile: str


class _Reader:
    """Collects every problem of a référentiel file, so one ValueError lists them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def obj(self, value: object, where: str, keys: set[str], required: set[str]) -> bool:
        if not isinstance(value, dict):
            self.fail(where, "expected an object")
            return False
        for key in sorted(set(value) - keys):
            self.fail(where, f"unknown key {key!r}")
        for key in sorted(required - set(value)):
            self.fail(where, f"missing key {key!r}")
        return not (required - set(value))

    def text(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "expected a non-empty string")
            return ""
        return value

    def years(self, value: object, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.fail(where, "expected a whole number of years >= 0")
            return 0
        return value

    def event(self, value: object, where: str) -> str:
        if value not in EVENT_NAMES:
            self.fail(where, f"unknown start event {value!r}; known: {', '.join(EVENT_NAMES)}")
            return EVENT_NAMES[0]
        assert isinstance(value, str)
        return value

    def basis(self, value: object, where: str) -> tuple[Basis, ...]:
        if not isinstance(value, list) or not value:
            self.fail(where, "every rule needs a non-empty 'basis' list")
            return ()
        out = []
        for i, item in enumerate(value):
            at = f"{where}[{i}]"
            if self.obj(
                item,
                at,
                {"reference", "source", "confidence", "note"},
                {"reference", "source", "confidence"},
            ):
                assert isinstance(item, dict)
                confidence = item["confidence"]
                if confidence not in ("V", "S", "I"):
                    self.fail(f"{at}.confidence", "expected 'V', 'S' or 'I'")
                note = item.get("note", "")
                if not isinstance(note, str):
                    self.fail(f"{at}.note", "expected a string")
                    note = ""
                out.append(
                    Basis(
                        reference=self.text(item["reference"], f"{at}.reference"),
                        source=self.text(item["source"], f"{at}.source"),
                        confidence=str(confidence),
                        note=note,
                    )
                )
        return tuple(out)


def _read_appraisal(r: _Reader, rid: str, raw: object) -> AppraisalRuleDef | None:
    where = f"appraisal_rules.{rid}"
    keys = {"label", "terms", "final_action", "review", "basis", "table_row"}
    if not r.obj(raw, where, keys, {"label", "terms", "final_action", "basis"}):
        return None
    assert isinstance(raw, dict)
    terms: list[Term] = []
    raw_terms = raw["terms"]
    if not isinstance(raw_terms, list) or not raw_terms:
        r.fail(f"{where}.terms", "expected a non-empty list of {years, start_event}")
    else:
        for i, t in enumerate(raw_terms):
            at = f"{where}.terms[{i}]"
            if r.obj(t, at, {"years", "start_event"}, {"years", "start_event"}):
                assert isinstance(t, dict)
                terms.append(
                    Term(
                        years=r.years(t["years"], f"{at}.years"),
                        start_event=r.event(t["start_event"], f"{at}.start_event"),
                    )
                )
    try:
        final = FinalAction(raw["final_action"])
    except ValueError:
        r.fail(f"{where}.final_action", "expected 'Keep' or 'Destroy' (SEDA FinalAction)")
        final = FinalAction.KEEP
    review = raw.get("review", False)
    if not isinstance(review, bool):
        r.fail(f"{where}.review", "expected a boolean")
        review = False
    if review and final is not FinalAction.KEEP:
        r.fail(f"{where}.review", "tri (review) is expressed as Keep + review; not with Destroy")
    row = raw.get("table_row")
    if row is not None and (not isinstance(row, int) or isinstance(row, bool)):
        r.fail(f"{where}.table_row", "expected an integer")
        row = None
    return AppraisalRuleDef(
        id=rid,
        label=r.text(raw["label"], f"{where}.label"),
        terms=tuple(terms),
        final_action=final,
        review=review,
        basis=r.basis(raw["basis"], f"{where}.basis"),
        table_row=row,
    )


def _read_access(r: _Reader, rid: str, raw: object) -> AccessRuleDef | None:
    where = f"access_rules.{rid}"
    if not r.obj(
        raw, where, {"label", "years", "start_events", "basis"}, {"label", "years", "basis"}
    ):
        return None
    assert isinstance(raw, dict)
    years = r.years(raw["years"], f"{where}.years")
    raw_events = raw.get("start_events", [])
    events: list[str] = []
    if not isinstance(raw_events, list):
        r.fail(f"{where}.start_events", "expected a list of start events")
    else:
        events = [r.event(e, f"{where}.start_events[{i}]") for i, e in enumerate(raw_events)]
    if years > 0 and not events:
        r.fail(f"{where}.start_events", "a delay of more than 0 years needs a start event")
    return AccessRuleDef(
        id=rid,
        label=r.text(raw["label"], f"{where}.label"),
        years=years,
        start_events=tuple(events),
        basis=r.basis(raw["basis"], f"{where}.basis"),
    )


def _read_profile(r: _Reader, where: str, raw: object, rules: Mapping[str, object]) -> list[Case]:
    if not isinstance(raw, list) or not raw:
        r.fail(where, "expected a non-empty list of cases")
        return []
    cases: list[Case] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not r.obj(item, at, {"when", "rule"}, {"rule"}):
            continue
        assert isinstance(item, dict)
        rule = item["rule"]
        if rule not in rules:
            r.fail(f"{at}.rule", f"unknown rule {rule!r}")
        when = item.get("when", {})
        flags: dict[str, bool | None] = dict.fromkeys(_CONDITION_FLAGS)
        types: frozenset[str] | None = None
        if "when" in item and r.obj(
            when, f"{at}.when", {*_CONDITION_FLAGS, "contract_type"}, set()
        ):
            assert isinstance(when, dict)
            if not when:
                r.fail(f"{at}.when", "empty condition; omit 'when' for the default case")
            for flag in _CONDITION_FLAGS:
                if flag in when:
                    if not isinstance(when[flag], bool):
                        r.fail(f"{at}.when.{flag}", "expected a boolean")
                    else:
                        flags[flag] = when[flag]
            if "contract_type" in when:
                ct = when["contract_type"]
                if not isinstance(ct, list) or not ct or any(c not in CONTRACT_TYPES for c in ct):
                    r.fail(
                        f"{at}.when.contract_type",
                        f"expected a non-empty list among {', '.join(CONTRACT_TYPES)}",
                    )
                else:
                    types = frozenset(ct)
        cases.append(
            Case(
                rule=str(rule),
                infructueux=flags["infructueux"],
                sans_suite=flags["sans_suite"],
                recurrent=flags["recurrent"],
                contract_types=types,
            )
        )
    if cases and not cases[-1].unconditional:
        r.fail(where, "the last case must have no 'when' (the default)")
    for i, case in enumerate(cases[:-1]):
        if case.unconditional:
            r.fail(f"{where}[{i}]", "a case without 'when' must be the last one")
    return cases


@dataclass(frozen=True, slots=True, kw_only=True)
class Referential:
    """A validated retention référentiel; build it with :meth:`from_json`."""

    version: str
    source: str
    appraisal_rules: Mapping[str, AppraisalRuleDef]
    access_rules: Mapping[str, AccessRuleDef]
    appraisal_profiles: Mapping[str, tuple[Case, ...]]
    access_profiles: Mapping[str, tuple[Case, ...]]
    categories: Mapping[str, CategoryRules]

    @classmethod
    def from_json(cls, text: str) -> Referential:
        """Parse and validate a référentiel; any problem → :class:`ReferentialInvalid` (a
        ``ValueError``) listing them all.

        Checked: known keys only, rule shapes, Keep/Destroy, start events among
        :data:`~archive_service.core.procurement.EVENT_NAMES`, a basis on every rule, profiles
        referencing existing rules and ending with a default case, and *every* document
        category of :data:`~archive_service.core.procurement.CATEGORIES` mapped (no unknown one).
        """
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReferentialInvalid([f"not valid JSON: {exc}"]) from exc
        r = _Reader()
        top = {
            "version",
            "title",
            "source",
            "status",
            "start_events",
            "appraisal_rules",
            "access_rules",
            "appraisal_profiles",
            "access_profiles",
            "categories",
        }
        required = top - {"title", "status", "start_events"}
        if not r.obj(raw, "referential", top, required):
            raise ReferentialInvalid(r.problems)

        version = r.text(raw["version"], "version")
        source = r.text(raw["source"], "source")
        if "start_events" in raw:
            events = raw["start_events"]
            if not isinstance(events, dict):
                r.fail("start_events", "expected an object {event: label}")
            else:
                for name in events:
                    r.event(name, f"start_events.{name}")

        appraisal: dict[str, AppraisalRuleDef] = {}
        if isinstance(raw["appraisal_rules"], dict):
            for rid, rule in raw["appraisal_rules"].items():
                parsed = _read_appraisal(r, rid, rule)
                if parsed is not None:
                    appraisal[rid] = parsed
        else:
            r.fail("appraisal_rules", "expected an object {id: rule}")

        access: dict[str, AccessRuleDef] = {}
        if isinstance(raw["access_rules"], dict):
            for rid, rule in raw["access_rules"].items():
                parsed_access = _read_access(r, rid, rule)
                if parsed_access is not None:
                    access[rid] = parsed_access
        else:
            r.fail("access_rules", "expected an object {id: rule}")

        profiles: dict[str, dict[str, tuple[Case, ...]]] = {}
        for kind, rules in (("appraisal_profiles", appraisal), ("access_profiles", access)):
            profiles[kind] = {}
            block = raw[kind]
            if not isinstance(block, dict):
                r.fail(kind, "expected an object {profile: [cases]}")
                continue
            for name, cases in block.items():
                profiles[kind][name] = tuple(_read_profile(r, f"{kind}.{name}", cases, rules))

        categories: dict[str, CategoryRules] = {}
        block = raw["categories"]
        if not isinstance(block, dict):
            r.fail("categories", "expected an object {category: {appraisal, access}}")
            block = {}
        for code, item in block.items():
            where = f"categories.{code}"
            if code not in CATEGORY_BY_CODE:
                r.fail(where, "unknown document category")
            if not r.obj(item, where, {"appraisal", "access"}, {"appraisal", "access"}):
                continue
            if item["appraisal"] not in profiles["appraisal_profiles"]:
                r.fail(f"{where}.appraisal", f"unknown appraisal profile {item['appraisal']!r}")
            if item["access"] not in profiles["access_profiles"]:
                r.fail(f"{where}.access", f"unknown access profile {item['access']!r}")
            categories[code] = CategoryRules(
                appraisal_profile=str(item["appraisal"]), access_profile=str(item["access"])
            )
        for code in CATEGORY_BY_CODE:
            if code not in block:
                r.fail("categories", f"category {code!r} has no rules")

        if r.problems:
            raise ReferentialInvalid(r.problems)
        return cls(
            version=version,
            source=source,
            appraisal_rules=appraisal,
            access_rules=access,
            appraisal_profiles=profiles["appraisal_profiles"],
            access_profiles=profiles["access_profiles"],
            categories=categories,
        )

    def _select(
        self, profiles: Mapping[str, tuple[Case, ...]], profile: str, dossier: RuleDossier
    ) -> str:
        for case in profiles[profile]:
            if case.matches(dossier):
                return case.rule
        raise AssertionError("validated profiles end with a default case")  # pragma: no cover

    def _category(self, category: str) -> CategoryRules:
        try:
            return self.categories[category]
        except KeyError:
            msg = f"unknown document category {category!r}"
            raise KeyError(msg) from None

    def appraisal_rule_for(self, category: str, dossier: RuleDossier) -> AppraisalRuleDef:
        """The rule definition (with its basis) that applies; see :meth:`appraisal_for`."""
        profile = self._category(category).appraisal_profile
        return self.appraisal_rules[self._select(self.appraisal_profiles, profile, dossier)]

    def access_rule_for(self, category: str, dossier: RuleDossier) -> AccessRuleDef:
        """The access rule definition (with its basis) that applies; see :meth:`access_for`."""
        profile = self._category(category).access_profile
        return self.access_rules[self._select(self.access_profiles, profile, dossier)]

    def appraisal_for(self, category: str, dossier: RuleDossier) -> AppraisalRule:
        """The resolved appraisal rule of a document of ``category`` in ``dossier``.

        With several terms, the term ending last wins (DUA = max of the applicable rules,
        procurement.md §2.4). If any term's start event has no date yet, the rule is pending:
        ``start_date`` is None and ``start_event`` names the first missing event.
        """
        rule = self.appraisal_rule_for(category, dossier)
        best: tuple[date, Term, date] | None = None
        for term in rule.terms:
            start = dossier.events.get(term.start_event)
            if start is None:
                return self._appraisal(rule, term, None)
            end = add_years(start, term.years)
            if best is None or end > best[0]:
                best = (end, term, start)
        assert best is not None
        return self._appraisal(rule, best[1], best[2])

    @staticmethod
    def _appraisal(rule: AppraisalRuleDef, term: Term, start: date | None) -> AppraisalRule:
        return AppraisalRule(
            rule_id=rule.id,
            duration_years=term.years,
            start_event=term.start_event,
            final_action=rule.final_action,
            start_date=start,
            review=rule.review,
            label=rule.label,
        )

    def access_for(self, category: str, dossier: RuleDossier) -> AccessRule:
        """The resolved access rule (communicability) of a document of ``category``.

        The first start event with a known date is used (the later ones in the list are
        later-or-equal substitutes, e.g. notification for signature). With none known the
        rule is pending (``start_date`` None, ``start_event`` the first listed). A rule without
        start event is communicable de plein droit (``start_event`` = :data:`NO_EVENT`).

        Note: ``model.AccessRule.pending`` is False for a 0-year delay even when its start
        event is unknown; a 0-year rule *with* a start event (e.g. "after signature") is
        communicable only once ``start_date`` is set.
        """
        rule = self.access_rule_for(category, dossier)
        if not rule.start_events:
            return AccessRule(
                rule_id=rule.id, duration_years=rule.years, start_event=NO_EVENT, label=rule.label
            )
        for event in rule.start_events:
            start = dossier.events.get(event)
            if start is not None:
                return AccessRule(
                    rule_id=rule.id,
                    duration_years=rule.years,
                    start_event=event,
                    start_date=start,
                    label=rule.label,
                )
        return AccessRule(
            rule_id=rule.id,
            duration_years=rule.years,
            start_event=rule.start_events[0],
            label=rule.label,
        )


# --------------------------------------------------------------------------------------------
# Dossier events and the recomputation of a dossier's rules (issue 5, "events drive retention")
# --------------------------------------------------------------------------------------------

DISPUTE_OPENED = "dispute_opened"
DISPUTE_CLOSED = "dispute_closed"
#: Every event a dossier may record: the start events, then a dispute (contentieux) opening
#: and closing, which suspend the DUA (procurement.md §2.4, "suspension while a dispute is
#: open").
LIFECYCLE_EVENTS: tuple[str, ...] = (*EVENT_NAMES, DISPUTE_OPENED, DISPUTE_CLOSED)
#: Start events that also set a dossier flag changing the profile's case (procurement.md §2.4,
#: "flags that change the sort final").
FLAG_EVENTS: Mapping[str, str] = {"infructuosite": "infructueux", "sans_suite": "sans_suite"}


@dataclass(frozen=True, slots=True)
class Dispute:
    """A contentieux: opened, and closed once it ended (``None`` while still open)."""

    opened: date
    closed: date | None = None

    def __post_init__(self) -> None:
        if self.closed is not None and self.closed < self.opened:
            msg = "a dispute cannot close before it opened"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class DossierFacts:
    """What the rules of a dossier depend on, after every event it recorded."""

    contract_type: str
    infructueux: bool = False
    sans_suite: bool = False
    recurrent: bool = False
    events: DossierEvents = field(default_factory=DossierEvents)
    disputes: tuple[Dispute, ...] = ()

    @property
    def dispute_open(self) -> bool:
        return any(d.closed is None for d in self.disputes)


def dossier_facts(
    *,
    contract_type: str,
    infructueux: bool = False,
    sans_suite: bool = False,
    recurrent: bool = False,
    events: Iterable[tuple[str, date]] = (),
) -> DossierFacts:
    """Fold ``events`` (in the order they were recorded) into the facts of a dossier.

    A start event recorded again with another date replaces the earlier one (a correction,
    or a later transfer's metadata); ``infructuosite`` / ``sans_suite`` also set their flag;
    dispute openings and closings pair up in order. The sequence is assumed valid
    (:func:`check_event` guards each new event).
    """
    dates: dict[str, date] = {}
    flags = {"infructueux": infructueux, "sans_suite": sans_suite}
    disputes: list[Dispute] = []
    for name, when in events:
        if name == DISPUTE_OPENED:
            disputes.append(Dispute(when))
        elif name == DISPUTE_CLOSED:
            if disputes and disputes[-1].closed is None:
                disputes[-1] = Dispute(disputes[-1].opened, max(when, disputes[-1].opened))
        elif name in EVENT_NAMES:
            dates[name] = when
            if name in FLAG_EVENTS:
                flags[FLAG_EVENTS[name]] = True
        else:
            msg = f"unknown dossier event {name!r}"
            raise ValueError(msg)
    return DossierFacts(
        contract_type=contract_type,
        infructueux=flags["infructueux"],
        sans_suite=flags["sans_suite"],
        recurrent=recurrent,
        events=DossierEvents(**dates),
        disputes=tuple(disputes),
    )


#: What :func:`check_event` found: a new fact, the same fact again, or another date for it.
NEW = "new"
DUPLICATE = "duplicate"
CONTRADICTION = "contradiction"


def check_event(
    known: Sequence[tuple[str, date]], event: str, when: date, *, today: date
) -> tuple[str, date | None]:
    """Whether ``event`` on ``when`` may be added to a dossier that recorded ``known``.

    Returns ``(NEW, None)``, ``(DUPLICATE, when)`` (already recorded with this date: nothing
    to do) or ``(CONTRADICTION, recorded_date)`` for a start event recorded with another
    date (the caller decides whether a correction is allowed). Raises ``InvalidInput`` for an
    unknown event or a date after ``today``, ``Conflict`` for a dispute sequence that cannot
    be (a closing with no open dispute, a second open dispute, dates going backwards).
    """
    from archive_service.errors import Conflict, InvalidInput, Issue

    if event not in LIFECYCLE_EVENTS:
        raise InvalidInput(
            f"unknown dossier event {event!r}",
            issues=[Issue("unknown-event", f"known: {', '.join(LIFECYCLE_EVENTS)}", "event")],
        )
    if when > today:
        raise InvalidInput(
            f"{event} on {when.isoformat()} is in the future (today is {today.isoformat()})",
            issues=[Issue("future-date", "an event is recorded once it happened", "date")],
        )
    facts = dossier_facts(contract_type="", events=known)
    last = facts.disputes[-1] if facts.disputes else None
    if event == DISPUTE_OPENED:
        if last is not None and last.closed is None:
            if last.opened == when:
                return DUPLICATE, when
            raise Conflict(
                f"a dispute is already open since {last.opened.isoformat()}; close it first",
                issues=[Issue("dispute-open", "one dispute open at a time", "event")],
            )
        if last is not None and last.closed is not None and when < last.closed:
            raise Conflict(
                f"a dispute cannot open on {when.isoformat()}, before the previous one closed "
                f"({last.closed.isoformat()})",
                issues=[Issue("dispute-overlap", "disputes follow one another", "date")],
            )
        return NEW, None
    if event == DISPUTE_CLOSED:
        if last is None or last.closed is not None:
            if last is not None and last.closed == when:
                return DUPLICATE, when
            raise Conflict(
                "no dispute is open on this dossier",
                issues=[Issue("no-open-dispute", "dispute_closed needs an open dispute", "event")],
            )
        if when < last.opened:
            raise InvalidInput(
                f"the dispute opened on {last.opened.isoformat()}; it cannot close on "
                f"{when.isoformat()}",
                issues=[Issue("closed-before-opened", "closing date before opening", "date")],
            )
        return NEW, None
    recorded = facts.events.get(event)
    if recorded is None:
        return NEW, None
    if recorded == when:
        return DUPLICATE, when
    return CONTRADICTION, recorded


def suspend(start: date, end: date, disputes: Sequence[Dispute]) -> tuple[date | None, int, bool]:
    """The end of a DUA running from ``start`` to ``end`` once disputes suspend it.

    The clock stops while a dispute is open: each closed dispute pushes the end by the days
    it overlapped the running period (from ``start`` to the end as pushed so far, in
    chronological order); a dispute before the start, or after the DUA ended, pushes
    nothing. While any dispute is open the DUA is suspended: no end date (``None``; the unit
    is not due). Returns ``(end or None, days pushed, suspended)``.
    """
    pushed = 0
    current = end
    suspended = False
    for dispute in sorted(disputes, key=lambda d: d.opened):
        if dispute.closed is None:
            suspended = True
            continue
        lower = max(dispute.opened, start)
        if lower < current and dispute.closed > lower:
            days = (dispute.closed - lower).days
            current += timedelta(days=days)
            pushed += days
    return (None if suspended else current), pushed, suspended


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputedRules:
    """The rules of one categorized unit under the référentiel in force and the dossier's
    facts: ``appraisal_end`` is the end after suspensions (``None`` while pending or while a
    dispute is open); ``access_end`` when it becomes communicable (``None``: freely so, or
    pending)."""

    appraisal: AppraisalRule
    access: AccessRule
    appraisal_end: date | None
    access_end: date | None
    suspended: bool
    suspension_days: int


def compute_rules(referential: Referential, category: str, facts: DossierFacts) -> ComputedRules:
    """Appraisal (DUA = max of the rule's terms; pending while a start date is unknown) and
    access rule of a unit of ``category``, with the dossier's disputes suspending the DUA."""
    appraisal = referential.appraisal_for(category, facts)
    access = referential.access_for(category, facts)
    base = appraisal.end_date
    suspended = facts.dispute_open
    days = 0
    end: date | None = None
    if base is not None and appraisal.start_date is not None:
        end, days, suspended = suspend(appraisal.start_date, base, facts.disputes)
    return ComputedRules(
        appraisal=appraisal,
        access=access,
        appraisal_end=end,
        access_end=access.end_date,
        suspended=suspended,
        suspension_days=days,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitNode:
    """A unit of a dossier as the recomputation sees it."""

    id: str
    parent_id: str | None
    category: str | None
    own_rule: bool
    """The unit carries a rule of its own (ours, or a foreign transfer's)."""
    active: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitOutcome:
    """What a recomputation gives one unit: its own rules (``rules``), or for a unit without
    a category under a recomputed one, the ends it inherits (``rules`` None)."""

    unit_id: str
    rules: ComputedRules | None
    appraisal_end: date | None
    access_end: date | None
    suspended: bool


def recompute_dossier(
    referential: Referential, facts: DossierFacts, units: Sequence[UnitNode]
) -> dict[str, UnitOutcome]:
    """The new rules of every active unit of a dossier that has a document category, and
    of the units below one of them that have no rule of their own (they inherit its ends,
    as at ingest). Units without a category and not under a recomputed unit — the dossier
    and phase units, a foreign SEDA transfer's units with the sender's rules — are left out:
    nothing here knows better than what they carry. Destroyed or transferred units too."""
    children: dict[str | None, list[UnitNode]] = {}
    ids = {u.id for u in units}
    for u in units:
        parent = u.parent_id if u.parent_id in ids else None
        children.setdefault(parent, []).append(u)
    out: dict[str, UnitOutcome] = {}

    def visit(node: UnitNode, inherited: UnitOutcome | None) -> None:
        outcome: UnitOutcome | None = None
        if node.active and node.category is not None:
            rules = compute_rules(referential, node.category, facts)
            outcome = UnitOutcome(
                unit_id=node.id,
                rules=rules,
                appraisal_end=rules.appraisal_end,
                access_end=rules.access_end,
                suspended=rules.suspended,
            )
        elif node.active and inherited is not None and not node.own_rule:
            outcome = UnitOutcome(
                unit_id=node.id,
                rules=None,
                appraisal_end=inherited.appraisal_end,
                access_end=inherited.access_end,
                suspended=inherited.suspended,
            )
        if outcome is not None:
            out[node.id] = outcome
        below = outcome if outcome is not None else (None if node.own_rule else inherited)
        for child in children.get(node.id, []):
            visit(child, below)

    for top in children.get(None, []):
        visit(top, None)
    return out
