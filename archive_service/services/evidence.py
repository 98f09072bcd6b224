"""Evidence bundles (issue 4 item 5): everything an auditor needs to check an archive unit
offline, in one zip — the package's manifest and RFC 3161 token with the TSA chain, the object
digests (``SHA256SUMS``, ``SHA512SUMS``; the objects themselves on request), the unit's
logbook entries (their exact canonical bytes) with inclusion proofs to a signed, timestamped
checkpoint, the logbook's public key, a report (« Relevé de valeur probante », HTML and PDF),
``VERIFY.md`` and a standard-library script that checks the proofs.

Who: archivists and admins; auditors too, but without the objects unless the setting
``evidence_auditor_objects`` allows them (they may not read document content). Every request
leaves an ``evidence.read`` entry, committed before the bundle is built, so the bundle carries
its own read with its proof. A refused request is logged ``REFUSED``.

Before a byte is sent the service checks what it is about to ship, with the very checklist of
``archive-verify`` (``core.evidence_check``) and more: each entry's columns still give its
canonical bytes. A logbook edited in the database or a lifecycle entry deleted is *refused*
(``IntegrityFailure`` naming the entry or the check, logged ``FAILED``): the service never
hands out evidence it knows to be false. The bundle is a stream: objects go from storage into
the zip a chunk at a time.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from string import Template
from typing import Any, BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from archive_service.core.evidence_check import (
    BODY_FILE,
    BUNDLE_FILE,
    CHECKPOINT_TOKEN_FILE,
    ENTRIES_DIR,
    FORMAT,
    GUIDE_FILE,
    KEY_NAME_FILE,
    NOTE_FILE,
    PROOFS_FILE,
    PUBLIC_KEY_FILE,
    SIGNATURE_FILE,
    SUMS_FILES,
    check_bundle,
)
from archive_service.core.logbook.checkpoint import parse_signed_note
from archive_service.core.model import VerificationReport
from archive_service.core.package_check import CHAIN_FILE, MANIFEST_FILE, TOKEN_FILE
from archive_service.core.timestamp import token_info
from archive_service.errors import (
    AccessRestricted,
    ArchiveError,
    Forbidden,
    IntegrityFailure,
    NotFound,
)
from archive_service.ports import (
    BlobStore,
    Caller,
    CheckpointRecord,
    Clock,
    LogEntryRecord,
    ObjectRecord,
    PackageRecord,
    Role,
    TimestampAuthority,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import FAILED, OK, REFUSED, AccessLog
from archive_service.services.communicability import AccessGuard
from archive_service.services.logbook import LogbookService
from archive_service.services.recorded import open_recorded

EVIDENCE_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN, Role.AUDITOR})
CHUNK = 1024 * 1024
ZIP64_FROM = 2**31


@dataclass(frozen=True, slots=True)
class EvidenceBundle:
    """A bundle ready to be streamed: its small files in memory, its objects opened lazily."""

    unit_id: str
    created_at: datetime
    files: tuple[tuple[str, bytes], ...]
    objects: tuple[ObjectRecord, ...] = ()
    """Written under their ``uri`` (``content/…``) when the bundle includes objects."""
    report: VerificationReport = field(default_factory=VerificationReport)
    open_object: Callable[[ObjectRecord], BinaryIO] | None = None

    @property
    def filename(self) -> str:
        return f"evidence-{self.unit_id}.zip"

    def chunks(self) -> Iterator[bytes]:
        """The zip, a piece at a time (no object is ever held whole in memory)."""
        sink = _Sink()
        stamp = self.created_at.timetuple()[:6]
        with zipfile.ZipFile(sink, "w") as zf:
            for name, data in self.files:
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
                yield sink.take()
            for record in self.objects:
                assert self.open_object is not None
                info = zipfile.ZipInfo(record.uri, date_time=stamp)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o444 << 16
                with (
                    self.open_object(record) as source,
                    zf.open(info, "w", force_zip64=record.size >= ZIP64_FROM) as target,
                ):
                    while chunk := source.read(CHUNK):
                        target.write(chunk)
                        yield sink.take()
        yield sink.take()

    def write(self, out: BinaryIO) -> None:
        for piece in self.chunks():
            out.write(piece)


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file collecting what zipfile writes (data descriptors)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class EvidenceService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        offers: Sequence[BlobStore],
        tsa: TimestampAuthority,
        clock: Clock,
        logbook: LogbookService,
        auditor_objects: bool = False,
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._tsa = tsa
        self._clock = clock
        self._logbook = logbook
        self._auditor_objects = auditor_objects
        self._log = AccessLog(uow=uow, clock=clock)
        self._access = AccessGuard(uow=uow, clock=clock)

    def bundle(self, caller: Caller, unit_id: str, *, with_objects: bool = False) -> EvidenceBundle:
        """Check and assemble the bundle of ``unit_id`` (see the module docstring)."""
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
            package = uow.archive.get_package(caller.tenant_id, unit.package_id) if unit else None
            objects = uow.archive.objects_of_root(caller.tenant_id, unit.root_id) if unit else []
        if unit is None or package is None:
            raise NotFound(f"no archive unit {unit_id}")
        details: dict[str, Any] = {
            "package_id": package.id,
            "with_objects": with_objects,
            "objects": len(objects),
        }
        reason = self._refusal(caller, with_objects)
        if reason is not None:
            self._log.append(
                caller,
                "evidence.read",
                subject_type="archive_unit",
                subject_id=unit_id,
                details={**details, "reason": reason},
                outcome=REFUSED,
            )
            raise Forbidden(reason)
        if with_objects:
            self._refuse_restricted(caller, unit, details, objects)
        self._log.append(
            caller, "evidence.read", subject_type="archive_unit", subject_id=unit_id,
            details=details, outcome=OK,
        )  # fmt: skip
        try:
            return self._assemble(caller, unit, package, tuple(objects), with_objects)
        except ArchiveError as exc:
            self._log.append(
                caller,
                "evidence.read",
                subject_type="archive_unit",
                subject_id=unit_id,
                details={**details, "reason": exc.message},
                outcome=FAILED,
            )
            raise

    def _refuse_restricted(
        self,
        caller: Caller,
        unit: UnitRecord,
        details: dict[str, Any],
        objects: Sequence[ObjectRecord],
    ) -> None:
        """Objects are document content: none is shipped while its unit is not communicable
        to the caller (services/communicability.py). Objects of destroyed or transferred units
        are not shipped anyway (listed apart by the assembly), so they do not refuse it."""
        family = self._access.family(unit)
        by_id = {u.id: u for u in family}
        withheld: list[dict[str, Any]] = []
        for o in objects:
            owner = by_id.get(o.archive_unit_id)
            if owner is None:
                continue
            if owner.status != "active":
                continue
            decision = self._access.decision(caller, owner, family)
            if not decision.communicable:
                withheld.append({"object_id": o.id, "unit_id": owner.id, **decision.members()})
        if not withheld:
            return
        message = (
            f"evidence of {unit.id} with objects refused: {len(withheld)} object(s) are not "
            "communicable to you today (ask for the evidence without objects)"
        )
        self._log.append(
            caller,
            "evidence.read",
            subject_type="archive_unit",
            subject_id=unit.id,
            details={**details, "reason": "not communicable", "restricted_objects": withheld},
            outcome=REFUSED,
        )
        raise AccessRestricted(message, extra={"restricted_objects": withheld})

    def _refusal(self, caller: Caller, with_objects: bool) -> str | None:
        if caller.role not in EVIDENCE_ROLES:
            return f"role {caller.role.value!r} may not read evidence bundles"
        if with_objects and caller.role is Role.AUDITOR and not self._auditor_objects:
            return "role 'auditor' may not read document content (evidence without objects only)"
        return None

    # -- assembly ----------------------------------------------------------------------------

    def _assemble(
        self,
        caller: Caller,
        unit: UnitRecord,
        package: PackageRecord,
        objects: tuple[ObjectRecord, ...],
        with_objects: bool,
    ) -> EvidenceBundle:
        now = self._clock.now()
        manifest = self._read(package.tenant_id, package.id, package.manifest_key)
        token = self._read(package.tenant_id, package.id, package.timestamp_key)
        chain = self._tsa.certificate_chain_pem()
        dossier = self._dossier(caller, unit, package, objects)
        objects = dossier.objects
        entries = self._logbook.lifecycle(caller, unit.id)
        if dossier.others:
            entries = self._with_package_entries(caller.tenant_id, entries, dossier.others)
        _check_columns(entries)
        checkpoint = self._covering_checkpoint(caller.tenant_id, entries)
        proofs = [self._logbook.inclusion(caller, e.id, checkpoint.size) for e in entries]
        body, signatures = parse_signed_note(checkpoint.note)
        subjects = sorted({e.event.subject_id for e in entries} | {unit.id})
        files: dict[str, bytes] = {
            BUNDLE_FILE: _json(
                {
                    "format": FORMAT,
                    "unit_id": unit.id,
                    "root_unit_id": unit.root_id,
                    "title": unit.title,
                    "package_id": package.id,
                    "transfer_id": package.transfer_id,
                    "tenant_id": caller.tenant_id,
                    "created_at": now.isoformat(),
                    "created_by": {"client": caller.client_id, "role": caller.role.value},
                    "with_objects": with_objects,
                    "objects": [
                        {
                            "id": o.id,
                            "uri": o.uri,
                            "path": o.path,
                            "size": o.size,
                            "sha256": o.sha256,
                            "sha512": o.sha512,
                        }
                        for o in objects
                    ],
                    **dossier.index(package),
                }
            ),
            MANIFEST_FILE: manifest,
            TOKEN_FILE: token,
            CHAIN_FILE: chain,
            SUMS_FILES["sha256"]: "".join(f"{o.sha256}  {o.uri}\n" for o in objects).encode(),
            SUMS_FILES["sha512"]: "".join(f"{o.sha512}  {o.uri}\n" for o in objects).encode(),
            NOTE_FILE: checkpoint.note,
            BODY_FILE: body,
            SIGNATURE_FILE: next(
                (s.signature for s in signatures if s.key_name == checkpoint.key_name), b""
            ),
            CHECKPOINT_TOKEN_FILE: checkpoint.token,
            PUBLIC_KEY_FILE: self._logbook.public_key_pem(),
            KEY_NAME_FILE: f"{checkpoint.key_name}\n".encode(),
            PROOFS_FILE: _json(
                {
                    "tree_size": checkpoint.size,
                    "root": checkpoint.root.hex(),
                    "subjects": subjects,
                    "entries": [
                        {
                            "id": p.entry.id,
                            "file": _entry_file(p.entry.id),
                            "type": p.entry.event.event_type,
                            "leaf_index": p.entry.leaf_index,
                            "leaf_hash": (p.entry.leaf_hash or b"").hex(),
                            "proof": [h.hex() for h in p.proof],
                        }
                        for p in proofs
                    ],
                }
            ),
        }
        for entry in entries:
            files[_entry_file(entry.id)] = entry.canonical
        for other in dossier.others:
            folder = _package_dir(other)
            files[f"{folder}/{MANIFEST_FILE}"] = self._read(
                other.tenant_id, other.id, other.manifest_key
            )
            files[f"{folder}/{TOKEN_FILE}"] = self._read(
                other.tenant_id, other.id, other.timestamp_key
            )
        scripts = resources.files("archive_service.core.logbook")
        files["verify_proofs.py"] = scripts.joinpath("proofcheck.py").read_bytes()
        files["merkle.py"] = scripts.joinpath("merkle.py").read_bytes()
        files["canonical.py"] = scripts.joinpath("canonical.py").read_bytes()

        report = check_bundle(files.get, None)
        if not report.ok:
            raise IntegrityFailure(
                f"evidence of {unit.id} refused: what the service would ship does not verify: "
                + "; ".join(
                    f"{c.name} ({c.subject}): expected {c.expected}, found {c.found}"
                    for c in report.failures
                )
            )
        summary = _summary(caller, unit, package, objects, entries, checkpoint, files, now)
        if dossier.others:
            summary["versions"] = [
                (
                    p.sequence,
                    p.id,
                    p.transfer_id,
                    p.created_at.isoformat(),
                    p.manifest_sha256,
                    p.timestamp_gen_time.isoformat(),
                )
                for p in dossier.packages
            ]
        summary["destroyed"] = [
            (o.path, status, o.archive_unit_id, o.sha256) for o, status in dossier.gone
        ]
        from archive_service.services.evidence_report import render_html, render_pdf

        files["report.html"] = render_html(summary, report)
        files["report.pdf"] = render_pdf(summary, report)
        files[GUIDE_FILE] = _guide(summary, with_objects)
        order = [GUIDE_FILE, "report.html", "report.pdf", BUNDLE_FILE]
        ordered = [(n, files[n]) for n in order] + [
            (n, d) for n, d in files.items() if n not in order
        ]
        return EvidenceBundle(
            unit_id=unit.id,
            created_at=now,
            files=tuple(ordered),
            objects=objects if with_objects else (),
            report=report,
            open_object=self._open_object,
        )

    def _dossier(
        self,
        caller: Caller,
        unit: UnitRecord,
        package: PackageRecord,
        objects: Sequence[ObjectRecord],
    ) -> _DossierCover:
        """The packages the bundle covers: the unit's own and every package that added a
        unit below it (for a dossier's root: every package of the dossier, each addition its
        own manifest and token); the objects of those packages, those of destroyed or
        transferred units set apart (listed, no longer held)."""
        with self._uow() as uow:
            family = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
            packages = uow.archive.packages_of_root(caller.tenant_id, unit.root_id)
        below = _subtree(unit.id, family)
        covered = {u.package_id for u in family if u.id in below} | {package.id}
        status = {u.id: u.status for u in family}
        kept = [o for o in objects if o.package_id in covered]
        return _DossierCover(
            packages=tuple(p for p in packages if p.id in covered),
            others=tuple(p for p in packages if p.id in covered and p.id != package.id),
            objects=tuple(o for o in kept if status.get(o.archive_unit_id, "active") == "active"),
            gone=tuple(
                (o, status[o.archive_unit_id])
                for o in kept
                if status.get(o.archive_unit_id, "active") != "active"
            ),
        )

    def _with_package_entries(
        self,
        tenant_id: str,
        entries: Sequence[LogEntryRecord],
        others: Sequence[PackageRecord],
    ) -> list[LogEntryRecord]:
        """``entries`` and those about the other packages and their transfers, by id."""
        subjects = sorted({p.id for p in others} | {p.transfer_id for p in others})
        found = {e.id: e for e in entries}
        after = 0
        with self._uow() as uow:
            while True:
                page = uow.logbook.entries(
                    tenant_id, subject_ids=subjects, after_id=after, limit=ENTRY_PAGE
                )
                found.update((e.id, e) for e in page)
                if len(page) < ENTRY_PAGE:
                    break
                after = page[-1].id
        return [found[i] for i in sorted(found)]

    def _covering_checkpoint(
        self, tenant_id: str, entries: Sequence[LogEntryRecord]
    ) -> CheckpointRecord:
        """The latest checkpoint, or a new one (through the logbook service) when the latest
        does not cover every entry."""
        with self._uow() as uow:
            latest = uow.logbook.latest_checkpoint(tenant_id)
        if latest is not None and all(
            e.leaf_index is not None and e.leaf_index < latest.size for e in entries
        ):
            return latest
        outcome = self._logbook.checkpoint(tenant_id)
        if outcome.checkpoint is None:
            raise IntegrityFailure(f"no checkpoint could be made of the log of {tenant_id}")
        return outcome.checkpoint

    def _read(self, tenant_id: str, package_id: str, key: str) -> bytes:
        with self._open(tenant_id, package_id, key) as stream:
            return stream.read()

    def _open(self, tenant_id: str, package_id: str, key: str) -> BinaryIO:
        """The recorded version of ``key`` on the first offer that serves it (a copy repaired
        on S3 is a newer version of the key than its first, bad one)."""
        with self._uow() as uow:
            copies = uow.archive.copies_of_key(tenant_id, package_id, key)
        stream, _offer = open_recorded(self._offers, copies, key)
        return stream

    def _open_object(self, record: ObjectRecord) -> BinaryIO:
        return self._open(record.tenant_id, record.package_id, record.storage_key)


ENTRY_PAGE = 1000


@dataclass(frozen=True, slots=True)
class _DossierCover:
    packages: tuple[PackageRecord, ...]
    others: tuple[PackageRecord, ...]
    objects: tuple[ObjectRecord, ...]
    gone: tuple[tuple[ObjectRecord, str], ...]

    def index(self, own: PackageRecord) -> dict[str, Any]:
        """``bundle.json`` members for a dossier that grew (nothing for a single package)."""
        out: dict[str, Any] = {}
        if self.others:
            out["packages"] = [
                {
                    "sequence": p.sequence,
                    "package_id": p.id,
                    "transfer_id": p.transfer_id,
                    "created_at": p.created_at.isoformat(),
                    "manifest_sha256": p.manifest_sha256,
                    "manifest": MANIFEST_FILE
                    if p.id == own.id
                    else f"{_package_dir(p)}/manifest.xml",
                    "timestamp": TOKEN_FILE
                    if p.id == own.id
                    else f"{_package_dir(p)}/timestamp.tsr",
                }
                for p in self.packages
            ]
        if self.gone:
            out["destroyed"] = [
                {
                    "id": o.id,
                    "uri": o.uri,
                    "path": o.path,
                    "sha256": o.sha256,
                    "unit_id": o.archive_unit_id,
                    "status": status,
                }
                for o, status in self.gone
            ]
        return out


def _package_dir(package: PackageRecord) -> str:
    return f"packages/{package.sequence}"


def _subtree(unit_id: str, family: Sequence[UnitRecord]) -> set[str]:
    children: dict[str | None, list[str]] = {}
    for u in family:
        children.setdefault(u.parent_id, []).append(u.id)
    out, todo = set(), [unit_id]
    while todo:
        current = todo.pop()
        out.add(current)
        todo.extend(children.get(current, []))
    return out


def _check_columns(entries: Sequence[LogEntryRecord]) -> None:
    """Each entry's columns still give its canonical bytes (``logbook verify``'s
    ``entry-edited``): a row edited in the database is refused, never shipped."""
    for entry in entries:
        if entry.event.canonical(entry.id) != entry.canonical:
            raise IntegrityFailure(
                f"logbook entry {entry.id} ({entry.event.event_type}) was edited in the "
                "database: its columns no longer give its canonical bytes "
                "(run `archive-service logbook verify`)"
            )


def _entry_file(entry_id: int) -> str:
    return f"{ENTRIES_DIR}/{entry_id:012d}.json"


def _json(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _summary(
    caller: Caller,
    unit: UnitRecord,
    package: PackageRecord,
    objects: Sequence[ObjectRecord],
    entries: Sequence[LogEntryRecord],
    checkpoint: CheckpointRecord,
    files: dict[str, bytes],
    now: datetime,
) -> dict[str, Any]:
    """What the report and the guide show, from the files that are shipped."""
    info = token_info(files[TOKEN_FILE])
    cp_info = token_info(checkpoint.token)
    certs = x509.load_pem_x509_certificates(files[CHAIN_FILE])
    root = certs[-1]
    key_der = hashlib.sha256(_pem_der(files[PUBLIC_KEY_FILE])).hexdigest()
    return {
        "unit_id": unit.id,
        "title": unit.title,
        "root_unit_id": unit.root_id,
        "package_id": package.id,
        "transfer_id": package.transfer_id,
        "tenant_id": caller.tenant_id,
        "created_at": now.isoformat(),
        "created_by": f"{caller.client_id} ({caller.role.value}, {caller.name})",
        "manifest_sha256": hashlib.sha256(files[MANIFEST_FILE]).hexdigest(),
        "manifest_sha512": hashlib.sha512(files[MANIFEST_FILE]).hexdigest(),
        "token_gen_time": info.gen_time.isoformat(),
        "token_serial": str(info.serial_number),
        "token_policy": info.policy,
        "token_hash": info.hash_algorithm,
        "tsa_name": info.tsa_name or "",
        "tsa_root_subject": root.subject.rfc4514_string(),
        "tsa_root_sha256": hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest(),
        "objects": [(o.path, o.size, o.sha256) for o in objects],
        "entries": [
            (e.id, e.leaf_index, e.event.at.isoformat(), e.event.event_type, e.event.outcome)
            for e in entries
        ],
        "checkpoint_origin": files[BODY_FILE].decode().split("\n", 1)[0],
        "checkpoint_size": checkpoint.size,
        "checkpoint_root": checkpoint.root.hex(),
        "checkpoint_gen_time": cp_info.gen_time.isoformat(),
        "key_name": checkpoint.key_name,
        "key_sha256": key_der,
    }


def _pem_der(pem: bytes) -> bytes:
    import base64

    lines = [ln for ln in pem.decode("ascii").splitlines() if ln and not ln.startswith("-----")]
    return base64.b64decode("".join(lines))


def _guide(summary: dict[str, Any], with_objects: bool) -> bytes:
    template = resources.files("archive_service.data").joinpath("evidence-VERIFY.md")
    text = Template(template.read_text(encoding="utf-8")).safe_substitute(
        {k: v for k, v in summary.items() if isinstance(v, str | int)},
        objects_note=(
            "The objects are in this bundle, under `content/`."
            if with_objects
            else "The objects are not in this bundle: check them where `archive-service get` "
            "wrote them (a directory holding `content/`)."
        ),
        objects_dir="." if with_objects else "../au",
        entries_count=len(summary["entries"]),
    )
    return text.encode("utf-8")
