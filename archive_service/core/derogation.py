"""Dérogations (Code du patrimoine L213-3): a communication allowed before the délai expires.

The administration may authorise, after the archives authority's agreement, the consultation
of archives whose délai de communicabilité has not run out, for a named person and named
documents. In this service a dérogation names one client (API key) and one unit with its
subtree; while it is active that client reads what the délai restricts (a *delay* or a
*pending* rule). It never revives a unit destroyed or transferred, and never opens a rule the
service cannot read (that one fails closed for everybody).

Pure: the decision the rule gave and the dérogation's facts in, the decision out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from archive_service.core.communicability import DELAY, PENDING, AccessDecision

DEROGATION = "derogation"
"""``reason`` when a dérogation (L213-3) lets this reader read before the délai expires."""

OPENABLE = frozenset({DELAY, PENDING})
"""Reasons a dérogation may lift: a délai running or a délai whose start is not known yet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DerogatedDecision(AccessDecision):
    """A restricted unit made communicable to one reader by a dérogation.

    The rule's facts stay (``rule_id``, ``end_date``…): the log says which délai was lifted
    and by which decision."""

    derogation_id: str
    derogation_reference: str
    derogation_until: date | None = None

    @property
    def explanation(self) -> str:
        name = f"{self.rule_id} ({self.label})" if self.label else str(self.rule_id)
        return (
            f"communicable to this reader by dérogation {self.derogation_id} "
            f"(décision {self.derogation_reference}) before the délai of {name} expires"
        )

    def members(self) -> dict[str, Any]:
        base = AccessDecision.members(self)
        base["derogation"] = {
            "id": self.derogation_id,
            "reference": self.derogation_reference,
            "until": self.derogation_until.isoformat() if self.derogation_until else None,
        }
        return base


def derogated(
    decision: AccessDecision, *, derogation_id: str, reference: str, until: date | None
) -> AccessDecision:
    """``decision`` opened by the dérogation when the délai is what restricts; unchanged
    otherwise (already communicable, gone, or a rule that cannot be read)."""
    if decision.communicable or decision.reason not in OPENABLE:
        return decision
    facts = {k: v for k, v in asdict(decision).items() if k not in ("communicable", "reason")}
    return DerogatedDecision(
        communicable=True,
        reason=DEROGATION,
        derogation_id=derogation_id,
        derogation_reference=reference,
        derogation_until=until,
        **facts,
    )
