"""Checks of an evidence bundle's logbook part with the Python standard library alone.

Shipped in every evidence bundle as ``verify_proofs.py``, next to copies of ``merkle.py`` and
``canonical.py``, so that an auditor can run ``python3 -I verify_proofs.py`` in the extracted
bundle without this project or any package installed. ``archive-verify`` runs the same
functions (imported from the package), so the two can never disagree.

For each entry listed in ``logbook/proofs.json``:

1. its file holds RFC 8785 canonical JSON (parsing it and writing it canonically gives back
   the very same bytes);
2. its leaf hash, SHA-256(0x00 || bytes) (RFC 9162 §2.1.1), is the one listed;
3. its inclusion proof leads to the root of the checkpoint (RFC 9162 §2.1.3.2) at the
   checkpoint's tree size;
4. it belongs to the checkpoint's log (its ``tenant`` ends the checkpoint's origin) and is
   about one of the bundle's subjects.

The checkpoint's *signature* (Ed25519) and its RFC 3161 token are checked with ``openssl``
(``VERIFY.md``) or ``archive-verify``; this script only reads the note's body, and checks that
the ``checkpoint.body`` and ``checkpoint.sig`` files given to ``openssl`` are the note's.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__:
    import archive_service.core.logbook.canonical as _canonical
    import archive_service.core.logbook.merkle as _merkle
else:  # run from an extracted evidence bundle: merkle.py and canonical.py sit beside this file

    def _load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        if spec is None or spec.loader is None:
            raise SystemExit(f"{name}.py is missing beside {Path(__file__).name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    _canonical = _load("canonical")
    _merkle = _load("merkle")

PROOFS_FILE = "logbook/proofs.json"
NOTE_FILE = "logbook/checkpoint.note"
BODY_FILE = "logbook/checkpoint.body"
SIGNATURE_FILE = "logbook/checkpoint.sig"
SIGNATURE_PREFIX = "\u2014 "  # signed-note signature lines start with an EM DASH and a space

#: Reads one file of the bundle by its bundle-relative path; ``None`` when it is absent.
ReadFile = Callable[[str], bytes | None]


@dataclass(frozen=True)
class Check:
    """One line of the checklist (the same fields as ``core.model.CheckResult``)."""

    name: str
    ok: bool
    expected: str
    found: str
    subject: str | None = None


@dataclass(frozen=True)
class Note:
    """A signed note split in its parts, nothing verified: the body's three lines, the body
    bytes (what is signed) and each signature line's name and decoded bytes."""

    origin: str
    size: int
    root: bytes
    body: bytes
    signatures: tuple[tuple[str, bytes], ...]


def parse_note(note: bytes) -> Note:
    """Split a C2SP signed note holding a tlog checkpoint; ValueError when malformed."""
    text = note.decode("utf-8")
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise ValueError("not a signed note: no blank line before the signatures")
    body, block = text[: split + 1], text[split + 2 : -1]
    lines = body[:-1].split("\n")
    if len(lines) != 3 or not lines[1].isdigit() or (lines[1] != "0" and lines[1][0] == "0"):
        raise ValueError("the note's body is not 'origin / size / base64 root'")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise ValueError("the note's root is not base64") from None
    if len(root) != 32:
        raise ValueError(f"the note's root is {len(root)} bytes, expected 32")
    signatures = []
    for line in block.split("\n"):
        fields = line[len(SIGNATURE_PREFIX) :].split(" ")
        if not line.startswith(SIGNATURE_PREFIX) or len(fields) != 2:
            raise ValueError(f"signature line {line!r} is not '\u2014 <name> <base64>'")
        try:
            signatures.append((fields[0], base64.b64decode(fields[1], validate=True)))
        except binascii.Error:
            raise ValueError(f"signature of {fields[0]!r} is not base64") from None
    return Note(lines[0], int(lines[1]), root, body.encode("utf-8"), tuple(signatures))


def check_note_files(note: Note, read: ReadFile) -> list[Check]:
    """``checkpoint.body`` and ``checkpoint.sig`` (given to ``openssl pkeyutl``) are exactly
    the note's body and the 64 signature bytes after the 4-byte key id."""
    checks = []
    body = read(BODY_FILE)
    checks.append(
        Check(
            "checkpoint.body = the signed note's body",
            body == note.body,
            f"{len(note.body)} bytes, sha256 {_sha256(note.body)}",
            "file missing" if body is None else f"{len(body)} bytes, sha256 {_sha256(body)}",
            BODY_FILE,
        )
    )
    sig = read(SIGNATURE_FILE)
    ours = [raw[4:] for _name, raw in note.signatures]
    checks.append(
        Check(
            "checkpoint.sig = the note's signature",
            sig is not None and sig in ours,
            " or ".join(s.hex() for s in ours) or "(no signature)",
            "file missing" if sig is None else sig.hex(),
            SIGNATURE_FILE,
        )
    )
    return checks


