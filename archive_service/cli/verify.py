"""``archive-service verify DIR``: offline verification of a package written by ``get``.

No network, no settings, no database: the directory, the manifest it holds, the timestamp token
and the TSA chain are all that is needed (plus this program). The checklist itself is
:func:`archive_service.core.package_check.check_package`; this module only reads files and
prints. Exit codes:

- 0 every check holds and every object of the manifest is there;
- 1 a check failed (a missing, altered or unlisted file, a bad token…);
- 2 DIR is not a directory;
- 5 every check on what is there holds, but objects the manifest lists are absent because the
  server withheld them when ``get`` ran (listed in ``WITHHELD.json``, with why): the package is
  verified but incomplete, those objects are not.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from archive_service.core.model import CheckResult, VerificationReport
from archive_service.core.package_check import (
    CHAIN_FILE,
    CONTENT_DIR,
    MANIFEST_FILE,
    TOKEN_FILE,
    WITHHELD_CHECK,
    WITHHELD_FILE,
    WITHHELD_FOUND,
    check_package,
    is_withheld,
    safe_object_path,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 5


class PackageDirectory:
    """Read access to one package directory, confined to it (no symlink leaves it)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _inside(self, relative: str) -> Path | None:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def read(self, name: str) -> bytes | None:
        path = self._inside(name)
        return path.read_bytes() if path is not None else None

    def open_object(self, uri: str) -> BinaryIO | None:
        relative = safe_object_path(uri)
        if relative is None:
            return None
        path = self._inside(relative)
        return path.open("rb") if path is not None else None

    def content_listing(self) -> list[str]:
        """Every file (or link, or special file) under ``content/``, package-relative."""
        content = self.root / CONTENT_DIR
        listing: list[str] = []
        for root, dirs, files in os.walk(content):
            for name in files + [d for d in dirs if Path(root, d).is_symlink()]:
                listing.append(Path(root, name).relative_to(self.root).as_posix())
        return sorted(listing)

    def content_bytes(self) -> int:
        total = 0
        for relative in self.content_listing():
            path = self._inside(relative)
            if path is not None:
                total += path.stat().st_size
        return total


def verify(
    directory: Annotated[
        Path, typer.Argument(help="Package directory, as written by `get`.", show_default=False)
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the checklist as JSON on stdout.")
    ] = False,
) -> None:
    """Verify a package offline: manifest, timestamp token, every object's size and digests.

    Exit 0 all checks hold; 1 a check failed; 2 DIR is not a directory; 5 all checks on the
    files present hold but some objects were withheld by the server when `get` ran (not
    communicable yet, or gone), as WITHHELD.json lists: verified but incomplete.
    """
    err = Console(stderr=True, highlight=False)
    if not directory.is_dir():
        err.print(f"[bold red]Error:[/] {escape(str(directory))} is not a directory")
        raise typer.Exit(EXIT_USAGE)
    package = PackageDirectory(directory)
    report = run_checks(package, err)
    if json_output:
        sys.stdout.write(json.dumps(report_json(directory, report), ensure_ascii=False, indent=2))
        sys.stdout.write("\n")
    else:
        print_report(Console(highlight=False), directory, report)
    failures, withheld = split_failures(report)
    if json_output:
        for check in failures:
            err.print(f"FAILED {escape(check.name)}: {escape(check.subject or '-')}")
        for check in withheld:
            err.print(f"WITHHELD {escape(check.subject or '-')}: {escape(check.found)}")
    if failures or not report.checks:
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_PARTIAL if withheld else EXIT_OK)


def split_failures(report: VerificationReport) -> tuple[list[CheckResult], list[CheckResult]]:
    """The failed checks, and apart from them the objects the server withheld."""
    withheld = [c for c in report.failures if is_withheld(c)]
    return [c for c in report.failures if not is_withheld(c)], withheld


