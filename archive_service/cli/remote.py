"""Client side of the CLI: ``ingest`` (verser un dossier) and ``get`` (communiquer un paquet).

Both talk to the HTTP API (``/v1``) with a bearer key, stream files in both directions (one chunk
in memory at a time) and show a Rich progress bar on stderr. Exit codes:

- 0 success;
- 1 the operation completed with a negative outcome (transfer rejected, digest mismatch);
- 2 usage or input error (bad path, bad metadata file, a request the server refused as invalid);
- 3 server unreachable, 5xx, or the wait for a verdict timed out;
- 4 authentication or authorization refused (401/403);
- 5 ``get`` only: everything the caller may read was downloaded and its digests checked, but the
  server withheld some objects (403 ``access-restricted``: not communicable yet; 410 ``gone``:
  destroyed or transferred); they are listed on the console and in ``WITHHELD.json``.

Server errors are RFC 9457 ``application/problem+json``: title, detail and each issue are shown.
With ``--json`` stdout carries exactly one JSON document (the result, or ``{"error": …}``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from archive_service.core.fingerprint import MultiHasher, sha256_stream
from archive_service.core.package_check import (
    CHAIN_FILE,
    MANIFEST_FILE,
    TOKEN_FILE,
    UNIT_FILE,
    WITHHELD_FILE,
    safe_object_path,
)

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_AUTH = 4
EXIT_PARTIAL = 5

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK_SIZE = 1024 * 1024
FINAL_STATUSES = ("accepted", "rejected")

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="ARCHIVE_URL", help="Base URL of the archive service API."),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="ARCHIVE_KEY", help="API key (Bearer token).", show_default=False),
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait for the verdict (accepted/rejected).")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the verdict.", min=0)
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")
]


class CliFailure(Exception):
    """Ends a command with an exit code, a message and, when the server sent one, a problem."""

    def __init__(
        self,
        exit_code: int,
        message: str,
        *,
        problem: dict[str, Any] | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.problem = problem
        self.details = details


# --- Output ---------------------------------------------------------------------------------


@dataclass
class Output:
    """Human text on stdout (or JSON only), diagnostics and progress on stderr."""

    json_mode: bool
    out: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def say(self, text: str) -> None:
        if not self.json_mode:
            self.out.print(text)

    def emit_json(self, document: object) -> None:
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        sys.stdout.flush()

    def progress(self, *, bytes_total: bool = True) -> Progress:
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        if bytes_total:
            columns += [
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            ]
        else:
            columns.append(TimeElapsedColumn())
        return Progress(
            *columns, console=self.err, transient=True, disable=not self.err.is_terminal
        )

    def fail(self, failure: CliFailure) -> NoReturn:
        self.err.print(f"[bold red]Error:[/] {escape(failure.message)}")
        for line in failure.details:
            self.err.print(f"  - {escape(line)}")
        if failure.problem:
            print_problem(self.err, failure.problem)
        if self.json_mode:
            self.emit_json(
                {
                    "error": {
                        "exit_code": failure.exit_code,
                        "message": failure.message,
                        "details": list(failure.details),
                        "problem": failure.problem,
                    }
                }
            )
        raise typer.Exit(failure.exit_code)


def print_problem(console: Console, problem: dict[str, Any]) -> None:
    """Show an RFC 9457 problem: title, status, detail, then each issue with its location."""
    title = problem.get("title") or "Error"
    status = problem.get("status")
    console.print(f"  [bold]{escape(str(title))}[/]" + (f" (HTTP {status})" if status else ""))
    if problem.get("detail"):
        console.print(f"  {escape(str(problem['detail']))}")
    issues = problem.get("issues") or []
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        where = f" [dim]at {escape(str(issue['location']))}[/]" if issue.get("location") else ""
        code = f"[{issue['code']}] " if issue.get("code") else ""
        console.print(f"  - {escape(code + str(issue.get('message', '')))}{where}")


def print_reasons(console: Console, reasons: list[Any]) -> None:
    for reason in reasons:
        if isinstance(reason, dict):
            where = f" (at {reason['location']})" if reason.get("location") else ""
            code = f"[{reason['code']}] " if reason.get("code") else ""
            console.print(f"  - {escape(code + str(reason.get('message', '')) + where)}")
        else:
            console.print(f"  - {escape(str(reason))}")


# --- HTTP -----------------------------------------------------------------------------------


class Api:
    """A thin httpx client: base URL, bearer key, and HTTP failures mapped to exit codes."""

    def __init__(self, url: str, key: str | None, *, timeout: httpx.Timeout | None = None) -> None:
        headers = {"Accept": "application/json, application/problem+json;q=0.9, */*;q=0.1"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            self.client = httpx.Client(
                base_url=url.rstrip("/"),
                headers=headers,
                timeout=timeout or httpx.Timeout(30.0, connect=10.0),
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise CliFailure(EXIT_USAGE, f"invalid --url {url!r}: {exc}") from exc
        self.url = url
        self.has_key = bool(key)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._transport_errors():
            response = self.client.request(method, path, **kwargs)
        self.check(response)
        return response

    @contextmanager
    def stream(self, method: str, path: str) -> Iterator[httpx.Response]:
        with self._transport_errors(), self.client.stream(method, path) as response:
            if response.status_code >= 400:
                response.read()
                self.check(response)
            yield response

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.UnsupportedProtocol as exc:
            raise CliFailure(EXIT_USAGE, f"invalid --url {self.url!r}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise CliFailure(
                EXIT_UNAVAILABLE, f"the server at {self.url} did not answer in time ({exc})"
            ) from exc
        except httpx.TransportError as exc:
            raise CliFailure(
                EXIT_UNAVAILABLE, f"cannot reach the server at {self.url}: {exc}"
            ) from exc

    def check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        problem = _problem_of(response)
        target = f"{response.request.method} {response.request.url.path}"
        if status in (401, 403):
            hint = ""
            if status == 401 and not self.has_key:
                hint = " (no API key: pass --key or set ARCHIVE_KEY)"
            verb = "authentication refused" if status == 401 else "not allowed"
            raise CliFailure(EXIT_AUTH, f"{verb}: {target} → HTTP {status}{hint}", problem=problem)
        if status >= 500:
            raise CliFailure(
                EXIT_UNAVAILABLE, f"server error: {target} → HTTP {status}", problem=problem
            )
        raise CliFailure(EXIT_USAGE, f"request refused: {target} → HTTP {status}", problem=problem)

    def json(self, path: str) -> dict[str, Any]:
        response = self.request("GET", path)
        try:
            body = response.json()
        except ValueError as exc:
            raise CliFailure(EXIT_UNAVAILABLE, f"GET {path}: the server sent no JSON") from exc
        if not isinstance(body, dict):
            raise CliFailure(EXIT_UNAVAILABLE, f"GET {path}: expected a JSON object")
        return body


def _problem_of(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return {"title": response.reason_phrase, "detail": text[:500]} if text else None
    if isinstance(body, dict):
        return body
    return None


# --- Streaming multipart body ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a ``multipart/form-data`` body: inline bytes or a file read lazily."""

    name: str
    content_type: str
    filename: str | None = None
    data: bytes | None = None
    path: Path | None = None
    size: int = 0

    @property
    def length(self) -> int:
        return len(self.data) if self.data is not None else self.size


