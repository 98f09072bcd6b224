"""Offline verification of an exported package, as ``archive-service get`` lays it out.

A package directory holds ``manifest.xml`` (the SEDA ``ArchiveTransfer``), ``timestamp.tsr``
(the RFC 3161 ``TimeStampResp`` over the manifest's SHA-256), ``tsa-chain.pem`` (the TSA's
certificate chain), ``unit.json`` (informative, not verified) and one file per
``BinaryDataObject`` at its ``Uri`` (``content/obj-…``).

:func:`check_package` runs a numbered checklist that fails closed (DESIGN §6.2):

1. the manifest parses and its SEDA version is detected;
2. a timestamp token and a chain are present, the token's imprint equals the digest of the exact
   manifest bytes, and the token verifies against the chain (RFC 3161 §2.4.2);
3. for every ``BinaryDataObject``: the file exists, its size and its SHA-256 (and SHA-512 when
   the manifest gives one) equal what the manifest declares;
4. no file under ``content/`` that the manifest does not list;
5. when ``WITHHELD.json`` is there (``get`` writes it when the server refused some objects to
   the caller: not communicable yet, or destroyed/transferred), it is well formed and names only
   objects of the manifest.

An object missing from ``content/`` that ``WITHHELD.json`` names is reported as *withheld*
(check ``3.0``, never a pass: the list is the server's word at download time, not covered by
the token); any other missing object is a failed ``3.1``. :func:`is_withheld` tells such a line
from a failure, so a caller can say "verified, but incomplete".

The manifest carries every object's digest and the token seals the manifest, so checks 2 and 3
together prove that every byte is the one archived at the token's time.

This module is pure: it reads nothing by itself. The caller passes the bytes, a callable that
opens one object by its ``Uri``, and the listing of what sits under ``content/``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from archive_service.core.fingerprint import fingerprint_stream
from archive_service.core.model import CheckResult, Fingerprint, VerificationReport
from archive_service.core.seda.parse import ParsedDataObject, read_manifest
from archive_service.core.timestamp import HASH_ALGORITHMS, token_info, verify_timestamp
from archive_service.errors import ArchiveError

#: File names of an exported package (the layout ``archive-service get`` writes).
MANIFEST_FILE = "manifest.xml"
TOKEN_FILE = "timestamp.tsr"  # noqa: S105 (a file name, not a secret)
CHAIN_FILE = "tsa-chain.pem"
UNIT_FILE = "unit.json"
CONTENT_DIR = "content"
WITHHELD_FILE = "WITHHELD.json"
"""What ``get`` could not download: ``{"objects": [{"uri": …, "summary": …, …}, …]}``."""
WITHHELD_CHECK = "3.0 withheld"
WITHHELD_FOUND = "withheld by the server, not verified: "

#: Opens one object by its manifest ``Uri``; ``None`` when there is no such file. The stream
#: returned is closed by :func:`check_package`.
OpenObject = Callable[[str], BinaryIO | None]

_URI_SEGMENT = re.compile(r"^[^\x00-\x1f\\:]+$")


def safe_object_path(uri: str) -> str | None:
    """The ``Uri`` as a relative POSIX path under ``content/``, or ``None`` if it is unsafe.

    Refused: absolute paths, ``.`` and ``..`` segments, empty segments, backslashes, drive
    letters, control characters, and anything outside ``content/``. A package written from a
    hostile manifest must not escape its directory nor overwrite ``manifest.xml``.
    """
    if not uri or uri.startswith("/"):
        return None
    segments = uri.split("/")
    if len(segments) < 2 or segments[0] != CONTENT_DIR:
        return None
    for segment in segments:
        if segment in ("", ".", "..") or not _URI_SEGMENT.match(segment):
            return None
    return uri


@dataclass(frozen=True, slots=True)
class _Object:
    """What the manifest declares about one ``BinaryDataObject``, normalised."""

    id: str
    uri: str | None
    filename: str | None
    size: int | None
    declared: str
    """``MessageDigest`` as written: algorithm and value, for messages."""
    digest: Fingerprint | None
    """``MessageDigest`` as a fingerprint; ``None`` if absent, malformed or unsupported."""
    sha512: Fingerprint | None
    """The SHA-512 of our extension, when ``MessageDigest`` is not already SHA-512."""

    @property
    def label(self) -> str:
        return self.filename or self.id or "(object without id)"

    @classmethod
    def of(cls, parsed: ParsedDataObject) -> _Object:
        digest = parsed.fingerprint
        sha512 = parsed.sha512_fingerprint
        if digest is not None and digest.algorithm == "sha512":
            sha512 = None
        return cls(
            id=parsed.id,
            uri=parsed.uri,
            filename=parsed.filename,
            size=parsed.size,
            declared=f"{parsed.digest_algorithm or 'no algorithm'} "
            f"{parsed.digest or '(no MessageDigest)'}",
            digest=digest,
            sha512=sha512,
        )


def check_package(
    manifest: bytes | None,
    token: bytes | None,
    chain_pem: bytes | None,
    open_object: OpenObject | None,
    *,
    content_listing: Iterable[str] | None = None,
    withheld_list: bytes | None = None,
) -> VerificationReport:
    """Verify an exported package; every check names what it expected and what it found.

    ``manifest``, ``token`` and ``chain_pem`` are the bytes of ``manifest.xml``,
    ``timestamp.tsr`` and ``tsa-chain.pem`` (``None`` when a file is missing: a failed check,
    never a skipped one). ``content_listing`` is every file present under ``content/``, as
    package-relative POSIX paths (``content/obj-…``); when it is ``None`` the caller has no
    listing and check 4 is not run (the CLI always passes one). ``open_object`` ``None``: the
    objects are not at hand (an evidence bundle without them) and check 3 is not run; the
    caller checks what stands for them (``core.evidence_check``: the SHA256SUMS files).
    ``withheld_list``: the bytes of ``WITHHELD.json`` when the directory has one (check 5).
    """
    checks: list[CheckResult] = []
    objects = _check_manifest(manifest, checks)
    check_timestamp(manifest, token, chain_pem, checks)
    withheld: dict[str, str] = {}
    withheld_problem: str | None = None
    if withheld_list is not None:
        try:
            withheld = read_withheld(withheld_list)
        except ValueError as exc:
            withheld_problem = str(exc)
    if objects is not None and open_object is not None:
        for obj in objects:
            _check_object(obj, open_object, checks, withheld)
    if content_listing is not None:
        _check_unlisted(objects, content_listing, checks)
    if withheld_list is not None:
        _check_withheld_list(objects, withheld, withheld_problem, checks)
    return VerificationReport(tuple(checks))


def is_withheld(check: CheckResult) -> bool:
    """A line for an object the server withheld (not a corruption, but never a pass)."""
    return check.name.startswith(WITHHELD_CHECK + " ")


def read_withheld(data: bytes) -> dict[str, str]:
    """``WITHHELD.json`` as ``{uri: why}``; ``ValueError`` naming what is wrong with it."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    entries = document.get("objects") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('no "objects" list')
    out: dict[str, str] = {}
    for number, entry in enumerate(entries):
        uri = entry.get("uri") if isinstance(entry, dict) else None
        summary = entry.get("summary") if isinstance(entry, dict) else None
        if not isinstance(uri, str) or not isinstance(summary, str):
            raise ValueError(f'objects[{number}] has no "uri" and "summary" strings')
        out[uri] = summary
    return out


