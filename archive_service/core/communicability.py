"""Communicability (délais de communicabilité): may a document be communicated today?

Pure: the caller passes the unit's access rule as recorded (the JSON of
``archive_units.access``, shape of ``services.ingest.rule_json``) and today's date.

The rules (procurement.md §2.5):

- a rule of 0 years without start event is *communicable de plein droit* (DCE, notices…);
- a rule whose start event has not happened (e.g. the contract is not signed yet) is
  *pending*: not communicable, and its end date is unknown ("N years after <event>");
- otherwise the document is restricted until ``start_date + years`` (CADA doctrine: offers are
  preparatory until signature, 0 years after it; Code du patrimoine L213-2 I 1° a): 25 years
  for the *secret des affaires*).

**The end date is the first communicable day.** A rule "25 years from 2025-03-01" ends on
2050-03-01 and the document is communicable on that day (``today >= end_date``), the way
``AccessRule.end_date`` is defined and the way a 0-year rule "after signature" makes a
document communicable on the day of signature.

A unit without its own rule inherits its nearest ancestor's (SEDA rule inheritance):
:func:`effective_rule` finds it. A unit with no rule anywhere up its tree is communicable
(nothing restricts it), which is what the service records for dossier and phase units.

A rule the service cannot read (unknown shape, a delay without start event) fails closed:
not communicable, pending, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from archive_service.core.model import NO_START_EVENT, add_years
from archive_service.core.procurement import EVENT_LABELS

FREE = "free"
"""``reason`` of a unit that no rule restricts (0 years, no start event, or no rule at all)."""
PENDING = "pending"
"""``reason`` while the start event has not happened (end date unknown)."""
DELAY = "delay"
"""``reason`` while ``today < end_date``."""
ELAPSED = "elapsed"
"""``reason`` once the delay has run out (``today >= end_date``)."""
UNREADABLE = "unreadable"
"""``reason`` of a recorded rule the service cannot interpret (fails closed)."""
PRODUCER = "producer"
"""``reason`` when the reader is the producer itself (its own records; delays do not apply)."""
GONE = "gone"
"""``reason`` of a unit destroyed or transferred by a disposal: nothing left to communicate."""
UNKNOWN_SENDER_RULE = "unknown-sender-rule"
"""``reason`` of a foreign transfer's access rule whose id no référentiel here defines
(``core/sender_rules.py``): its délai is unknown, so it fails closed until an archivist maps it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessDecision:
    """Whether a unit's content may be communicated on a given day, and why."""

    communicable: bool
    reason: str
    """:data:`FREE`, :data:`PENDING`, :data:`DELAY`, :data:`ELAPSED`, :data:`UNREADABLE` or
    :data:`PRODUCER` or :data:`GONE`."""
    rule_id: str | None = None
    label: str | None = None
    duration_years: int | None = None
    start_event: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    pending: bool = False
    inherited_from: str | None = None
    """Id of the ancestor whose rule applies, when the unit has none of its own."""

    @property
    def explanation(self) -> str:
        """A sentence for people (French terms of the archivists where they are the norm)."""
        name = f"{self.rule_id} ({self.label})" if self.label else str(self.rule_id)
        if self.reason == FREE:
            return "communicable: no access rule restricts it"
        if self.reason == GONE:
            return "not communicable: destroyed or transferred by a disposal"
        if self.reason == UNKNOWN_SENDER_RULE:
            return (
                f"not communicable: unknown sender rule {self.rule_id} (its délai is defined in "
                "the sender's référentiel, not here; an archivist must map it)"
            )
        if self.reason == PRODUCER:
            return f"communicable to its producer (its own records; rule {name} not applied)"
        if self.reason == ELAPSED:
            return f"communicable since {_iso(self.end_date)} under {name}"
        if self.reason == DELAY:
            return f"not communicable before {_iso(self.end_date)} under {name}"
        if self.reason == PENDING:
            event = EVENT_LABELS.get(self.start_event or "", self.start_event or "?")
            years = self.duration_years or 0
            after = f"{years} years after" if years else "after"
            return (
                f"not communicable under {name}: {after} « {event} », which has not happened "
                "yet (end date unknown)"
            )
        return f"not communicable: the recorded access rule cannot be read ({name})"

    def members(self) -> dict[str, Any]:
        """The facts as JSON members (ISO dates; ``end_date`` null while pending)."""
        return {
            "communicable": self.communicable,
            "reason": self.reason,
            "rule_id": self.rule_id,
            "rule_label": self.label,
            "duration_years": self.duration_years,
            "start_event": self.start_event,
            "start_date": _iso(self.start_date),
            "end_date": _iso(self.end_date),
            "pending": self.pending,
            "inherited_from": self.inherited_from,
        }


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        return date.fromisoformat(value[:10])
    if value is None:
        return None
    msg = f"not a date: {value!r}"
    raise ValueError(msg)