def _quote(value: str) -> bytes:
    """A quoted-string parameter, UTF-8 (RFC 7578 §4.2): ``\\`` and ``"`` backslash-escaped.

    Browsers percent-encode ``"`` instead, which servers do not decode back; python-multipart
    (Starlette) undoes backslash escapes, so a path keeps its exact spelling. Control
    characters never get here: paths holding them are refused with the metadata.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return b'"' + escaped.encode("utf-8") + b'"'


class MultipartBody:
    """A ``multipart/form-data`` body (RFC 7578) generated chunk by chunk, with its length.

    httpx can stream file objects, but only files opened beforehand (thousands of descriptors for
    a large dossier). Here each file is opened when its turn comes and closed right after, the
    ``Content-Length`` is known upfront, and ``on_bytes`` reports file bytes as they are sent.
    A file whose size changed since it was listed stops the upload (``FileChanged``).
    """

    def __init__(
        self,
        parts: list[Part],
        *,
        boundary: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.parts = parts
        self.boundary = (boundary or os.urandom(16).hex()).encode("ascii")
        self.on_bytes = on_bytes
        self.chunk_size = chunk_size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary.decode('ascii')}"

    def _head(self, part: Part) -> bytes:
        disposition = b"Content-Disposition: form-data; name=" + _quote(part.name)
        if part.filename is not None:
            disposition += b"; filename=" + _quote(part.filename)
        return (
            b"--"
            + self.boundary
            + b"\r\n"
            + disposition
            + b"\r\nContent-Type: "
            + part.content_type.encode("ascii")
            + b"\r\n\r\n"
        )

    @property
    def content_length(self) -> int:
        total = sum(len(self._head(p)) + p.length + 2 for p in self.parts)
        return total + len(self.boundary) + 6

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            yield self._head(part)
            if part.data is not None:
                yield part.data
            elif part.path is not None:
                yield from self._file(part)
            yield b"\r\n"
        yield b"--" + self.boundary + b"--\r\n"

    def _file(self, part: Part) -> Iterator[bytes]:
        assert part.path is not None
        sent = 0
        with part.path.open("rb") as handle:
            while chunk := handle.read(min(self.chunk_size, part.size - sent + 1)):
                sent += len(chunk)
                if sent > part.size:
                    break
                yield chunk
                if self.on_bytes is not None:
                    self.on_bytes(len(chunk))
        if sent != part.size:
            raise FileChanged(part.path, part.size, sent)


class FileChanged(Exception):
    def __init__(self, path: Path, expected: int, found: int) -> None:
        super().__init__(
            f"{path} changed during the upload ({expected} bytes listed, {found} read)"
        )
        self.path = path


# --- ingest ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: str
    local: Path
    size: int


def load_metadata(metadata_file: Path) -> dict[str, Any]:
    try:
        raw = metadata_file.read_bytes()
    except OSError as exc:
        raise CliFailure(
            EXIT_USAGE, f"cannot read the metadata file {metadata_file}: {exc}"
        ) from exc
    try:
        document = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise CliFailure(EXIT_USAGE, f"metadata file {metadata_file} is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CliFailure(
            EXIT_USAGE,
            f"metadata file {metadata_file} is not valid JSON: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})",
        ) from exc
    if not isinstance(document, dict):
        raise CliFailure(EXIT_USAGE, f"metadata file {metadata_file}: expected a JSON object")
    return document


def declared_files(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The metadata's file entries (``files``: objects with a ``path``), checked for shape."""
    entries = metadata.get("files")
    if not isinstance(entries, list) or not entries:
        raise CliFailure(
            EXIT_USAGE, 'metadata: "files" must be a non-empty list of {"path": …} objects'
        )
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"files[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            problems.append(f'{where}: expected an object with a string "path"')
            continue
        path = entry["path"]
        if not _safe_relative(path):
            problems.append(
                f"{where}: path {path!r} must be relative, without '..', '\\' "
                "nor control characters"
            )
        elif path in seen:
            problems.append(f"{where}: path {path!r} listed twice")
        seen.add(path)
        sha256 = entry.get("sha256")
        if sha256 is not None and not _is_sha256(sha256):
            problems.append(f"{where}: sha256 must be 64 hexadecimal characters")
    if problems:
        raise CliFailure(EXIT_USAGE, "the metadata file is invalid", details=tuple(problems))
    return entries