def _check_withheld_list(
    objects: Sequence[_Object] | None,
    withheld: dict[str, str],
    problem: str | None,
    checks: list[CheckResult],
) -> None:
    name = f"5. {WITHHELD_FILE} names objects of the manifest"
    expected = "a list of objects of the manifest"
    if problem is not None:
        checks.append(CheckResult(name, False, expected, problem, WITHHELD_FILE))
        return
    listed = {o.uri for o in objects or () if o.uri is not None}
    strangers = sorted(set(withheld) - listed)
    if objects is None or strangers:
        found = "manifest unreadable" if objects is None else f"unknown: {', '.join(strangers)}"
        checks.append(CheckResult(name, False, expected, found, WITHHELD_FILE))
        return
    checks.append(
        CheckResult(name, True, expected, f"{len(withheld)} object(s) withheld", WITHHELD_FILE)
    )


def _check_manifest(manifest: bytes | None, checks: list[CheckResult]) -> list[_Object] | None:
    name = "1. manifest parses"
    expected = "a SEDA 2.x ArchiveTransfer"
    if manifest is None:
        checks.append(CheckResult(name, False, expected, "file missing", MANIFEST_FILE))
        return None
    try:
        parsed = read_manifest(manifest)
    except (ArchiveError, ValueError) as exc:
        checks.append(CheckResult(name, False, expected, _reason(exc), MANIFEST_FILE))
        return None

    objects = [_Object.of(raw) for raw in parsed.objects]
    problems: list[str] = []
    ids = [o.id for o in objects]
    uris = [o.uri for o in objects if o.uri is not None]
    if len(set(ids)) != len(ids):
        problems.append("duplicate BinaryDataObject ids")
    if len(set(uris)) != len(uris):
        problems.append("two BinaryDataObjects share one Uri")
    found = (
        f"SEDA {parsed.version}, message {parsed.message_identifier}, "
        f"{len(objects)} binary object(s)"
    )
    if problems:
        checks.append(
            CheckResult(name, False, expected, f"{found}; {'; '.join(problems)}", MANIFEST_FILE)
        )
        return objects
    checks.append(CheckResult(name, True, expected, found, MANIFEST_FILE))
    return objects


