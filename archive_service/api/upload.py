"""Streaming multipart/form-data reader for transfers.

The request body is fed, in slices of ``FEED_SIZE`` bytes, to python-multipart's push parser on
a worker thread; each file part goes straight to the staging area while it is hashed. A multi-GB
file therefore never sits in memory, and the event loop never hashes.

The feeding is pipelined: while the worker thread parses, writes and hashes one slice, the event
loop keeps receiving the next one, so the network and the hashing overlap. Two slices are held
at once (one being parsed, one being received), whatever the size of the body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header

from archive_service.errors import BadRequest, Issue, PayloadTooLarge, UnsupportedMediaType
from archive_service.ports import StagedFile
from archive_service.storage.staging import FileSink, Upload

METADATA_PART = "metadata"
ZIP_TYPE = "application/zip"
ZIP_PART = "transfer.zip"
MAX_METADATA_BYTES = 16 * 1024 * 1024
#: Bytes handed to the parser at once: large enough that the thread hand-off per slice costs
#: nothing next to hashing it, small enough to keep memory per upload modest.
FEED_SIZE = 4 * 1024 * 1024


def multipart_boundary(content_type: str | None) -> bytes:
    if not content_type:
        raise UnsupportedMediaType("a transfer is sent as multipart/form-data")
    ctype, options = parse_options_header(content_type)
    if ctype != b"multipart/form-data":
        raise UnsupportedMediaType(
            f"a transfer is sent as multipart/form-data, not {ctype.decode(errors='replace')}"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary")
    return boundary


class _Reader:
    """Callbacks for the push parser: one part at a time."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.metadata_bytes: bytearray | None = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._sink: FileSink | None = None
        self._in_metadata = False
        self.finished = False

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._headers = {}
        self._sink = None
        self._in_metadata = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise BadRequest("every part needs Content-Disposition: form-data; name=…")
        try:
            name = options[b"name"].decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("part names must be UTF-8") from None
        content_type = self._headers.get(b"content-type")
        if name == METADATA_PART and b"filename" not in options:
            if self.metadata_bytes is not None:
                raise BadRequest("the metadata part was sent twice")
            self.metadata_bytes = bytearray()
            self._in_metadata = True
            return
        self._sink = self.upload.begin_file(
            name, content_type.decode("latin-1") if content_type else None
        )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_metadata:
            assert self.metadata_bytes is not None
            if len(self.metadata_bytes) + (end - start) > MAX_METADATA_BYTES:
                raise BadRequest(f"metadata larger than {MAX_METADATA_BYTES} bytes")
            self.metadata_bytes += data[start:end]
        elif self._sink is not None:
            self._sink.write(memoryview(data)[start:end])

    def on_part_end(self) -> None:
        if self._sink is not None:
            self.upload.add(self._sink.finish())
            self._sink = None
        self._in_metadata = False

    def on_end(self) -> None:
        self.finished = True

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.abort()


def _feed(parser: MultipartParser, data: bytearray) -> None:
    """Parse one slice. python-multipart reads any bytes-like buffer: no copy to ``bytes``."""
    parser.write(cast("bytes", data))


async def read_transfer(
    body: AsyncIterator[bytes], content_type: str | None, upload: Upload
) -> object:
    """Stream the multipart body into ``upload``; return the parsed metadata JSON."""
    boundary = multipart_boundary(content_type)
    reader = _Reader(upload)
    parser = MultipartParser(boundary, cast("Any", reader.callbacks()))
    loop = asyncio.get_running_loop()
    # Two feed buffers, allocated once and filled in place: the event loop fills one while the
    # worker parses the other. Reusing them (rather than a new object per slice) matters on
    # virtual machines, where every freshly mapped page costs a fault to the host.
    buffers = (bytearray(FEED_SIZE), bytearray(FEED_SIZE))
    current, fill = 0, 0
    in_flight: asyncio.Future[None] | None = None
    try:
        async for chunk in body:
            view = memoryview(chunk)
            while view:
                taken = min(len(view), FEED_SIZE - fill)
                buffers[current][fill : fill + taken] = view[:taken]
                fill += taken
                view = view[taken:]
                if fill == FEED_SIZE:
                    if in_flight is not None:
                        await in_flight  # the other buffer is parsed (or parsing failed)
                    in_flight = loop.run_in_executor(None, _feed, parser, buffers[current])
                    current, fill = 1 - current, 0
        if in_flight is not None:
            await in_flight
            in_flight = None
        if fill:
            await anyio.to_thread.run_sync(_feed, parser, buffers[current][:fill])
        parser.finalize()
    except BaseException:
        if in_flight is not None:
            # The worker may still be writing to a staged file: let it finish before the
            # caller discards the upload. Its own error, if any, is superseded by this one.
            with anyio.CancelScope(shield=True):
                await asyncio.wait([in_flight])
        reader.abort()
        raise
    if not reader.finished:
        raise BadRequest("the multipart body ended before its closing boundary")
    if reader.metadata_bytes is None:
        raise BadRequest(
            "missing part 'metadata' (JSON)",
            issues=[Issue("metadata-missing", "no metadata part", METADATA_PART)],
        )
    try:
        return json.loads(bytes(reader.metadata_bytes).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(
            f"metadata is not valid JSON: {exc}",
            issues=[Issue("metadata-malformed", str(exc), METADATA_PART)],
        ) from None


def is_zip(content_type: str | None) -> bool:
    """A foreign SEDA transfer: the body is the zip itself."""
    if not content_type:
        return False
    ctype, _ = parse_options_header(content_type)
    return ctype in (ZIP_TYPE.encode(), b"application/x-zip-compressed")


async def read_zip(
    body: AsyncIterator[bytes], upload: Upload, *, max_size: int, declared: str | None
) -> StagedFile:
    """Stream a zip body to the staging area (hashed on the way, never whole in memory)."""

    def too_large() -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the transfer zip exceeds {max_size} bytes",
            issues=[Issue("zip-too-large", f"at most {max_size} bytes", ZIP_PART)],
        )

    if declared is not None and declared.isdigit() and int(declared) > max_size:
        raise too_large()
    sink = upload.begin_file(ZIP_PART, ZIP_TYPE)
    buffer = bytearray()
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > max_size:
                raise too_large()
            buffer += chunk
            if len(buffer) >= FEED_SIZE:
                data, buffer = bytes(buffer), bytearray()
                await anyio.to_thread.run_sync(sink.write, data)
        if buffer:
            await anyio.to_thread.run_sync(sink.write, bytes(buffer))
        if received == 0:
            raise BadRequest("the transfer zip is empty")
        staged = await anyio.to_thread.run_sync(sink.finish)
    except BaseException:
        sink.abort()
        raise
    upload.add(staged)
    return staged