def _safe_relative(path: str) -> bool:
    if not path or path.startswith("/") or "\\" in path:
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return False
    return all(segment not in ("", ".", "..") for segment in path.split("/"))


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdefABCDEF" for c in value)
    )


def match_directory(
    directory: Path, entries: list[dict[str, Any]], *, ignore: Path | None = None
) -> list[LocalFile]:
    """Pair each metadata entry with its file in ``directory``; refuse missing and extra files."""
    listed = {entry["path"] for entry in entries}
    missing: list[str] = []
    found: list[LocalFile] = []
    for entry in entries:
        local = directory / entry["path"]
        if local.is_symlink() or not local.is_file():
            missing.append(entry["path"])
            continue
        found.append(LocalFile(entry["path"], local, local.stat().st_size))
    if missing:
        raise CliFailure(
            EXIT_USAGE,
            f"{len(missing)} file(s) listed in the metadata are not regular files in {directory}",
            details=tuple(missing),
        )
    empty = [f.path for f in found if f.size == 0]
    if empty:
        raise CliFailure(
            EXIT_USAGE,
            f"{len(empty)} file(s) are empty; the service refuses them",
            details=tuple(empty),
        )
    ignored = ignore.resolve() if ignore is not None else None
    extra: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        linked_dirs = [d for d in dirs if Path(root, d).is_symlink()]  # os.walk skips them
        for name in sorted(files + linked_dirs):
            local = Path(root, name)
            relative = local.relative_to(directory).as_posix()
            if relative not in listed and local.resolve() != ignored:
                extra.append(relative)
    if extra:
        raise CliFailure(
            EXIT_USAGE,
            f"{len(extra)} file(s) in {directory} are not listed in the metadata "
            "(list them or move them out)",
            details=tuple(extra),
        )
    return found