def check_timestamp(
    manifest: bytes | None,
    token: bytes | None,
    chain_pem: bytes | None,
    checks: list[CheckResult],
    *,
    number: str = "2",
    data_file: str = MANIFEST_FILE,
    token_file: str = TOKEN_FILE,
    chain_file: str = CHAIN_FILE,
) -> None:
    """Checks ``<number>.1``-``<number>.3``: token and chain present, imprint = digest of the
    data (``manifest``: the bytes of ``data_file``), token signed by the chain (RFC 3161
    §2.4.2). Evidence bundles run it on the manifest and on the logbook checkpoint's note."""
    present = f"{number}.1 token and TSA chain present"
    if token is None or chain_pem is None:
        if token is None:
            checks.append(
                CheckResult(present, False, "an RFC 3161 token", "file missing", token_file)
            )
        if chain_pem is None:
            checks.append(
                CheckResult(present, False, "the TSA certificate chain", "file missing", chain_file)
            )
        return

    try:
        info = token_info(token)
    except (ArchiveError, ValueError) as exc:
        checks.append(CheckResult(present, False, "a DER TimeStampResp", _reason(exc), token_file))
        return
    checks.append(
        CheckResult(
            present,
            True,
            "an RFC 3161 token",
            f"present (serial {info.serial_number})",
            token_file,
        )
    )

    imprint = f"{number}.2 token imprint = digest of {data_file}"
    found_imprint = f"{info.hash_algorithm}:{info.message_imprint.hex()}"
    imprint_ok = False
    if manifest is None:
        checks.append(CheckResult(imprint, False, data_file, "file missing", data_file))
    else:
        if info.hash_algorithm not in HASH_ALGORITHMS:
            checks.append(
                CheckResult(
                    imprint,
                    False,
                    " or ".join(sorted(HASH_ALGORITHMS)),
                    f"unsupported hash algorithm {info.hash_algorithm}",
                    token_file,
                )
            )
        else:
            digest = hashlib.new(info.hash_algorithm, manifest).digest()
            imprint_ok = digest == info.message_imprint
            checks.append(
                CheckResult(
                    imprint,
                    imprint_ok,
                    f"{info.hash_algorithm}:{digest.hex()}",
                    found_imprint,
                    data_file,
                )
            )

    # 2.3 is the authoritative end-to-end verification (imprint, signature, chain at genTime)
    # when the imprint matched; when it did not, the token alone is still checked (over its own
    # imprint) so the report tells a forged token from a modified manifest.
    signature = f"{number}.3 token signed by the TSA chain"
    try:
        if imprint_ok and manifest is not None:
            verified = verify_timestamp(token, message=manifest, chain_pem=chain_pem)
        elif info.hash_algorithm == "sha256":
            verified = verify_timestamp(token, digest=info.message_imprint, chain_pem=chain_pem)
        else:
            return  # 2.2 already failed; the report cannot pass
    except (ArchiveError, ValueError) as exc:
        checks.append(
            CheckResult(
                signature,
                False,
                "a valid signature by a certificate of the chain",
                _reason(exc),
                token_file,
            )
        )
        return
    checks.append(
        CheckResult(
            signature,
            True,
            "a valid signature by a certificate of the chain",
            f"signed at {verified.gen_time.isoformat()}"
            + (f" by {verified.tsa_name}" if verified.tsa_name else ""),
            token_file,
        )
    )


