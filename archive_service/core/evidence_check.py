"""Offline verification of an evidence bundle (issue 4 item 5): the checklist ``archive-verify``
prints and the service runs on every bundle before it sends it.

A bundle (a zip, laid out by :mod:`archive_service.services.evidence`) holds the package as
``archive-service get`` writes it (``manifest.xml``, ``timestamp.tsr``, ``tsa-chain.pem``,
``content/…`` when objects are included), ``SHA256SUMS``/``SHA512SUMS`` of the objects, the
unit's logbook entries (``logbook/entries/<id>.json``, their exact canonical bytes) with their
inclusion proofs (``logbook/proofs.json``) to a checkpoint (``logbook/checkpoint.note``, its
RFC 3161 token ``checkpoint.tsr``, the public key ``public-key.pem`` and its name
``key-name.txt``), and ``bundle.json`` naming the unit, its package and its transfer.

The checklist fails closed (DESIGN §6.2): any missing or unparseable item is a failed check.

0. ``bundle.json`` parses and names the unit, package, transfer and tenant;
1-4. :func:`core.package_check.check_package`: the manifest parses, the token's imprint is its
   digest and the token verifies against the bundled chain; the objects (when at hand) have the
   manifest's size and digests, and no unlisted file sits under ``content/``;
5. ``SHA256SUMS`` and ``SHA512SUMS`` list exactly the manifest's objects with its digests;
6. the TSA chain's trust anchor: its SHA-256 fingerprint, compared with a pin when given
   (otherwise printed for the auditor to compare out of band);
7. the logbook key (Ed25519, and its fingerprint vs a pin), the checkpoint's signature by that
   key and name, its origin (the tenant's log), the ``.body``/``.sig`` files given to
   ``openssl``, its RFC 3161 token over the note;
8. each entry: canonical bytes, leaf hash, inclusion proof to the checkpoint root, tenant and
   subject (:mod:`core.logbook.proofcheck`, the code ``verify_proofs.py`` runs);
9. the entries are about this unit: every subject is an object or unit of the manifest, the
   package or the transfer; the package's ``package.timestamped`` entry gives the digests of
   this manifest and token; ``transfer.accepted`` ties the transfer and the package to the
   root unit; each object has an ``object.stored`` entry with its SHA-256.

A dossier that grew (issue 5: each later transfer its own package) has its other packages
under ``packages/<n>/`` (``manifest.xml``, ``timestamp.tsr``), listed in ``bundle.json``
``packages`` with their sequence (check 0.1); each gets checks 1-3 and 9.3-9.5 of its own,
named ``v<n> …``; the sums (5) and the unlisted-file check (4) span every package. Objects of
units destroyed or transferred since are listed in ``bundle.json`` ``destroyed`` and left out
of the sums. A foreign transfer's manifest carries our SHA-512 only: its objects are matched
by SHA-512 (5.2) and found in the logbook by their key (9.5).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from archive_service.core.logbook import proofcheck
from archive_service.core.logbook.checkpoint import CheckpointError, key_id, verify_checkpoint
from archive_service.core.model import CheckResult, VerificationReport
from archive_service.core.package_check import (
    CHAIN_FILE,
    MANIFEST_FILE,
    TOKEN_FILE,
    OpenObject,
    check_package,
    check_timestamp,
)
from archive_service.core.seda.parse import read_manifest
from archive_service.core.seda.xmlsafe import parse_untrusted
from archive_service.errors import ArchiveError

FORMAT = "archive-service-evidence/1"
BUNDLE_FILE = "bundle.json"
SUMS_FILES = {"sha256": "SHA256SUMS", "sha512": "SHA512SUMS"}
ENTRIES_DIR = "logbook/entries"
PROOFS_FILE = proofcheck.PROOFS_FILE
NOTE_FILE = proofcheck.NOTE_FILE
BODY_FILE = proofcheck.BODY_FILE
SIGNATURE_FILE = proofcheck.SIGNATURE_FILE
CHECKPOINT_TOKEN_FILE = "logbook/checkpoint.tsr"  # noqa: S105 (a file name)
PUBLIC_KEY_FILE = "logbook/public-key.pem"
KEY_NAME_FILE = "logbook/key-name.txt"
SCRIPT_FILES = ("verify_proofs.py", "merkle.py", "canonical.py")
REPORT_FILES = ("report.html", "report.pdf")
GUIDE_FILE = "VERIFY.md"

#: Reads one file of the bundle by its bundle-relative path; ``None`` when it is absent.
ReadFile = Callable[[str], bytes | None]

_SUMS_LINE = re.compile(r"^([0-9a-f]+) [ *](content/\S.*)$")
_HEX = re.compile(r"[^0-9a-f]")


@dataclass(frozen=True, slots=True)
class Pins:
    """Fingerprints the auditor got out of band (hex SHA-256; ``None``: print only)."""

    tsa_root: str | None = None
    """SHA-256 of the DER of the chain's last (root) certificate."""
    logbook_key: str | None = None
    """SHA-256 of the DER SubjectPublicKeyInfo of the logbook key."""