def fill_digests(
    entries: list[dict[str, Any]], files: list[LocalFile], output: Output
) -> list[dict[str, Any]]:
    """Entries with ``sha256`` computed (streaming) where the metadata declares none."""
    by_path = {f.path: f for f in files}
    todo = [e for e in entries if not e.get("sha256")]
    filled = {e["path"]: e for e in entries}
    if todo:
        total = sum(by_path[e["path"]].size for e in todo)
        with output.progress() as progress:
            task = progress.add_task("SHA-256", total=total)
            for entry in todo:
                local = by_path[entry["path"]]
                progress.update(task, description=f"SHA-256 {escape(local.path)}")
                try:
                    with local.local.open("rb") as handle:
                        _size, sha256 = sha256_stream(progress.wrap_file(handle, task_id=task))
                except OSError as exc:
                    raise CliFailure(EXIT_USAGE, f"cannot read {local.local}: {exc}") from exc
                filled[entry["path"]] = {**entry, "sha256": sha256}
    return [filled[e["path"]] for e in entries]


def ingest(
    directory: Annotated[
        Path, typer.Argument(help="Directory holding the dossier's files.", show_default=False)
    ],
    metadata: Annotated[
        Path,
        typer.Option(
            "--metadata", "-m", help="Metadata JSON file of the dossier.", show_default=False
        ),
    ],
    dossier: Annotated[
        str | None,
        typer.Option(
            "--dossier",
            help="Add the files to this archived dossier (the id of any of its units): the "
            "metadata then holds message_identifier, files and optional events only.",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 600.0,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Transfer a dossier (versement), or an addition to an archived one (--dossier):
    metadata + files, then wait for the verdict."""
    output = Output(json_output)
    try:
        code = _ingest(
            output,
            directory,
            metadata,
            wait=wait,
            timeout=timeout,
            url=url,
            key=key,
            dossier=dossier,
        )
    except CliFailure as failure:
        output.fail(failure)
    raise typer.Exit(code)


def _ingest(
    output: Output,
    directory: Path,
    metadata_file: Path,
    *,
    wait: bool,
    timeout: float,
    url: str,
    key: str | None,
    dossier: str | None = None,
) -> int:
    if not directory.is_dir():
        raise CliFailure(EXIT_USAGE, f"{directory} is not a directory")
    metadata = load_metadata(metadata_file)
    if dossier is not None:
        named = metadata.get("dossier")
        if named is not None and named != dossier:
            raise CliFailure(
                EXIT_USAGE, f"--dossier {dossier} but the metadata names dossier {named}"
            )
        metadata = {**metadata, "dossier": dossier}
    entries = declared_files(metadata)
    files = match_directory(directory, entries, ignore=metadata_file)
    metadata = {**metadata, "files": fill_digests(entries, files, output)}

    by_path = {f.path: f for f in files}
    parts = [
        Part(
            name="metadata",
            content_type="application/json",
            data=json.dumps(metadata, ensure_ascii=False).encode("utf-8"),
        )
    ]
    for entry in metadata["files"]:
        local = by_path[entry["path"]]
        declared = entry.get("mime_type")
        parts.append(
            Part(
                name=local.path,
                filename=local.path.rsplit("/", 1)[-1],
                content_type=declared
                if isinstance(declared, str) and declared.isascii()
                else "application/octet-stream",
                path=local.local,
                size=local.size,
            )
        )

    api = Api(url, key, timeout=httpx.Timeout(300.0, connect=10.0))
    try:
        transfer, replay = _upload(api, parts, output)
        transfer = _follow(api, transfer, replay, wait=wait, timeout=timeout, output=output)
    finally:
        api.close()
    return _report_transfer(transfer, output)


def _follow(
    api: Api,
    transfer: dict[str, Any],
    replay: bool,
    *,
    wait: bool,
    timeout: float,
    output: Output,
) -> dict[str, Any]:
    """Say so on a replay; with ``wait``, poll the transfer until its verdict."""
    if replay:
        output.err.print(
            f"Message {escape(str(transfer.get('message_identifier')))} was already "
            f"received: transfer {escape(str(transfer.get('id')))} (replay: no second package)"
        )
    if wait and transfer.get("status") not in FINAL_STATUSES:
        transfer = _wait(api, str(transfer["id"]), timeout, output)
    elif wait:
        transfer = api.json(f"/v1/transfers/{transfer['id']}")
    return transfer


def _upload(api: Api, parts: list[Part], output: Output) -> tuple[dict[str, Any], bool]:
    total = sum(p.size for p in parts if p.path is not None)
    with output.progress() as progress:
        task = progress.add_task(f"Upload ({len(parts) - 1} files)", total=total)
        body = MultipartBody(parts, on_bytes=lambda n: progress.advance(task, n))
        try:
            response = api.request(
                "POST",
                "/v1/transfers",
                content=iter(body),
                headers={
                    "Content-Type": body.content_type,
                    "Content-Length": str(body.content_length),
                },
            )
        except FileChanged as exc:
            raise CliFailure(EXIT_USAGE, str(exc)) from exc
    return _transfer_answer(response)


def _transfer_answer(response: httpx.Response) -> tuple[dict[str, Any], bool]:
    """The transfer ``POST /v1/transfers`` answered with, and whether it is a replay (200)."""
    try:
        transfer = response.json()
    except ValueError as exc:
        raise CliFailure(EXIT_UNAVAILABLE, "POST /v1/transfers: the server sent no JSON") from exc
    if not isinstance(transfer, dict) or "id" not in transfer:
        raise CliFailure(EXIT_UNAVAILABLE, "POST /v1/transfers: no transfer id in the answer")
    return transfer, response.status_code == 200


def _wait(api: Api, transfer_id: str, timeout: float, output: Output) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    interval = 0.25
    with output.progress(bytes_total=False) as progress:
        task = progress.add_task(f"Transfer {escape(transfer_id)}: received")
        while True:
            transfer = api.json(f"/v1/transfers/{transfer_id}")
            status = str(transfer.get("status"))
            if status in FINAL_STATUSES:
                return transfer
            progress.update(task, description=f"Transfer {escape(transfer_id)}: {escape(status)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CliFailure(
                    EXIT_UNAVAILABLE,
                    f"no verdict for transfer {transfer_id} after {timeout:g} s "
                    f"(status: {status}); it goes on server-side, ask again later",
                )
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 3.0)


def _report_transfer(transfer: dict[str, Any], output: Output) -> int:
    status = str(transfer.get("status"))
    code = EXIT_NEGATIVE if status == "rejected" else EXIT_OK
    if output.json_mode:
        output.emit_json(transfer)
        if code != EXIT_OK:
            output.err.print(f"Transfer {escape(str(transfer.get('id')))} rejected")
            print_reasons(output.err, list(transfer.get("reasons") or []))
        return code
    style = {"accepted": "green", "rejected": "red"}.get(status, "yellow")
    output.say(f"Transfer {escape(str(transfer.get('id')))}: [bold {style}]{escape(status)}[/]")
    for label, field_name in (
        ("message identifier", "message_identifier"),
        ("archive unit", "archive_unit_id"),
        ("package", "package_id"),
    ):
        if transfer.get(field_name):
            output.say(f"  {label}: {escape(str(transfer[field_name]))}")
    reasons = list(transfer.get("reasons") or [])
    if reasons:
        output.say("  reasons:")
        print_reasons(output.out, reasons)
    return code


# --- get ------------------------------------------------------------------------------------


def get(
    unit_id: Annotated[str, typer.Argument(help="Archive unit id (au-…).", show_default=False)],
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Directory to write the package into.", show_default=False
        ),
    ],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Download an archive unit's package (manifest, token, chain, objects), checking digests.

    Objects the server withholds from your key are skipped, not fatal: those not communicable
    yet (their access rule's delay runs; archivists and admins get them once it ends, the
    producer's platform key reads its own at once) and those destroyed or transferred out. Each
    is listed with its rule and end date (or the tombstone's request and visa), on the console
    and in WITHHELD.json in the output directory; `verify` then reports them as withheld.

    Exit codes: 0 everything downloaded and checked; 5 everything readable downloaded and
    checked, some objects withheld; 1 a digest mismatch; 2 bad input or request; 3 server
    unreachable or failing; 4 key refused (an auditor may not read content at all).
    """
    output = Output(json_output)
    try:
        code = _get(output, unit_id, output_dir, url=url, key=key)
    except CliFailure as failure:
        output.fail(failure)
    raise typer.Exit(code)


@dataclass(frozen=True, slots=True)
class RemoteObject:
    id: str
    uri: str
    size: int | None
    sha256: str
    sha512: str | None
    label: str
    path: str | None = None


def _unit_objects(unit: dict[str, Any]) -> list[RemoteObject]:
    raw = unit.get("objects")
    if not isinstance(raw, list):
        raise CliFailure(EXIT_UNAVAILABLE, 'the archive unit JSON has no "objects" list')
    objects: list[RemoteObject] = []
    unsafe: list[str] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise CliFailure(EXIT_UNAVAILABLE, "the archive unit JSON has a malformed object")
        uri = str(item.get("uri", ""))
        label = f"{item['id']} ({item.get('path') or item.get('filename') or uri})"
        if safe_object_path(uri) is None:
            unsafe.append(f"{label}: uri {uri!r}")
            continue
        if not _is_sha256(item.get("sha256")):
            raise CliFailure(EXIT_UNAVAILABLE, f"object {label} has no valid sha256")
        size = item.get("size")
        sha512 = item.get("sha512")
        objects.append(
            RemoteObject(
                id=item["id"],
                uri=uri,
                size=size if isinstance(size, int) else None,
                sha256=str(item["sha256"]).lower(),
                sha512=str(sha512).lower() if sha512 else None,
                label=label,
                path=str(item["path"]) if isinstance(item.get("path"), str) else None,
            )
        )
    if unsafe:
        raise CliFailure(
            EXIT_NEGATIVE,
            "refusing to write objects whose uri is not a relative path under content/",
            details=tuple(unsafe),
        )
    if len({o.uri for o in objects}) != len(objects):
        raise CliFailure(EXIT_NEGATIVE, "two objects of the archive unit share one uri")
    return objects


def _get(output: Output, unit_id: str, output_dir: Path, *, url: str, key: str | None) -> int:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise CliFailure(
            EXIT_USAGE, f"{output_dir} exists and is not an empty directory; choose a new one"
        )
    api = Api(url, key, timeout=httpx.Timeout(60.0, connect=10.0))
    try:
        unit = api.json(f"/v1/archive-units/{unit_id}")
        root_id = unit.get("root_id")
        if isinstance(root_id, str) and root_id and root_id != unit.get("id", unit_id):
            # The proof covers the whole dossier: its manifest lists every object of the
            # package, so a sub-unit is downloaded with all of them.
            output.err.print(
                f"{escape(unit_id)} is part of dossier {escape(root_id)}: "
                "downloading the whole package, which its manifest and token cover"
            )
            objects = _unit_objects(api.json(f"/v1/archive-units/{root_id}"))
        else:
            objects = _unit_objects(unit)
        created = not output_dir.exists()
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliFailure(EXIT_USAGE, f"cannot create {output_dir}: {exc}") from exc
        try:
            for name, path in (
                (MANIFEST_FILE, f"/v1/archive-units/{unit_id}/manifest"),
                (TOKEN_FILE, f"/v1/archive-units/{unit_id}/timestamp"),
                (CHAIN_FILE, "/v1/tsa/certificates"),
            ):
                _write(output_dir / name, api.request("GET", path).content)
            _write(
                output_dir / UNIT_FILE,
                (json.dumps(unit, ensure_ascii=False, indent=2) + "\n").encode("utf-8"),
            )
            mismatches, withheld = _download_objects(api, objects, output_dir, output)
            if withheld:
                _write(output_dir / WITHHELD_FILE, _withheld_document(unit_id, url, withheld))
        except (CliFailure, OSError) as exc:
            # A half-written package proves nothing and would block a retry: remove it (the
            # directory was new or empty, so everything in it is ours).
            _remove_contents(output_dir, remove_dir=created)
            if isinstance(exc, CliFailure):
                raise
            raise CliFailure(EXIT_USAGE, f"cannot write into {output_dir}: {exc}") from exc
    finally:
        api.close()

    refused = {str(item["id"]) for item in withheld}
    total = sum(o.size or 0 for o in objects if o.id not in refused)
    if output.json_mode:
        output.emit_json(
            {
                "unit_id": unit_id,
                "directory": str(output_dir),
                "ok": not mismatches,
                "complete": not mismatches and not withheld,
                "objects": len(objects),
                "downloaded": len(objects) - len(withheld) - len(mismatches),
                "bytes": total,
                "mismatches": mismatches,
                "withheld": withheld,
            }
        )
    if mismatches:
        _report_withheld(output, output_dir, withheld)
        output.err.print(
            f"[bold red]{len(mismatches)} object(s) did not match their digest (not written):[/]"
        )
        for item in mismatches:
            output.err.print(
                f"  - {escape(item['object'])}: expected {item['expected']}, got {item['found']}"
            )
        return EXIT_NEGATIVE
    count = f"{len(objects) - len(withheld)} of {len(objects)}" if withheld else str(len(objects))
    output.say(
        f"Archive unit {escape(unit_id)}: {count} object(s), {total} bytes, "
        f"digests checked, written to {escape(str(output_dir))}"
    )
    _report_withheld(output, output_dir, withheld)
    verify_hint = f"Verify offline with: archive-service verify {escape(str(output_dir))}"
    if withheld:
        output.say(f"{verify_hint} (exit 5: what is there verifies, the withheld are named)")
        return EXIT_PARTIAL
    output.say(verify_hint)
    return EXIT_OK


#: Refusals that withhold one object and let the download go on: (HTTP status, problem type).
WITHHELD_PROBLEMS: dict[tuple[object, object], str] = {
    (403, "urn:archive-service:problem:access-restricted"): "access-restricted",
    (410, "urn:archive-service:problem:gone"): "gone",
}


def withheld_entry(obj: RemoteObject, problem: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``WITHHELD.json`` says of an object the server refused, or ``None`` when the
    refusal is not about this object's communicability or disposal (then ``get`` fails)."""
    if problem is None:
        return None
    kind = WITHHELD_PROBLEMS.get((problem.get("status"), problem.get("type")))
    if kind is None:
        return None
    return {
        "id": obj.id,
        "uri": obj.uri,
        "path": obj.path,
        "size": obj.size,
        "sha256": obj.sha256,
        "withheld": kind,
        "summary": withheld_summary(kind, problem),
        "end_date": problem.get("end_date"),
        "pending": problem.get("pending"),
        "problem": problem,
    }


def withheld_summary(kind: str, problem: dict[str, Any]) -> str:
    """One line: the rule and until when (or what it waits for), or how the unit went."""
    if kind == "gone":
        text = f"gone: archive unit {problem.get('unit_id')} {problem.get('unit_status') or ''}"
        tombstone = problem.get("tombstone")
        if not isinstance(tombstone, dict):
            return f"{text.rstrip()} (no tombstone recorded)"
        parts = []
        if tombstone.get("at"):
            parts.append(f"on {str(tombstone['at'])[:10]}")
        if tombstone.get("request_id"):
            parts.append(f"disposal request {tombstone['request_id']}")
        visa = tombstone.get("visa")
        if isinstance(visa, dict) and visa.get("reference"):
            by = f" by {visa['by']}" if visa.get("by") else ""
            parts.append(f"visa {visa['reference']}{by}")
        return f"{text.rstrip()} {', '.join(parts)}".rstrip()
    rule = str(problem.get("rule_label") or problem.get("rule_id") or "its access rule")
    if problem.get("rule_id") and problem.get("rule_label"):
        rule += f" ({problem['rule_id']})"
    if problem.get("inherited_from"):
        rule += f", inherited from {problem['inherited_from']}"
    end = problem.get("end_date")
    if end and not problem.get("pending"):
        return f"not communicable until {end} — {rule}"
    event = problem.get("start_event") or "an event not recorded yet"
    years = problem.get("duration_years")
    wait = f"{years} years after {event}" if years is not None else f"after {event}"
    return f"not communicable, pending: {wait} — {rule}"


def _withheld_document(unit_id: str, url: str, withheld: list[dict[str, Any]]) -> bytes:
    document = {
        "unit_id": unit_id,
        "server": url,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "Objects of manifest.xml the server refused to this key; nothing was written "
        "for them under content/. The server's word at checked_at, not covered by the token.",
        "objects": withheld,
    }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _report_withheld(output: Output, output_dir: Path, withheld: list[dict[str, Any]]) -> None:
    if not withheld:
        return
    console = output.err if output.json_mode else output.out
    console.print(
        f"[bold yellow]{len(withheld)} object(s) withheld by the server, not downloaded "
        f"(listed in {escape(str(output_dir / WITHHELD_FILE))}):[/]"
    )
    for item in withheld:
        where = item["path"] or item["uri"]
        console.print(
            f"  - {escape(str(where))} ({escape(item['uri'])}): {escape(item['summary'])}",
            soft_wrap=True,
        )


def _remove_contents(directory: Path, *, remove_dir: bool) -> None:
    if remove_dir:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _write(target: Path, data: bytes) -> None:
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)


def _download_objects(
    api: Api, objects: list[RemoteObject], output_dir: Path, output: Output
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Stream each object to ``output_dir/<uri>``; a digest mismatch leaves no file, nor does
    an object the server withholds (returned apart, see :func:`withheld_entry`)."""
    mismatches: list[dict[str, str]] = []
    withheld: list[dict[str, Any]] = []
    total = sum(o.size or 0 for o in objects)
    with output.progress() as progress:
        task = progress.add_task(f"Download ({len(objects)} objects)", total=total)
        for obj in objects:
            progress.update(task, description=f"Download {escape(obj.uri)}")
            target = output_dir / obj.uri
            partial = target.with_name(target.name + ".part")
            hasher = MultiHasher()
            try:
                with api.stream("GET", f"/v1/objects/{obj.id}/content") as response:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with partial.open("wb") as handle:
                        try:
                            for chunk in response.iter_bytes(CHUNK_SIZE):
                                hasher.update(chunk)
                                handle.write(chunk)
                                progress.advance(task, len(chunk))
                        except httpx.TransportError as exc:
                            partial.unlink(missing_ok=True)
                            raise CliFailure(
                                EXIT_UNAVAILABLE, f"download of {obj.label} interrupted: {exc}"
                            ) from exc
            except CliFailure as failure:
                entry = withheld_entry(obj, failure.problem)
                if entry is None:
                    raise
                withheld.append(entry)
                progress.advance(task, obj.size or 0)
                continue
            prints = hasher.result()
            problem = _compare(obj, prints.size, prints.sha256.digest, prints.sha512.digest)
            if problem is not None:
                partial.unlink(missing_ok=True)
                mismatches.append({"object": obj.label, "uri": obj.uri, **problem})
                continue
            partial.replace(target)
    return mismatches, withheld


def _compare(obj: RemoteObject, size: int, sha256: str, sha512: str) -> dict[str, str] | None:
    if sha256 != obj.sha256:
        return {"check": "sha256", "expected": obj.sha256, "found": sha256}
    if obj.size is not None and size != obj.size:
        return {"check": "size", "expected": str(obj.size), "found": str(size)}
    if obj.sha512 is not None and sha512 != obj.sha512:
        return {"check": "sha512", "expected": obj.sha512, "found": sha512}
    return None


def ingest_sip(
    file: Annotated[
        Path,
        typer.Argument(
            help="SEDA 2.2/2.3 transfer zip (manifest.xml + files).", show_default=False
        ),
    ],
    organization: Annotated[
        str | None,
        typer.Option(
            "--organization",
            help="SIRET of the organization the transfer is for, when the manifest's "
            "OriginatingAgencyIdentifier is not one.",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 600.0,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Transfer a foreign SEDA transfer zip (ReSIP, Pastell, Vitam), then wait for the verdict."""
    output = Output(json_output)
    try:
        code = _ingest_sip(output, file, organization, wait=wait, timeout=timeout, url=url, key=key)
    except CliFailure as failure:
        output.fail(failure)
    raise typer.Exit(code)


def _ingest_sip(
    output: Output,
    file: Path,
    organization: str | None,
    *,
    wait: bool,
    timeout: float,
    url: str,
    key: str | None,
) -> int:
    if file.is_symlink() or not file.is_file():
        raise CliFailure(EXIT_USAGE, f"{file} is not a regular file")
    size = file.stat().st_size
    api = Api(url, key, timeout=httpx.Timeout(300.0, connect=10.0))
    try:
        with output.progress() as progress, file.open("rb") as handle:
            task = progress.add_task(f"Upload {escape(file.name)}", total=size)

            def chunks() -> Iterator[bytes]:
                while block := handle.read(1024 * 1024):
                    progress.advance(task, len(block))
                    yield block

            response = api.request(
                "POST",
                "/v1/transfers",
                content=chunks(),
                params={"organization": organization} if organization else None,
                headers={"Content-Type": "application/zip", "Content-Length": str(size)},
            )
        transfer, replay = _transfer_answer(response)
        if not output.json_mode:
            output.say(f"Transfer {escape(str(transfer['id']))} received")
        transfer = _follow(api, transfer, replay, wait=wait, timeout=timeout, output=output)
    except OSError as exc:
        raise CliFailure(EXIT_USAGE, f"cannot read {file}: {exc}") from exc
    finally:
        api.close()
    return _report_transfer(transfer, output)


def register(app: typer.Typer) -> None:
    """Add ``ingest``, ``ingest-sip`` and ``get`` to the CLI."""
    app.command("ingest")(ingest)
    app.command("ingest-sip")(ingest_sip)
    app.command("get")(get)
