"""``archive-verify bundle.zip [--objects DIR] [--json]``: the standalone verifier of evidence
bundles (issue 4 item 6).

Runs without database, storage, network or settings, and imports only what it needs: the
standard library, ``cryptography`` (Ed25519, X.509), ``asn1crypto`` and ``rfc3161-client``
(RFC 3161 tokens), ``lxml`` (the SEDA manifest) and the project's pure core
(``core.evidence_check``, ``core.package_check``, ``core.logbook``, ``core.timestamp``). A
test imports it with those others poisoned (``tests/integration/test_evidence.py``).

Every check is printed with what it expected and what it found; the checklist fails closed.
Exit 0 only if every check holds, 1 if any fails, 2 if the bundle cannot be opened at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

from archive_service.core.evidence_check import Pins, check_bundle, fingerprint
from archive_service.core.model import VerificationReport
from archive_service.core.package_check import CONTENT_DIR, safe_object_path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
MAX_SMALL_FILE = 256 * 1024 * 1024
"""Files other than objects are read in memory: refuse a bundle claiming more."""


class Bundle:
    """Read access to the zip: every member by its name, refusing duplicate or unsafe names."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path)
        names = [i.filename for i in self.zip.infolist() if not i.is_dir()]
        self.duplicates = sorted({n for n in names if names.count(n) > 1})
        self.names = set(names)

    def read(self, name: str) -> bytes | None:
        if name not in self.names or name in self.duplicates:
            return None
        info = self.zip.getinfo(name)
        if info.file_size > MAX_SMALL_FILE:
            return None
        return self.zip.read(info)

    def open_object(self, uri: str) -> BinaryIO | None:
        if safe_object_path(uri) is None or uri not in self.names:
            return None
        stream: IO[bytes] = self.zip.open(uri)
        return stream  # type: ignore[return-value]

    def content_listing(self) -> list[str]:
        return sorted(n for n in self.names if n.startswith(f"{CONTENT_DIR}/"))


class ObjectsDirectory:
    """The objects as ``archive-service get`` wrote them: ``DIR/content/…``, confined to DIR."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def open_object(self, uri: str) -> BinaryIO | None:
        if safe_object_path(uri) is None:
            return None
        path = (self.root / uri).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path.open("rb")

    def content_listing(self) -> list[str]:
        base = self.root / CONTENT_DIR
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if not p.is_dir()
        )


def verify(
    path: Path,
    objects: Path | None = None,
    pins: Pins = Pins(),  # noqa: B008
) -> VerificationReport:
    """The checklist of ``core.evidence_check`` on a bundle file (and an objects directory)."""
    bundle = Bundle(path)
    source: Bundle | ObjectsDirectory | None
    if objects is not None:
        source = ObjectsDirectory(objects)
    elif bundle.content_listing():
        source = bundle
    else:
        source = None
    report = check_bundle(
        bundle.read,
        None if source is None else source.open_object,
        content_listing=None if source is None else source.content_listing(),
        pins=pins,
    )
    if bundle.duplicates:
        from archive_service.core.model import CheckResult

        extra = CheckResult(
            "0. no duplicate names in the zip",
            False,
            "each name once",
            ", ".join(bundle.duplicates),
            str(path),
        )
        return VerificationReport((extra, *report.checks))
    return report


def _as_json(path: Path, report: VerificationReport) -> dict[str, Any]:
    return {
        "bundle": str(path),
        "ok": report.ok,
        "checks": [
            {"name": c.name, "ok": c.ok, "expected": c.expected, "found": c.found,
             "subject": c.subject}
            for c in report.checks
        ],
        "failures": [c.name for c in report.failures],
    }  # fmt: skip


def _print(path: Path, report: VerificationReport, objects_checked: bool) -> None:
    out = sys.stdout
    out.write(f"Evidence bundle {path}\n")
    for c in report.checks:
        out.write(
            f"[{'OK' if c.ok else 'FAILED'}] {c.name}"
            + (f"  ({c.subject})" if c.subject else "")
            + "\n"
        )
        out.write(f"    expected: {c.expected}\n    found:    {c.found}\n")
    if not objects_checked:
        out.write(
            "Objects not checked: the bundle holds none; give --objects DIR (the directory "
            "`archive-service get` wrote) to check them against the manifest.\n"
        )
    failures = report.failures
    if report.ok:
        out.write(f"All {len(report.checks)} checks hold.\n")
        return
    out.write(f"{len(failures)} of {len(report.checks)} check(s) FAILED:\n")
    for c in failures:
        out.write(
            f"  - {c.subject or '(bundle)'}: {c.name}; expected {c.expected}, found {c.found}\n"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="archive-verify",
        description="Verify an archive-service evidence bundle offline (no server, no database).",
    )
    parser.add_argument("bundle", type=Path, help="the evidence zip")
    parser.add_argument(
        "--objects", type=Path, help="directory holding content/… as `archive-service get` wrote"
    )
    parser.add_argument("--json", action="store_true", help="print the checklist as JSON")
    parser.add_argument(
        "--tsa-fingerprint", help="SHA-256 of the TSA root certificate (DER), obtained out of band"
    )
    parser.add_argument(
        "--key-fingerprint", help="SHA-256 of the logbook public key (DER), obtained out of band"
    )
    args = parser.parse_args(argv)
    if args.objects is not None and not args.objects.is_dir():
        sys.stderr.write(f"archive-verify: {args.objects} is not a directory\n")
        return EXIT_USAGE
    pins = Pins(fingerprint(args.tsa_fingerprint), fingerprint(args.key_fingerprint))
    try:
        report = verify(args.bundle, args.objects, pins)
    except (OSError, zipfile.BadZipFile) as exc:
        sys.stderr.write(f"archive-verify: cannot read {args.bundle}: {exc}\n")
        if args.json:
            sys.stdout.write(
                json.dumps({"bundle": str(args.bundle), "ok": False, "error": str(exc)}) + "\n"
            )
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(
            json.dumps(_as_json(args.bundle, report), ensure_ascii=False, indent=2) + "\n"
        )
    else:
        objects_checked = any(c.name.startswith("3.") for c in report.checks)
        _print(args.bundle, report, objects_checked)
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