def fingerprint(value: str | None) -> str | None:
    """A pin as typed (``AB:CD…`` or ``abcd…``), normalised to lowercase hex."""
    return None if value is None else _HEX.sub("", value.lower())


def check_bundle(
    read: ReadFile,
    open_object: OpenObject | None,
    *,
    content_listing: Iterable[str] | None = None,
    pins: Pins = Pins(),
) -> VerificationReport:
    """Run checks 0-9 of the module docstring. ``open_object``: the objects, from the bundle
    or a directory (``None``: not at hand; check 3 is not run, 5 stands for it)."""
    checks: list[CheckResult] = []
    index = _check_index(read(BUNDLE_FILE), checks)
    manifest, token, chain = read(MANIFEST_FILE), read(TOKEN_FILE), read(CHAIN_FILE)
    others = _other_packages(index, read, checks)
    listing = None if content_listing is None else list(content_listing)
    checks.extend(
        check_package(
            manifest, token, chain, open_object, content_listing=None if others else listing
        ).checks
    )
    objects = _manifest_objects(manifest)
    every = list(objects or [])
    for other in others:
        checks.extend(
            CheckResult(f"{other.label} {c.name}", c.ok, c.expected, c.found, c.subject or "")
            for c in check_package(other.manifest, other.token, chain, open_object).checks
        )
        every.extend(other.objects or [])
        if other.objects is None:
            objects = None
    if others and listing is not None:
        _check_unlisted_all(every, listing, checks)
    destroyed = _destroyed(index)
    _check_sums(
        None if objects is None else [o for o in every if o.uri not in destroyed], read, checks
    )
    _check_chain(chain, pins.tsa_root, checks)
    note = _check_checkpoint(read, chain, index, pins.logbook_key, checks)
    entries = _check_entries(read, note, checks)
    known = {str(p.package_id) for p in others} | {str(p.transfer_id) for p in others}
    for other in others:
        known |= _manifest_unit_ids(other.manifest) | {o.id for o in other.objects or []}
        known |= _manifest_system_ids(other.manifest)
    _check_lifecycle(index, manifest, token, objects, entries, checks, known=known)
    for other in others:
        _check_package_entries(
            other.label,
            {
                "package_id": other.package_id,
                "transfer_id": other.transfer_id,
                "root_unit_id": index.get("root_unit_id"),
            },
            other.manifest,
            other.token,
            [o for o in other.objects or [] if o.uri not in destroyed],
            other.objects is None,
            entries,
            checks,
        )
    return VerificationReport(tuple(checks))


@dataclass(frozen=True, slots=True)
class _OtherPackage:
    """A package of the dossier beside the unit's own (``bundle.json`` ``packages``)."""

    label: str
    package_id: str
    transfer_id: str
    manifest: bytes | None
    token: bytes | None
    objects: list[_Declared] | None