def access_decision(
    access_rule_json: Mapping[str, Any] | None,
    *,
    today: date,
    recorded_end: date | None = None,
    inherited_from: str | None = None,
) -> AccessDecision:
    """Decide communicability on ``today`` under ``access_rule_json``.

    ``recorded_end`` is the unit's ``access_end`` column when the caller has it: if it is later
    than the end computed from the rule, it wins (a recomputation never shortens a delay, and
    of two records the stricter one is kept).
    """
    if access_rule_json is None:
        return AccessDecision(communicable=True, reason=FREE, inherited_from=inherited_from)
    rule_id = access_rule_json.get("rule_id")
    label = access_rule_json.get("label")
    common: dict[str, Any] = {
        "rule_id": str(rule_id) if rule_id is not None else None,
        "label": str(label) if label else None,
        "inherited_from": inherited_from,
    }
    if access_rule_json.get("unresolved"):
        return AccessDecision(
            communicable=False, reason=UNKNOWN_SENDER_RULE, pending=True, **common
        )
    try:
        years = access_rule_json.get("duration_years")
        if not isinstance(years, int) or isinstance(years, bool) or years < 0:
            msg = f"duration_years {years!r}"
            raise ValueError(msg)
        event = access_rule_json.get("start_event") or NO_START_EVENT
        if not isinstance(event, str):
            msg = f"start_event {event!r}"
            raise ValueError(msg)
        start = _date(access_rule_json.get("start_date"))
    except ValueError:
        return AccessDecision(communicable=False, reason=UNREADABLE, pending=True, **common)
    common.update(duration_years=years, start_event=event)
    if event == NO_START_EVENT:
        if years == 0:
            return AccessDecision(communicable=True, reason=FREE, **common)
        # A delay needs a date to run from: the référentiel refuses such a rule.
        return AccessDecision(communicable=False, reason=UNREADABLE, pending=True, **common)
    if start is None:
        return AccessDecision(communicable=False, reason=PENDING, pending=True, **common)
    end = add_years(start, years)
    if recorded_end is not None and recorded_end > end:
        end = recorded_end
    if today < end:
        return AccessDecision(
            communicable=False, reason=DELAY, start_date=start, end_date=end, **common
        )
    return AccessDecision(
        communicable=True, reason=ELAPSED, start_date=start, end_date=end, **common
    )


def effective_rule(
    unit_id: str, parents: Mapping[str, str | None], rules: Mapping[str, Mapping[str, Any] | None]
) -> tuple[Mapping[str, Any] | None, str | None]:
    """The access rule that applies to ``unit_id``: its own, else its nearest ancestor's.

    ``parents`` maps each unit of the tree to its parent id, ``rules`` to its own recorded rule.
    Returns (rule, id of the unit carrying it); (None, None) when no unit up the tree has one.
    """
    seen: set[str] = set()
    current: str | None = unit_id
    while current is not None and current not in seen:
        seen.add(current)
        rule = rules.get(current)
        if rule is not None:
            return rule, current
        current = parents.get(current)
    return None, None