def _check_object(
    obj: _Object,
    open_object: OpenObject,
    checks: list[CheckResult],
    withheld: Mapping[str, str] | None = None,
) -> None:
    label = obj.label
    present = f"3.1 present — {label}"
    path = safe_object_path(obj.uri) if obj.uri is not None else None
    if path is None:
        checks.append(
            CheckResult(present, False, "a relative Uri under content/", f"unsafe Uri {obj.uri!r}")
        )
        return
    try:
        stream = open_object(path)
    except OSError as exc:
        checks.append(CheckResult(present, False, "a readable file", _reason(exc), path))
        return
    if stream is None:
        if withheld and path in withheld:
            checks.append(
                CheckResult(
                    f"{WITHHELD_CHECK} — {label}",
                    False,
                    "a file",
                    WITHHELD_FOUND + withheld[path],
                    path,
                )
            )
            return
        checks.append(CheckResult(present, False, "a file", "missing", path))
        return
    try:
        with stream:
            prints = fingerprint_stream(stream)
    except OSError as exc:
        checks.append(CheckResult(present, False, "a readable file", _reason(exc), path))
        return
    checks.append(CheckResult(present, True, "a file", "present", path))

    size = f"3.2 size — {label}"
    if obj.size is None:
        checks.append(CheckResult(size, True, "(no Size in manifest)", f"{prints.size} B", path))
    else:
        checks.append(
            CheckResult(size, prints.size == obj.size, f"{obj.size} B", f"{prints.size} B", path)
        )

    computed = {"sha256": prints.sha256, "sha512": prints.sha512}
    if obj.digest is None:
        checks.append(
            CheckResult(
                f"3.3 MessageDigest — {label}",
                False,
                "a SHA-256 or SHA-512 MessageDigest",
                f"unsupported or malformed: {obj.declared}",
                path,
            )
        )
    else:
        value = computed[obj.digest.algorithm]
        checks.append(
            CheckResult(
                f"3.3 {obj.digest.seda_algorithm} — {label}",
                value == obj.digest,
                obj.digest.digest,
                value.digest,
                path,
            )
        )
    if obj.sha512 is not None:
        checks.append(
            CheckResult(
                f"3.4 SHA-512 — {label}",
                prints.sha512 == obj.sha512,
                obj.sha512.digest,
                prints.sha512.digest,
                path,
            )
        )


def _check_unlisted(
    objects: Sequence[_Object] | None, listing: Iterable[str], checks: list[CheckResult]
) -> None:
    name = "4. no unlisted file under content/"
    if objects is None:
        checks.append(
            CheckResult(name, False, "files listed by the manifest", "manifest unreadable")
        )
        return
    listed = {o.uri for o in objects if o.uri is not None}
    extra = sorted(set(listing) - listed)
    if not extra:
        checks.append(
            CheckResult(name, True, "only listed files", "only listed files", CONTENT_DIR)
        )
        return
    for path in extra:
        checks.append(CheckResult(name, False, "not in the package", "unlisted file", path))


def _reason(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, ArchiveError) else str(exc)
    return message or type(exc).__name__