def _other_packages(
    index: dict[str, Any], read: ReadFile, checks: list[CheckResult]
) -> list[_OtherPackage]:
    """The packages ``bundle.json`` lists besides the unit's own (a dossier that grew: each
    addition is a package with its own manifest and token, under ``packages/<n>/``)."""
    listed = index.get("packages")
    if listed is None:
        return []
    name = "0.1 bundle.json lists the dossier's packages"
    if not isinstance(listed, list) or not all(isinstance(p, dict) for p in listed):
        _fail(checks, name, "a list of packages", f"{type(listed).__name__}", BUNDLE_FILE)
        return []
    out: list[_OtherPackage] = []
    own = False
    for item in listed:
        if item.get("package_id") == index.get("package_id"):
            own = own or item.get("manifest") == MANIFEST_FILE
            continue
        manifest_file, token_file = str(item.get("manifest")), str(item.get("timestamp"))
        manifest = read(manifest_file)
        out.append(
            _OtherPackage(
                label=f"v{item.get('sequence')}",
                package_id=str(item.get("package_id")),
                transfer_id=str(item.get("transfer_id")),
                manifest=manifest,
                token=read(token_file),
                objects=_manifest_objects(manifest),
            )
        )
    checks.append(
        CheckResult(
            name,
            own,
            f"the unit's package {index.get('package_id')} as {MANIFEST_FILE}, and the others",
            f"{len(listed)} packages" + ("" if own else ", the unit's own not among them"),
            BUNDLE_FILE,
        )
    )
    return out


def _destroyed(index: dict[str, Any]) -> set[str]:
    """Uris of objects the bundle declares destroyed (disposed of with a visa): in their
    manifest still, but no longer held, so not in the sums."""
    listed = index.get("destroyed")
    if not isinstance(listed, list):
        return set()
    return {str(d.get("uri")) for d in listed if isinstance(d, dict)}


def _check_unlisted_all(
    objects: list[_Declared], listing: list[str], checks: list[CheckResult]
) -> None:
    name = "4. no unlisted file under content/"
    extra = sorted(set(listing) - {o.uri for o in objects})
    if not extra:
        checks.append(CheckResult(name, True, "only listed files", "only listed files", "content"))
    for path in extra:
        checks.append(CheckResult(name, False, "not in any package", "unlisted file", path))


def _fail(checks: list[CheckResult], name: str, expected: str, found: str, subject: str) -> None:
    checks.append(CheckResult(name, False, expected, found, subject))


def _check_index(data: bytes | None, checks: list[CheckResult]) -> dict[str, Any]:
    name = "0. bundle.json names the unit, package, transfer and tenant"
    expected = f"{FORMAT} with unit_id, package_id, transfer_id, tenant_id"
    if data is None:
        _fail(checks, name, expected, "file missing", BUNDLE_FILE)
        return {}
    try:
        index = json.loads(data)
        missing = [
            k
            for k in ("unit_id", "package_id", "transfer_id", "tenant_id")
            if not isinstance(index.get(k), str)
        ]
    except (ValueError, AttributeError) as exc:
        _fail(checks, name, expected, f"not a JSON object: {exc}", BUNDLE_FILE)
        return {}
    if index.get("format") != FORMAT or missing:
        found = f"format {index.get('format')!r}, missing {', '.join(missing) or 'nothing'}"
        _fail(checks, name, expected, found, BUNDLE_FILE)
        return {}
    found = (
        f"unit {index['unit_id']}, package {index['package_id']}, "
        f"transfer {index['transfer_id']}, tenant {index['tenant_id']}"
    )
    checks.append(CheckResult(name, True, expected, found, BUNDLE_FILE))
    result: dict[str, Any] = index
    return result


@dataclass(frozen=True, slots=True)
class _Declared:
    id: str
    uri: str
    sha256: str | None
    sha512: str | None


def _manifest_objects(manifest: bytes | None) -> list[_Declared] | None:
    if manifest is None:
        return None
    try:
        parsed = read_manifest(manifest)
    except (ArchiveError, ValueError):
        return None  # named by check 1
    found = []
    for o in parsed.objects:
        digest = o.fingerprint
        sha512 = o.sha512_fingerprint
        found.append(
            _Declared(
                id=o.id,
                uri=o.uri,
                sha256=digest.digest if digest and digest.algorithm == "sha256" else None,
                sha512=(digest.digest if digest and digest.algorithm == "sha512" else None)
                or (sha512.digest if sha512 else None),
            )
        )
    return found


