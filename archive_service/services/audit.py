"""Integrity audit (NF Z42-013 "contrôle d'intégrité"): re-read copies, recompute their digests,
compare them with the database and with the package's manifest, record and log what was found,
and optionally repair through :class:`~archive_service.services.storage_admin.StorageAdminService`.

**What is compared.** Every copy the database records (``stored_copies``) on the audited
offers is read back whole, streaming, and hashed: SHA-256 always, SHA-512 too for archived
objects (the database and the manifest carry both). Each copy is read at the version the
database recorded for it (on S3: a repair may have replaced a corrupt locked version by a
new one; the bad one stays first in the bucket, recorded as superseded, and is never read
again). For each package, its manifest is read once from an offer whose copy hashes to the
digest recorded for it, and parsed: the ``MessageDigest`` it declares for each
``BinaryDataObject`` (and our SHA-512 extension) is compared with the database's digests.
Problems are structured values (:class:`Problem`: kind, offer, key, expected, found), spelt as
the offline verifier spells its checks (``sha256:<hex>``):

* ``missing`` — the offer does not hold the key (or not the version the database recorded);
* ``corrupt`` — the bytes hash to another digest than the one recorded (and than the manifest's);
  on S3 the detail names the version read;
* ``version_mismatch`` — the offer served another version of the key than the recorded one it
  was asked for (a defensive check: reads are pinned to the recorded version);
* ``manifest_mismatch`` — the database and the manifest disagree on an object's digest (one
  problem per object, offer ``None``). Copies whose bytes match the manifest are then *not*
  called corrupt; nothing is repaired automatically: the manifest is timestamped, the database
  is what must be looked at;
* ``unrecorded`` — an offer holds a healthy copy the database does not record;
* ``unreachable`` — the offer did not answer: the copy could not be verified.

**Sampling.** ``sample`` (0 < f ≤ 1) audits the ``ceil(f × n)`` least recently verified of
the ``n`` selected copies (never verified first), so a daily run with a small fraction covers
the whole archive over a cycle.

**What is recorded.** Each copy's ``verified_at`` and ``verified_outcome``. In the logbook of
the package's tenant: one ``audit.unit`` entry per dossier audited (subject: its root archive
unit; counts per outcome, algorithms, the run id), one entry per problem (``copy.missing``,
``copy.corrupt``, ``copy.version_mismatch``, ``copy.unrecorded``, ``copy.unreachable``,
``manifest.mismatch``), ``copy.repaired``/``copy.recorded`` per repair (written by storage
admin), and one ``audit.run`` summary per tenant and run (also in ``audit_runs``). Healthy
copies get no entry of their own: a daily audit of a million objects on two offers would append
two million entries a day to the Merkle log for no information the per-unit entry and the
copy's ``verified_at`` do not already hold.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Literal, TypedDict

from archive_service.core.seda.parse import ParsedDataObject, read_manifest
from archive_service.errors import ArchiveError, Forbidden, InvalidInput, NotFound, SedaInvalid
from archive_service.ports import (
    AuditCopyRecord,
    AuditRunRecord,
    BlobStore,
    Caller,
    Clock,
    CopyRecord,
    LogEvent,
    ObjectRecord,
    OfferAuditStatus,
    PackageRecord,
    Role,
    UnitOfWork,
)
from archive_service.services.recorded import recorded_versions
from archive_service.services.storage_admin import StorageAdminService

ProblemKind = Literal[
    "missing", "corrupt", "version_mismatch", "manifest_mismatch", "unrecorded", "unreachable"
]
#: Problems a repair from a healthy copy can fix.
REPAIRABLE = frozenset({"missing", "corrupt", "version_mismatch", "unrecorded"})
EVENT_OF_KIND: dict[str, str] = {
    "missing": "copy.missing",
    "corrupt": "copy.corrupt",
    "version_mismatch": "copy.version_mismatch",
    "manifest_mismatch": "manifest.mismatch",
    "unrecorded": "copy.unrecorded",
    "unreachable": "copy.unreachable",
}
STATUS_ROLES = frozenset({Role.ADMIN, Role.AUDITOR, Role.ARCHIVIST})
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditScope:
    offers: tuple[str, ...] = ()
    """Offer names to audit; empty: every configured offer."""
    unit_id: str | None = None
    """Only the package (dossier) of this archive unit."""
    sample: float = 1.0
    repair: bool = False
    trigger: str = "cli"


@dataclass(slots=True, kw_only=True)
class Problem:
    kind: ProblemKind
    offer: str | None
    key: str
    expected: str
    found: str
    tenant_id: str
    package_id: str
    unit_id: str
    detail: str = ""
    repaired: bool = False
    repair_detail: str = ""

    def message(self) -> str:
        where = f"{self.offer}:{self.key}" if self.offer else f"database:{self.key}"
        return f"{self.kind} {where}: expected {self.expected}, found {self.found}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "offer": self.offer,
            "key": self.key,
            "expected": self.expected,
            "found": self.found,
            "package_id": self.package_id,
            "unit_id": self.unit_id,
            "detail": self.detail,
            "repaired": self.repaired,
            "repair_detail": self.repair_detail,
        }


@dataclass(slots=True, kw_only=True)
class AuditReport:
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    offers: tuple[str, ...] = ()
    sample: float = 1.0
    selected: int = 0
    """Copies the scope covers; ``checked`` of them were audited (the sample)."""
    checked: int = 0
    bytes_read: int = 0
    packages: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(offer, outcome) → copies."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    @property
    def unresolved(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    @property
    def repaired(self) -> list[Problem]:
        return [p for p in self.problems if p.repaired]

    def per_offer(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {name: {} for name in self.offers}
        for (offer, outcome), n in sorted(self.outcomes.items()):
            result.setdefault(offer, {})[outcome] = n
        return result

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "offers": list(self.offers),
            "sample": self.sample,
            "selected": self.selected,
            "checked": self.checked,
            "bytes_read": self.bytes_read,
            "packages": self.packages,
            "per_offer": self.per_offer(),
            "clean": self.clean,
            "problems": [p.as_dict() for p in self.problems],
            "repaired": len(self.repaired),
            "unresolved": len(self.unresolved),
        }


@dataclass(frozen=True, slots=True)
class _Read:
    """What reading one copy found."""

    state: Literal["present", "missing", "unreachable"]
    size: int = 0
    sha256: str = ""
    sha512: str | None = None
    version_id: str | None = None
    detail: str = ""


class _Where(TypedDict):
    key: str
    tenant_id: str
    package_id: str
    unit_id: str


@dataclass(slots=True)
class _PackageContext:
    package: PackageRecord
    objects: dict[str, ObjectRecord]
    manifest: dict[str, ParsedDataObject] | None
    mismatched: set[str] = field(default_factory=set)


def fp(algorithm: str, digest: str | None) -> str:
    """A digest as the offline verifier prints it."""
    return f"{algorithm}:{digest}" if digest else "none"


class AuditService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        offers: Sequence[BlobStore],
        clock: Clock,
        storage_admin: StorageAdminService,
        window_days: int = 30,
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._clock = clock
        self._admin = storage_admin
        self.window_days = window_days

    # -- status ----------------------------------------------------------------------------

    def status(self, caller: Caller) -> dict[str, Any]:
        """Per offer, for the caller's tenant: copies, those verified healthy within the
        window, open problems; and the tenant's last audit run."""
        if caller.role not in STATUS_ROLES:
            raise Forbidden(f"role {caller.role.value!r} may not read the audit status")
        since = self._clock.now() - timedelta(days=self.window_days)
        with self._uow() as uow:
            rows = uow.audit.status(since=since, tenant_id=caller.tenant_id)
            last = uow.audit.last_run(caller.tenant_id)
        return {
            "window_days": self.window_days,
            "since": since.isoformat(),
            "offers": [_offer_json(s) for s in self._with_configured(rows)],
            "last_run": None
            if last is None
            else {
                "run_id": last.run_id,
                "started_at": last.started_at.isoformat(),
                "finished_at": last.finished_at.isoformat(),
                "offers": last.offers,
                "scope": last.scope,
                "copies": last.copies,
                "problems": last.problems,
                "repaired": last.repaired,
            },
        }

    def offer_status(self) -> list[OfferAuditStatus]:
        """Archive-wide figures per offer (for the metrics)."""
        since = self._clock.now() - timedelta(days=self.window_days)
        with self._uow() as uow:
            return self._with_configured(uow.audit.status(since=since))

    def _with_configured(self, rows: Iterable[OfferAuditStatus]) -> list[OfferAuditStatus]:
        by_offer = {r.offer: r for r in rows}
        for offer in self._offers:
            by_offer.setdefault(
                offer.name,
                OfferAuditStatus(
                    offer=offer.name, copies=0, verified=0, problems_open=0, last_verified_at=None
                ),
            )
        return [by_offer[name] for name in sorted(by_offer)]

    # -- run -------------------------------------------------------------------------------

    def run(self, scope: AuditScope) -> AuditReport:
        offers = self._select_offers(scope.offers)
        if not 0 < scope.sample <= 1:
            raise InvalidInput(f"sample must be in (0, 1], got {scope.sample}")
        package_ids = self._packages_of_unit(scope.unit_id) if scope.unit_id else None
        report = AuditReport(
            run_id=uuid.uuid4().hex,
            started_at=self._clock.now(),
            offers=tuple(o.name for o in offers),
            sample=scope.sample,
        )
        with self._uow() as uow:
            rows = uow.audit.copies_to_audit(offers=report.offers, package_ids=package_ids)
        report.selected = len(rows)
        rows = rows[: math.ceil(len(rows) * scope.sample)]
        by_package: dict[str, list[AuditCopyRecord]] = {}
        for row in rows:
            by_package.setdefault(row.package_id, []).append(row)
        tenants: dict[str, Counter[str]] = {}
        for package_rows in by_package.values():
            found = self._audit_package(package_rows, offers, report, scope)
            tally = tenants.setdefault(package_rows[0].tenant_id, Counter())
            tally["copies"] += len(package_rows)
            tally["problems"] += len(found)
            tally["repaired"] += sum(1 for p in found if p.repaired)
            report.packages += 1
        report.finished_at = self._clock.now()
        self._log_run(report, scope, tenants)
        return report

    def _select_offers(self, names: Sequence[str]) -> list[BlobStore]:
        if not names:
            return list(self._offers)
        known = {o.name: o for o in self._offers}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InvalidInput(
                f"unknown storage offer {', '.join(unknown)} (configured: {', '.join(known)})"
            )
        return [known[n] for n in dict.fromkeys(names)]

    def _packages_of_unit(self, unit_id: str) -> list[str]:
        try:
            return [p.id for p in self._admin.packages_of_unit(unit_id)]
        except NotFound:
            raise InvalidInput(f"no archive unit {unit_id}") from None

    def _audit_package(
        self,
        rows: list[AuditCopyRecord],
        offers: Sequence[BlobStore],
        report: AuditReport,
        scope: AuditScope,
    ) -> list[Problem]:
        first = rows[0]
        with self._uow() as uow:
            package = uow.archive.get_package(first.tenant_id, first.package_id)
            recorded = uow.archive.copies_of_package(first.tenant_id, first.package_id)
            objects = (
                uow.archive.objects_of_root(first.tenant_id, package.root_unit_id)
                if package
                else []
            )
        if package is None:  # removed since the selection: nothing left to audit
            return []
        context = _PackageContext(
            package=package,
            objects={o.storage_key: o for o in objects if o.package_id == package.id},
            manifest=self._manifest(package, recorded),
        )
        problems: list[Problem] = []
        keys = list(dict.fromkeys(r.key for r in rows))
        problems.extend(self._compare_manifest(context, keys, recorded))
        outcomes: dict[int, str] = {}
        for row in rows:
            offer = next(o for o in offers if o.name == row.offer)
            outcome, problem = self._verify_copy(context, offer, row, report)
            outcomes[row.id] = outcome
            report.outcomes[(row.offer, outcome)] += 1
            report.checked += 1
            if problem is not None:
                problems.append(problem)
        problems.extend(self._unrecorded(context, keys, recorded, offers, report))
        verified_at = self._clock.now()
        self._record(context, outcomes, problems, report, verified_at)
        if scope.repair:
            self._repair(context, problems, rows)
        report.problems.extend(problems)
        return problems

    # -- reading ---------------------------------------------------------------------------

    def _manifest(
        self, package: PackageRecord, recorded: Sequence[CopyRecord]
    ) -> dict[str, ParsedDataObject] | None:
        """The package's manifest, parsed, from the first offer whose recorded copy (at its
        recorded version) hashes to the recorded digest (``None`` if none does: its copies
        are reported missing or corrupt)."""
        versions = recorded_versions(recorded, package.manifest_key)
        for offer in self._offers:
            if offer.name not in versions:
                continue
            try:
                with offer.open(package.manifest_key, version_id=versions[offer.name]) as stream:
                    data = stream.read()
            except (ArchiveError, OSError):
                continue
            if hashlib.sha256(data).hexdigest() != package.manifest_sha256:
                continue
            try:
                return read_manifest(data).by_uri()
            except SedaInvalid:
                return None
        return None

    def _compare_manifest(
        self, context: _PackageContext, keys: Sequence[str], recorded: Sequence[Any]
    ) -> list[Problem]:
        """Database vs manifest, once per object of the selection."""
        if context.manifest is None:
            return []
        copy_digests: dict[str, set[str]] = {}
        for copy in recorded:
            copy_digests.setdefault(copy.key, set()).add(copy.sha256)
        problems = []
        for key in keys:
            obj = context.objects.get(key)
            if obj is None:
                continue  # the manifest, the token, the DECP record: not BinaryDataObjects
            declared = context.manifest.get(obj.uri)
            base = self._problem_base(context, key)
            if declared is None:
                problems.append(
                    Problem(
                        kind="manifest_mismatch",
                        offer=None,
                        expected=f"a BinaryDataObject with Uri {obj.uri}",
                        found="not in the manifest",
                        **base,
                    )
                )
                context.mismatched.add(key)
                continue
            want256 = declared.fingerprint
            want512 = declared.sha512_fingerprint
            pairs = []
            if want256 is not None and want256.algorithm == "sha256":
                recorded256 = sorted({obj.sha256, *copy_digests.get(key, ())})
                pairs += [(want256.digest, d, "sha256") for d in recorded256]
            if want512 is not None:
                pairs.append((want512.digest, obj.sha512, "sha512"))
            for want, have, algorithm in pairs:
                if want != have:
                    problems.append(
                        Problem(
                            kind="manifest_mismatch",
                            offer=None,
                            expected=fp(algorithm, want),
                            found=fp(algorithm, have),
                            detail="the database's digest differs from the manifest's",
                            **base,
                        )
                    )
                    context.mismatched.add(key)
                    break
        return problems

    def _verify_copy(
        self,
        context: _PackageContext,
        offer: BlobStore,
        row: AuditCopyRecord,
        report: AuditReport,
    ) -> tuple[str, Problem | None]:
        obj = context.objects.get(row.key)
        read = _read_copy(offer, row.key, with_sha512=obj is not None, version_id=row.version_id)
        report.bytes_read += read.size
        base = self._problem_base(context, row.key)
        if read.state == "missing":
            return "missing", Problem(
                kind="missing",
                offer=offer.name,
                expected=fp("sha256", row.sha256),
                found="absent",
                **base,
            )
        if read.state == "unreachable":
            return "unreachable", Problem(
                kind="unreachable",
                offer=offer.name,
                expected=fp("sha256", row.sha256),
                found="offer unreachable",
                detail=read.detail,
                **base,
            )
        declared = context.manifest.get(obj.uri) if context.manifest and obj else None
        manifest256 = declared.fingerprint if declared else None
        if read.sha256 != row.sha256 or (obj is not None and read.sha512 != obj.sha512):
            if (
                row.key in context.mismatched
                and manifest256 is not None
                and read.sha256 == manifest256.digest
            ):
                return "manifest_mismatch", None  # the bytes are the manifest's: named above
            if read.sha256 != row.sha256:
                expected, found = fp("sha256", row.sha256), fp("sha256", read.sha256)
            else:
                expected = fp("sha512", obj.sha512 if obj else None)
                found = fp("sha512", read.sha512)
            return "corrupt", Problem(
                kind="corrupt",
                offer=offer.name,
                expected=expected,
                found=found,
                detail=f"version {row.version_id}" if row.version_id else "",
                **base,
            )
        if row.version_id is not None and read.version_id != row.version_id:
            return "version_mismatch", Problem(
                kind="version_mismatch",
                offer=offer.name,
                expected=f"version {row.version_id}",
                found=f"version {read.version_id}",
                detail="the bytes are right; the offer serves another version than recorded",
                **base,
            )
        if row.key in context.mismatched:
            return "manifest_mismatch", None
        return "ok", None

    def _unrecorded(
        self,
        context: _PackageContext,
        keys: Sequence[str],
        recorded: Sequence[Any],
        offers: Sequence[BlobStore],
        report: AuditReport,
    ) -> list[Problem]:
        """Keys of the selection that an audited offer has no row for."""
        on: dict[str, set[str]] = {}
        digest: dict[str, str] = {}
        for copy in recorded:
            on.setdefault(copy.key, set()).add(copy.offer)
            digest.setdefault(copy.key, copy.sha256)
        problems = []
        for key in keys:
            for offer in offers:
                if offer.name in on.get(key, set()):
                    continue
                read = _read_copy(offer, key, with_sha512=False)
                report.bytes_read += read.size
                kind: ProblemKind
                if read.state == "present" and read.sha256 == digest[key]:
                    kind, found = "unrecorded", fp("sha256", read.sha256)
                elif read.state == "present":
                    kind, found = "corrupt", fp("sha256", read.sha256)
                elif read.state == "missing":
                    kind, found = "missing", "absent"
                else:
                    kind, found = "unreachable", "offer unreachable"
                report.outcomes[(offer.name, kind)] += 1
                problems.append(
                    Problem(
                        kind=kind,
                        offer=offer.name,
                        expected=fp("sha256", digest[key]),
                        found=found,
                        detail="no copy recorded in the database on this offer",
                        **self._problem_base(context, key),
                    )
                )
        return problems

    @staticmethod
    def _problem_base(context: _PackageContext, key: str) -> _Where:
        return {
            "key": key,
            "tenant_id": context.package.tenant_id,
            "package_id": context.package.id,
            "unit_id": context.package.root_unit_id,
        }

    # -- recording -------------------------------------------------------------------------

    def _record(
        self,
        context: _PackageContext,
        outcomes: dict[int, str],
        problems: Sequence[Problem],
        report: AuditReport,
        at: datetime,
    ) -> None:
        package = context.package
        by_outcome: dict[str, list[int]] = {}
        for copy_id, outcome in outcomes.items():
            by_outcome.setdefault(outcome, []).append(copy_id)
        with self._uow() as uow:
            for outcome, ids in by_outcome.items():
                uow.audit.record_verification(ids, at=at, outcome=outcome)
            for problem in problems:
                uow.logbook.append(
                    LogEvent(
                        tenant_id=package.tenant_id,
                        at=at,
                        event_type=EVENT_OF_KIND[problem.kind],
                        outcome="KO",
                        subject_type="package",
                        subject_id=package.id,
                        details={**problem.as_dict(), "run_id": report.run_id},
                    )
                )
            uow.logbook.append(
                LogEvent(
                    tenant_id=package.tenant_id,
                    at=at,
                    event_type="audit.unit",
                    outcome="OK" if not problems else "KO",
                    subject_type="archive_unit",
                    subject_id=package.root_unit_id,
                    details={
                        "run_id": report.run_id,
                        "package_id": package.id,
                        "copies": dict(sorted(Counter(outcomes.values()).items())),
                        "problems": len(problems),
                        "algorithms": ["sha256", "sha512"],
                        "manifest_checked": context.manifest is not None,
                    },
                )
            )
            uow.commit()

    def _repair(
        self, context: _PackageContext, problems: Sequence[Problem], rows: Sequence[AuditCopyRecord]
    ) -> None:
        todo = [p for p in problems if p.kind in REPAIRABLE and p.key not in context.mismatched]
        if not todo:
            return
        result = self._admin.repair([context.package], keys={p.key for p in todo})
        done = {
            (o.offer, o.key): o for o in result.outcomes if o.outcome in ("repaired", "recorded")
        }
        failed = {(o.offer, o.key): o for o in result.outcomes if o.outcome == "failed"}
        fixed_ids: list[int] = []
        for problem in todo:
            where = (problem.offer or "", problem.key)
            if where in done:
                problem.repaired = True
                outcome = done[where]
                problem.repair_detail = (
                    f"restored from {outcome.source}" if outcome.source else outcome.detail
                )
                fixed_ids += [r.id for r in rows if (r.offer, r.key) == where]
            elif where in failed:
                problem.repair_detail = failed[where].detail
        if fixed_ids:
            with self._uow() as uow:
                # Read back with the recorded digest by the repair itself.
                uow.audit.record_verification(fixed_ids, at=self._clock.now(), outcome="ok")
                uow.commit()

    def _log_run(
        self, report: AuditReport, scope: AuditScope, tenants: dict[str, Counter[str]]
    ) -> None:
        finished = report.finished_at or self._clock.now()
        scope_json = {
            "offers": list(scope.offers),
            "unit_id": scope.unit_id,
            "sample": scope.sample,
            "repair": scope.repair,
            "trigger": scope.trigger,
        }
        with self._uow() as uow:
            for tenant_id, tally in tenants.items():
                uow.audit.add_run(
                    AuditRunRecord(
                        run_id=report.run_id,
                        tenant_id=tenant_id,
                        started_at=report.started_at,
                        finished_at=finished,
                        offers=list(report.offers),
                        scope=scope_json,
                        copies=tally["copies"],
                        problems=tally["problems"],
                        repaired=tally["repaired"],
                    )
                )
                uow.logbook.append(
                    LogEvent(
                        tenant_id=tenant_id,
                        at=finished,
                        event_type="audit.run",
                        outcome="OK" if tally["problems"] == tally["repaired"] else "KO",
                        subject_type="audit",
                        subject_id=report.run_id,
                        details={
                            **scope_json,
                            "audited_offers": list(report.offers),
                            "started_at": report.started_at.isoformat(),
                            "copies": tally["copies"],
                            "problems": tally["problems"],
                            "repaired": tally["repaired"],
                        },
                    )
                )
            uow.commit()