def check_entries(
    proofs: dict[str, Any], note: Note, read: ReadFile, subjects: Iterable[str]
) -> list[Check]:
    """Checks 1-4 of the module docstring for every entry of ``proofs`` (``proofs.json``),
    against the checkpoint ``note``; one failed check per problem, each naming the file."""
    checks: list[Check] = []
    allowed = set(subjects)
    tenant = note.origin.rsplit("/", 1)[-1]
    size_ok = proofs.get("tree_size") == note.size and proofs.get("root") == note.root.hex()
    checks.append(
        Check(
            "proofs.json is for the checkpoint",
            size_ok,
            f"tree size {note.size}, root {note.root.hex()}",
            f"tree size {proofs.get('tree_size')}, root {proofs.get('root')}",
            PROOFS_FILE,
        )
    )
    entries = proofs.get("entries")
    if not isinstance(entries, list) or not entries:
        checks.append(Check("entries listed", False, "at least one entry", "none", PROOFS_FILE))
        return checks
    for item in entries:
        checks.extend(_check_entry(item, note, read, tenant, allowed))
    return checks


def _check_entry(
    item: Any, note: Note, read: ReadFile, tenant: str, allowed: set[str]
) -> list[Check]:
    if not isinstance(item, dict) or not isinstance(item.get("file"), str):
        return [Check("entry listed", False, "an object with a file", repr(item), PROOFS_FILE)]
    path: str = item["file"]
    label = f"entry {item.get('id')}"
    data = read(path)
    if data is None:
        return [Check(f"{label}: file present", False, "a file", "missing", path)]
    checks = []
    try:
        value = json.loads(data)
        again = _canonical.canonical_json(value)
    except ValueError as exc:
        return [Check(f"{label}: canonical JSON", False, "RFC 8785 JSON", str(exc), path)]
    checks.append(
        Check(
            f"{label}: canonical JSON (RFC 8785)",
            again == data,
            f"sha256 {_sha256(again)}",
            f"sha256 {_sha256(data)}",
            path,
        )
    )
    leaf = _merkle.leaf_hash(data)
    listed = str(item.get("leaf_hash"))
    checks.append(
        Check(
            f"{label}: leaf hash SHA-256(0x00 || entry)",
            leaf.hex() == listed,
            listed,
            leaf.hex(),
            path,
        )
    )
    checks.append(_inclusion(label, path, item, leaf, note))
    about = value.get("subject", {}) if isinstance(value, dict) else {}
    found = (
        f"tenant {value.get('tenant') if isinstance(value, dict) else None}, "
        f"id {value.get('id') if isinstance(value, dict) else None}, "
        f"subject {about.get('id') if isinstance(about, dict) else None}"
    )
    belongs = (
        isinstance(value, dict)
        and value.get("tenant") == tenant
        and value.get("id") == item.get("id")
        and isinstance(about, dict)
        and about.get("id") in allowed
    )
    checks.append(
        Check(
            f"{label}: about this unit",
            belongs,
            f"tenant {tenant}, id {item.get('id')}, subject one of the bundle's",
            found,
            path,
        )
    )
    return checks


def _inclusion(label: str, path: str, item: dict[str, Any], leaf: bytes, note: Note) -> Check:
    name = f"{label}: inclusion proof to the checkpoint root (RFC 9162)"
    expected = f"root {note.root.hex()} at size {note.size}"
    try:
        index = item["leaf_index"]
        proof = [bytes.fromhex(h) for h in item["proof"]]
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"leaf_index {index!r} is not an integer")
        _merkle.verify_inclusion(leaf, index, note.size, proof, note.root)
    except (KeyError, TypeError, ValueError) as exc:
        found = getattr(exc, "found", None)
        text = f"root {found.hex()}" if isinstance(found, bytes) else str(exc) or repr(exc)
        return Check(name, False, expected, text, path)
    return Check(name, True, expected, f"leaf {index}: {len(proof)} hashes lead to it", path)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def run(directory: Path) -> list[Check]:
    """Every check above on an extracted bundle."""

    def read(name: str) -> bytes | None:
        path = directory / name
        return path.read_bytes() if path.is_file() else None

    note_bytes = read(NOTE_FILE)
    proofs_bytes = read(PROOFS_FILE)
    if note_bytes is None or proofs_bytes is None:
        missing = NOTE_FILE if note_bytes is None else PROOFS_FILE
        return [Check("file present", False, "a file", "missing", missing)]
    try:
        note = parse_note(note_bytes)
        proofs = json.loads(proofs_bytes)
        subjects: Sequence[str] = proofs["subjects"]
    except (ValueError, KeyError, TypeError) as exc:
        return [Check("note and proofs.json parse", False, "well-formed", str(exc), NOTE_FILE)]
    return [*check_note_files(note, read), *check_entries(proofs, note, read, subjects)]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    directory = Path(args[0]) if args else Path(__file__).resolve().parent
    checks = run(directory)
    for c in checks:
        print(f"[{'OK' if c.ok else 'FAILED'}] {c.name} ({c.subject or '-'})")
        if not c.ok:
            print(f"    expected: {c.expected}\n    found:    {c.found}")
    failed = [c for c in checks if not c.ok]
    print(
        f"{len(checks) - len(failed)} of {len(checks)} checks hold"
        + ("." if not failed else "; FAILED.")
    )
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    raise SystemExit(main())