def _check_sums(objects: list[_Declared] | None, read: ReadFile, checks: list[CheckResult]) -> None:
    for number, (algorithm, file) in enumerate(SUMS_FILES.items(), start=1):
        name = f"5.{number} {file} = the manifest's {algorithm.upper()} digests"
        data = read(file)
        if data is None:
            _fail(checks, name, "a file", "file missing", file)
            continue
        if objects is None:
            _fail(checks, name, "the manifest's objects", "manifest unreadable", file)
            continue
        listed: dict[str, str] = {}
        bad: list[str] = []
        for line in data.decode("utf-8", "replace").splitlines():
            match = _SUMS_LINE.match(line)
            if match is None or match.group(2) in listed:
                bad.append(line)
            else:
                listed[match.group(2)] = match.group(1)
        declared = {o.uri: getattr(o, algorithm) for o in objects}
        # A foreign transfer's manifest gives our SHA-512 only (its MessageDigest): its
        # SHA-256 is checked against 5.2's SHA-512 sibling through the logbook (9.5).
        sha512_only = {
            o.uri for o in objects if algorithm == "sha256" and o.sha256 is None and o.sha512
        }
        wrong = sorted(
            f"{uri}: manifest {declared.get(uri)}, {file} {listed.get(uri)}"
            for uri in set(declared) | set(listed)
            if (declared.get(uri) is None or declared.get(uri) != listed.get(uri))
            and not (uri in sha512_only and listed.get(uri))
        )
        problems = wrong + [f"malformed line {line!r}" for line in bad]
        checks.append(
            CheckResult(
                name,
                not problems,
                f"{len(declared)} objects with the manifest's digests",
                "; ".join(problems) if problems else f"{len(listed)} objects, all equal",
                file,
            )
        )


def _check_chain(chain: bytes | None, pin: str | None, checks: list[CheckResult]) -> None:
    name = "6. TSA trust anchor (SHA-256 of the root certificate)"
    expected = f"pinned {pin}" if pin else "compare out of band with the TSA's published root"
    if chain is None:
        _fail(checks, name, expected, "file missing", CHAIN_FILE)
        return
    try:
        certs = x509.load_pem_x509_certificates(chain)
    except ValueError as exc:
        _fail(checks, name, expected, f"unreadable PEM: {exc}", CHAIN_FILE)
        return
    root = certs[-1]
    found = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    subject = root.subject.rfc4514_string()
    checks.append(
        CheckResult(name, pin is None or pin == found, expected, f"{found} ({subject})", CHAIN_FILE)
    )


def _check_checkpoint(
    read: ReadFile,
    chain: bytes | None,
    index: dict[str, Any],
    pin: str | None,
    checks: list[CheckResult],
) -> proofcheck.Note | None:
    """Checks 7.x; the note when its signature verifies (otherwise ``None``)."""
    key = _check_key(read, pin, checks)
    note = read(NOTE_FILE)
    name = "7.3 checkpoint signed by the logbook key"
    if note is None:
        _fail(checks, name, "a signed note", "file missing", NOTE_FILE)
        return None
    check_timestamp(
        note,
        read(CHECKPOINT_TOKEN_FILE),
        chain,
        checks,
        number="7.6",
        data_file=NOTE_FILE,
        token_file=CHECKPOINT_TOKEN_FILE,
    )
    try:
        parsed = proofcheck.parse_note(note)
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(checks, name, "a C2SP signed note", str(exc), NOTE_FILE)
        return None
    checks.extend(
        CheckResult(f"7.5 {c.name}", c.ok, c.expected, c.found, c.subject)
        for c in proofcheck.check_note_files(parsed, read)
    )
    if key is None:
        _fail(checks, name, "a signature by the bundled key", "no usable key", NOTE_FILE)
        return None
    public, key_name = key
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        expected_id = key_id(key_name, raw).hex()
        cp = verify_checkpoint(note, public, key_name)
    except CheckpointError as exc:
        found = ", ".join(f"{n}/{s[:4].hex()}" for n, s in parsed.signatures)
        _fail(checks, name, f"{key_name}/{expected_id}", f"{exc} (signatures: {found})", NOTE_FILE)
        return None
    checks.append(
        CheckResult(name, True, f"{key_name}/{expected_id}", "valid Ed25519 signature", NOTE_FILE)
    )
    tenant = index.get("tenant_id")
    origin_ok = isinstance(tenant, str) and cp.origin.endswith(f"/{tenant}")
    checks.append(
        CheckResult(
            "7.4 checkpoint is of the tenant's log",
            origin_ok,
            f"origin <prefix>/{tenant}",
            f"origin {cp.origin}, size {cp.size}, root {cp.root.hex()}",
            NOTE_FILE,
        )
    )
    return parsed if origin_ok else None