def run_checks(package: PackageDirectory, err: Console) -> VerificationReport:
    progress = Progress(
        TextColumn("Verifying"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with progress:
        task = progress.add_task("verify", total=package.content_bytes())

        def open_object(uri: str) -> BinaryIO | None:
            stream = package.open_object(uri)
            if stream is None:
                return None
            return progress.wrap_file(stream, task_id=task)

        return check_package(
            package.read(MANIFEST_FILE),
            package.read(TOKEN_FILE),
            package.read(CHAIN_FILE),
            open_object,
            content_listing=package.content_listing(),
            withheld_list=package.read(WITHHELD_FILE),
        )


def report_json(directory: Path, report: VerificationReport) -> dict[str, Any]:
    """``ok``: the package is verified whole; ``failures``: failed checks; ``withheld``: the
    objects absent because the server withheld them (never verified, never a failure)."""
    failures, withheld = split_failures(report)
    return {
        "directory": str(directory),
        "ok": report.ok,
        "checks": [
            {
                "name": c.name,
                "ok": c.ok,
                "expected": c.expected,
                "found": c.found,
                "subject": c.subject,
                **({"withheld": True} if is_withheld(c) else {}),
            }
            for c in report.checks
        ],
        "failures": [c.name for c in failures],
        "withheld": [{"uri": c.subject, "name": c.name, "why": c.found} for c in withheld],
    }


def print_report(console: Console, directory: Path, report: VerificationReport) -> None:
    table = Table(title=f"Package {escape(str(directory))}", show_lines=False, expand=False)
    table.add_column("Check", overflow="fold")
    table.add_column("File", overflow="fold")
    table.add_column("Expected", overflow="fold")
    table.add_column("Found", overflow="fold")
    table.add_column("Result", no_wrap=True)
    for check in report.checks:
        expected, found = check.expected, check.found
        if check.ok:  # the full values are in --json; a failure shows them in full here too
            expected, found = _shorten(expected), _shorten(found)
        table.add_row(
            escape(check.name),
            escape(check.subject or ""),
            escape(expected),
            escape(found),
            _verdict(check),
        )
    console.print(table)
    failures, withheld = split_failures(report)
    if report.ok:
        console.print(f"[bold green]All {len(report.checks)} checks hold.[/]")
        return
    checked = len(report.checks) - len(withheld)
    if failures:
        console.print(f"[bold red]{len(failures)} of {checked} check(s) failed:[/]")
        for check in failures:
            where = check.subject or "(package)"
            console.print(
                f"  - {escape(where)}: {escape(check.name)}; expected {escape(check.expected)}, "
                f"found {escape(check.found)}",
                soft_wrap=True,
            )
    elif report.checks:
        console.print(
            f"[bold green]All {checked} checks on the files present hold[/] "
            f"[bold yellow]but the package is incomplete:[/]"
        )
    if withheld:
        console.print(
            f"[bold yellow]{len(withheld)} object(s) withheld by the server when `get` ran "
            f"(see {WITHHELD_FILE}), not verified:[/]"
        )
        for check in withheld:
            label = check.name.removeprefix(WITHHELD_CHECK + " — ")
            why = check.found.removeprefix(WITHHELD_FOUND)
            console.print(
                f"  - {escape(check.subject or '')} ({escape(label)}): {escape(why)}",
                soft_wrap=True,
            )


def _verdict(check: CheckResult) -> str:
    if check.ok:
        return "[green]OK[/]"
    return "[bold yellow]WITHHELD[/]" if is_withheld(check) else "[bold red]FAILED[/]"


_LONG_HEX = re.compile(r"\b(?=[0-9]*[a-f])[0-9a-f]{24,}\b")


def _shorten(text: str) -> str:
    return _LONG_HEX.sub(lambda m: m.group(0)[:16] + "…", text)


def register(app: typer.Typer) -> None:
    """Add ``verify`` to the CLI."""
    app.command("verify")(verify)