def _read_copy(
    offer: BlobStore, key: str, *, with_sha512: bool, version_id: str | None = None
) -> _Read:
    """Read one copy whole, hashing it as it streams (one reused buffer): ``version_id`` if
    given (the recorded one), else the object of the key; the version ``stat`` found is the
    one read."""
    try:
        stat = offer.stat(key, version_id=version_id)
        if stat is None:
            return _Read("missing")
        with offer.open(key, version_id=stat.version_id) as stream:
            size, sha256, sha512 = hash_stream(stream, with_sha512=with_sha512)
    except NotFound:
        return _Read("missing")
    except ArchiveError as exc:
        return _Read("unreachable", detail=exc.message)
    except OSError as exc:
        return _Read("unreachable", detail=f"{type(exc).__name__}: {exc}")
    return _Read("present", size, sha256, sha512, stat.version_id)


def hash_stream(stream: BinaryIO, *, with_sha512: bool) -> tuple[int, str, str | None]:
    """Size, SHA-256 and (if asked) SHA-512 of a stream, read in 1 MiB chunks."""
    sha256 = hashlib.sha256()
    sha512 = hashlib.sha512() if with_sha512 else None
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    size = 0
    while True:
        n = stream.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        chunk = view[:n]
        sha256.update(chunk)
        if sha512 is not None:
            sha512.update(chunk)
        size += n
    return size, sha256.hexdigest(), sha512.hexdigest() if sha512 is not None else None


def _offer_json(status: OfferAuditStatus) -> dict[str, Any]:
    return {
        "offer": status.offer,
        "objects": status.copies,
        "verified": status.verified,
        "verified_fraction": verified_fraction(status),
        "problems_open": status.problems_open,
        "last_verified_at": status.last_verified_at.isoformat()
        if status.last_verified_at
        else None,
    }


def verified_fraction(status: OfferAuditStatus) -> float:
    """Copies verified healthy within the window over copies recorded (1.0 for none)."""
    return 1.0 if status.copies == 0 else status.verified / status.copies