def _check_key(
    read: ReadFile, pin: str | None, checks: list[CheckResult]
) -> tuple[Ed25519PublicKey, str] | None:
    name = "7.1 logbook public key (SHA-256 of its DER SubjectPublicKeyInfo)"
    expected = f"pinned {pin}" if pin else "an Ed25519 key; compare out of band"
    pem, name_bytes = read(PUBLIC_KEY_FILE), read(KEY_NAME_FILE)
    if pem is None:
        _fail(checks, name, expected, "file missing", PUBLIC_KEY_FILE)
        return None
    try:
        public = load_pem_public_key(pem)
    except ValueError as exc:
        _fail(checks, name, expected, f"unreadable PEM: {exc}", PUBLIC_KEY_FILE)
        return None
    if not isinstance(public, Ed25519PublicKey):
        _fail(checks, name, expected, f"a {type(public).__name__}", PUBLIC_KEY_FILE)
        return None
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    found = hashlib.sha256(der).hexdigest()
    checks.append(CheckResult(name, pin is None or pin == found, expected, found, PUBLIC_KEY_FILE))
    key_name = (name_bytes or b"").decode("utf-8", "replace").strip()
    ok = bool(key_name) and not any(c.isspace() or c == "+" for c in key_name)
    checks.append(
        CheckResult(
            "7.2 key name present",
            ok,
            "the signed-note key name",
            key_name or "file missing or empty",
            KEY_NAME_FILE,
        )
    )
    return (public, key_name) if ok else None


def _check_entries(
    read: ReadFile, note: proofcheck.Note | None, checks: list[CheckResult]
) -> list[dict[str, Any]]:
    """Checks 8.x; the entries (parsed) whose file could be read."""
    data = read(PROOFS_FILE)
    name = "8. entries and inclusion proofs"
    if data is None:
        _fail(checks, name, "logbook/proofs.json", "file missing", PROOFS_FILE)
        return []
    try:
        proofs = json.loads(data)
        subjects = [s for s in proofs["subjects"] if isinstance(s, str)]
        listed = [e for e in proofs["entries"] if isinstance(e, dict)]
    except (ValueError, KeyError, TypeError) as exc:
        _fail(checks, name, "entries, proofs and subjects", f"unreadable: {exc}", PROOFS_FILE)
        return []
    if note is None:
        _fail(checks, name, "an authentic checkpoint", "none (see 7.x)", PROOFS_FILE)
    else:
        checks.extend(
            CheckResult(f"8. {c.name}", c.ok, c.expected, c.found, c.subject)
            for c in proofcheck.check_entries(proofs, note, read, subjects)
        )
    entries = []
    for item in listed:
        raw = read(str(item.get("file")))
        try:
            value = json.loads(raw) if raw is not None else None
        except ValueError:
            value = None
        if isinstance(value, dict):
            entries.append(value)
    return entries


def _manifest_unit_ids(manifest: bytes | None) -> set[str]:
    if manifest is None:
        return set()
    try:
        tree = parse_untrusted(manifest)
    except (ArchiveError, ValueError):
        return set()
    return {
        str(e.get("id"))
        for e in tree.iter()
        if isinstance(e.tag, str) and e.tag.rsplit("}", 1)[-1] == "ArchiveUnit" and e.get("id")
    }


def _manifest_system_ids(manifest: bytes | None) -> set[str]:
    """``Content/SystemId`` of the manifest's units: units archived by an earlier package
    that this one adds to."""
    if manifest is None:
        return set()
    try:
        tree = parse_untrusted(manifest)
    except (ArchiveError, ValueError):
        return set()
    return {
        (e.text or "").strip()
        for e in tree.iter()
        if isinstance(e.tag, str) and e.tag.rsplit("}", 1)[-1] == "SystemId"
    }


