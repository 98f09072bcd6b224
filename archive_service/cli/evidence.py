"""``archive-service evidence UNIT_ID -o bundle.zip [--with-objects]``: download an archive
unit's evidence bundle from the API (archivist, admin or auditor key), streamed to disk.

Check it offline with ``archive-verify bundle.zip`` (exit codes as the other client commands:
0 written, 2 usage, 3 unavailable, 4 refused, 1 the service refused to vouch for the unit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.markup import escape

from archive_service.cli.remote import (
    CHUNK_SIZE,
    DEFAULT_URL,
    EXIT_NEGATIVE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Api,
    CliFailure,
    JsonOption,
    KeyOption,
    Output,
    UrlOption,
)


def evidence(
    unit_id: Annotated[str, typer.Argument(help="Archive unit id (au-…).", show_default=False)],
    output_file: Annotated[
        Path, typer.Option("--output", "-o", help="The zip to write.", show_default=False)
    ],
    with_objects: Annotated[
        bool, typer.Option("--with-objects", help="Include the objects (document content).")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Download the evidence bundle of an archive unit (« relevé de valeur probante »)."""
    output = Output(json_output)
    try:
        size = _download(unit_id, output_file, with_objects, url=url, key=key, output=output)
    except CliFailure as failure:
        if failure.problem and str(failure.problem.get("type", "")).endswith(":integrity-failure"):
            failure.exit_code = EXIT_NEGATIVE
        output.fail(failure)
    if output.json_mode:
        output.emit_json({"unit_id": unit_id, "file": str(output_file), "bytes": size})
    output.say(f"Evidence of {escape(unit_id)}: {size} bytes written to {escape(str(output_file))}")
    output.say(f"Verify offline with: archive-verify {escape(str(output_file))}")
    raise typer.Exit(EXIT_OK)


def _download(
    unit_id: str, target: Path, with_objects: bool, *, url: str, key: str | None, output: Output
) -> int:
    if target.exists() and target.is_dir():
        raise CliFailure(EXIT_USAGE, f"{target} is a directory; give the zip's file name")
    partial = target.with_name(target.name + ".part")
    query = "?with_objects=true" if with_objects else ""
    api = Api(url, key, timeout=httpx.Timeout(300.0, connect=10.0))
    size = 0
    try:
        with (
            api.stream("GET", f"/v1/archive-units/{unit_id}/evidence{query}") as response,
            output.progress(bytes_total=False) as progress,
        ):
            progress.add_task(f"Evidence {escape(unit_id)}", total=None)
            try:
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes(CHUNK_SIZE):
                        handle.write(chunk)
                        size += len(chunk)
            except httpx.TransportError as exc:
                raise CliFailure(EXIT_UNAVAILABLE, f"download interrupted: {exc}") from exc
            except OSError as exc:
                raise CliFailure(EXIT_USAGE, f"cannot write {partial}: {exc}") from exc
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
        api.close()
    return size


def register(app: typer.Typer) -> None:
    """Add ``evidence`` to the CLI."""
    app.command("evidence")(evidence)