def _check_lifecycle(
    index: dict[str, Any],
    manifest: bytes | None,
    token: bytes | None,
    objects: list[_Declared] | None,
    entries: list[dict[str, Any]],
    checks: list[CheckResult],
    *,
    known: set[str] | None = None,
) -> None:
    package, transfer, unit = (
        index.get("package_id"),
        index.get("transfer_id"),
        index.get("unit_id"),
    )
    units = _manifest_unit_ids(manifest)
    object_ids = {o.id for o in objects or []}
    checks.append(
        CheckResult(
            "9.1 the unit is in the manifest",
            unit in units,
            f"ArchiveUnit {unit}",
            f"{len(units)} ArchiveUnit ids" + ("" if unit in units else f", not {unit}"),
            MANIFEST_FILE,
        )
    )
    bound = {str(k) for k in units | object_ids | {package, transfer}} | (known or set())
    strangers = sorted(
        {str(e.get("subject", {}).get("id")) for e in entries if isinstance(e.get("subject"), dict)}
        - bound
    )
    checks.append(
        CheckResult(
            "9.2 every entry's subject is the package, its transfer, or a unit or object of "
            "the manifest",
            not strangers and bool(entries),
            "subjects bound to this manifest",
            f"{len(entries)} entries"
            + (f"; unknown subjects {', '.join(strangers)}" if strangers else ""),
            PROOFS_FILE,
        )
    )

    destroyed = _destroyed(index)
    _check_package_entries(
        "",
        index,
        manifest,
        token,
        [o for o in objects or [] if o.uri not in destroyed],
        objects is None,
        entries,
        checks,
    )


def _check_package_entries(
    label: str,
    index: dict[str, Any],
    manifest: bytes | None,
    token: bytes | None,
    objects: list[_Declared],
    unreadable: bool,
    entries: list[dict[str, Any]],
    checks: list[CheckResult],
) -> None:
    """Checks 9.3-9.5 for one package (``label``: "" for the unit's own, ``v<n>`` for
    another package of the dossier)."""
    package, transfer = index.get("package_id"), index.get("transfer_id")
    # The dossier: a unit of the manifest, or (an addition) the unit it names by SystemId or
    # the dossier's root the bundle names.
    units = _manifest_unit_ids(manifest) | _manifest_system_ids(manifest)
    if isinstance(index.get("root_unit_id"), str):
        units.add(index["root_unit_id"])
    prefix = f"{label} " if label else ""

    def about(kind: str, subject: object) -> list[dict[str, Any]]:
        return [
            e
            for e in entries
            if e.get("type") == kind
            and e.get("outcome") == "OK"
            and isinstance(e.get("subject"), dict)
            and e["subject"].get("id") == subject
        ]

    digests = {
        "manifest_sha256": hashlib.sha256(manifest).hexdigest() if manifest else None,
        "token_sha256": hashlib.sha256(token).hexdigest() if token else None,
    }
    stamped = about("package.timestamped", package)
    found = [{k: (e.get("details") or {}).get(k) for k in digests} for e in stamped]
    checks.append(
        CheckResult(
            prefix + "9.3 package.timestamped entry = this manifest and token",
            any(f == digests for f in found),
            f"package {package}: {json.dumps(digests, sort_keys=True)}",
            json.dumps(found, sort_keys=True) if found else "no such entry",
            PROOFS_FILE,
        )
    )
    accepted = [
        e
        for root in units
        for e in about("transfer.accepted", root)
        if (e.get("details") or {}).get("package_id") == package
        and (e.get("details") or {}).get("transfer_id") == transfer
    ]
    checks.append(
        CheckResult(
            prefix + "9.4 transfer.accepted entry ties the transfer and package to the dossier",
            bool(accepted),
            f"transfer {transfer}, package {package}, subject a unit of the manifest",
            f"entry {accepted[0].get('id')}" if accepted else "no such entry",
            PROOFS_FILE,
        )
    )
    logged = [e.get("details") or {} for e in about("object.stored", package)]
    stored = {d.get("sha256") for d in logged}
    keys = {str(d.get("key")) for d in logged}
    # Without a SHA-256 in the manifest (a foreign transfer's: SHA-512), the object's copy
    # is found by its key, which ends with its Uri.
    missing = sorted(
        o.uri
        for o in objects or []
        if (o.sha256 is not None and o.sha256 not in stored)
        or (o.sha256 is None and not any(k.endswith("/" + o.uri) for k in keys))
    )
    checks.append(
        CheckResult(
            prefix + "9.5 object.stored entries for every object",
            not unreadable and not missing,
            f"{len(objects or [])} objects stored, each logged with its SHA-256",
            f"missing for {', '.join(missing)}" if missing else f"{len(objects or [])} logged",
            PROOFS_FILE,
        )
    )
