"""The HTTP API (FastAPI). Endpoints are thin: authenticate, call a service, shape the answer."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from archive_service import __version__
from archive_service.api.deps import CallerDep, ServicesDep
from archive_service.api.derogations import router as derogations_router
from archive_service.api.disposal import router as disposal_router
from archive_service.api.dossiers import router as dossiers_router
from archive_service.api.errors import archive_error_handler, validation_error_handler
from archive_service.api.evidence import router as evidence_router
from archive_service.api.export import router as export_router
from archive_service.api.health import ArchiveCollector, readiness
from archive_service.api.lifecycle import router as lifecycle_router
from archive_service.api.logbook import router as logbook_router
from archive_service.api.requests import RequestContext
from archive_service.api.upload import is_zip, read_transfer, read_zip
from archive_service.api.views import search_hit_json, transfer_json, unit_json
from archive_service.config import Settings
from archive_service.errors import ArchiveError, InvalidInput, Issue
from archive_service.ports import Caller, Role, SearchQuery, timed
from archive_service.services.ingest import RegisterOutcome
from archive_service.wiring import Services, build_services, periodic_jobs, resume_unfinished

STREAM_CHUNK = 1024 * 1024


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """Build the app; services are built at start-up (migrations applied) unless given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or build_services(settings)
        app.state.metrics_registry = CollectorRegistry()
        app.state.metrics_registry.register(ArchiveCollector(app.state.services))
        app.state.services.metrics.expose(app.state.metrics_registry)
        resume_unfinished(app.state.services)
        app.state.periodic = periodic_jobs(app.state.services)
        for job in app.state.periodic:
            job.start()
        try:
            yield
        finally:
            for job in app.state.periodic:
                job.stop()
            if owned:
                app.state.services.close()

    app = FastAPI(
        title="archive-service",
        version=__version__,
        description="Archivage électronique des dossiers de marchés publics (SEDA 2.3).",
        lifespan=lifespan,
    )
    app.add_middleware(RequestContext)
    app.add_exception_handler(ArchiveError, archive_error_handler)
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.include_router(logbook_router)
    app.include_router(evidence_router)
    app.include_router(dossiers_router)
    app.include_router(lifecycle_router)
    app.include_router(disposal_router)
    app.include_router(derogations_router)
    app.include_router(export_router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(services: ServicesDep) -> JSONResponse:
        """Database, each storage offer, the TSA and (with Celery) the broker (readiness)."""
        checks = readiness(services)
        ready = all(c.ok for c in checks)
        return JSONResponse(
            {
                "status": "ready" if ready else "not ready",
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
            },
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    def metrics(request: Request, services: ServicesDep) -> Response:
        """Prometheus metrics (text exposition format)."""
        registry = request.app.state.metrics_registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/transfers", status_code=202)
    async def create_transfer(
        request: Request, caller: CallerDep, services: ServicesDep
    ) -> JSONResponse:
        if is_zip(request.headers.get("content-type")):
            return await _create_sip_transfer(request, caller, services)
        upload = await anyio.to_thread.run_sync(services.staging.new_upload)
        try:
            with timed(services.metrics, "receive"):
                metadata = await read_transfer(
                    request.stream(), request.headers.get("content-type"), upload
                )
        except BaseException:
            upload.discard()
            raise
        outcome = await anyio.to_thread.run_sync(
            services.ingest.register, caller, metadata, upload.name, list(upload.files)
        )
        return _registered(outcome)

    async def _create_sip_transfer(
        request: Request, caller: Caller, services: Services
    ) -> JSONResponse:
        """A foreign SEDA transfer zip (``services/sip_ingest.py``)."""
        services.sip.authorize(caller)
        upload = await anyio.to_thread.run_sync(services.staging.new_upload)
        try:
            with timed(services.metrics, "receive"):
                staged = await read_zip(
                    request.stream(),
                    upload,
                    max_size=services.settings.sip_max_zip_size,
                    declared=request.headers.get("content-length"),
                )
        except BaseException:
            upload.discard()
            raise
        outcome = await anyio.to_thread.run_sync(
            services.sip.register,
            caller,
            upload.name,
            staged,
            request.query_params.get("organization"),
        )
        return _registered(outcome)

    def _registered(outcome: RegisterOutcome) -> JSONResponse:
        body = {
            "id": outcome.transfer.id,
            "status": outcome.transfer.status.value,
            "message_identifier": outcome.transfer.message_identifier,
        }
        return JSONResponse(
            body,
            status_code=200 if outcome.replayed else 202,
            headers={"Location": f"/v1/transfers/{outcome.transfer.id}"},
        )

    @app.get("/v1/transfers/{transfer_id}")
    def get_transfer(transfer_id: str, caller: CallerDep, services: ServicesDep) -> Any:
        return transfer_json(services.ingest.get_transfer(caller, transfer_id))

    @app.get("/v1/transfers/{transfer_id}/reply")
    def get_transfer_reply(transfer_id: str, caller: CallerDep, services: ServicesDep) -> Response:
        xml = services.ingest.transfer_reply(caller, transfer_id)
        return Response(xml, media_type="application/xml")

    @app.get("/v1/archive-units")
    def search_units(
        caller: CallerDep,
        services: ServicesDep,
        q: str | None = None,
        buyer: Annotated[str | None, Query(pattern=r"^[0-9]{14}$")] = None,
        cpv: Annotated[str | None, Query(pattern=r"^[0-9]{2,8}(-[0-9])?$")] = None,
        notified_from: date | None = None,
        notified_to: date | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        communicable: bool | None = None,
    ) -> Any:
        """Dossiers of the caller's tenant, newest first, each with an ``access`` block
        (communicable now, or until when); ``communicable=true|false`` filters on it."""
        try:
            units, next_cursor = services.retrieval.search(
                caller,
                SearchQuery(
                    tenant_id=caller.tenant_id,
                    text=q,
                    buyer=buyer,
                    cpv=cpv,
                    notified_from=notified_from,
                    notified_to=notified_to,
                    cursor=cursor,
                    limit=limit,
                    communicable=communicable,
                ),
            )
        except ValueError as exc:
            raise InvalidInput(
                str(exc), issues=[Issue("invalid-cursor", str(exc), "cursor")]
            ) from None
        return {
            "items": [search_hit_json(h, producer=caller.role is Role.PLATFORM) for h in units],
            "next_cursor": next_cursor,
        }

    @app.get("/v1/archive-units/{unit_id}")
    def get_unit(unit_id: str, caller: CallerDep, services: ServicesDep) -> Any:
        return unit_json(services.retrieval.unit(caller, unit_id))

    @app.get("/v1/archive-units/{unit_id}/manifest")
    def get_manifest(unit_id: str, caller: CallerDep, services: ServicesDep) -> Response:
        package, xml = services.retrieval.manifest(caller, unit_id)
        return Response(
            xml,
            media_type="application/xml",
            headers={
                "ETag": f'"sha256:{package.manifest_sha256}"',
                "Repr-Digest": _digest_header(package.manifest_sha256),
            },
        )

    @app.get("/v1/archive-units/{unit_id}/timestamp")
    def get_timestamp(unit_id: str, caller: CallerDep, services: ServicesDep) -> Response:
        return Response(
            services.retrieval.timestamp(caller, unit_id), media_type="application/timestamp-reply"
        )

    @app.get("/v1/objects/{object_id}/content")
    def get_content(
        object_id: str, request: Request, caller: CallerDep, services: ServicesDep
    ) -> Response:
        opened = services.retrieval.open_object(caller, object_id)
        record = opened.record
        etag = f'"sha256:{record.sha256}"'
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Repr-Digest": _digest_header(record.sha256),
            "Digest": "SHA-256=" + base64.b64encode(bytes.fromhex(record.sha256)).decode(),
            "Content-Disposition": _disposition(record.path.rsplit("/", 1)[-1]),
        }
        range_header = request.headers.get("range")
        span = _parse_range(range_header, record.size)
        try:
            # The read's logbook entry is committed before any byte leaves.
            if request.headers.get("if-none-match") == etag:
                services.retrieval.log_content_read(caller, opened, not_modified=True)
                opened.stream.close()
                return Response(status_code=304, headers=headers)
            if isinstance(span, str):
                services.retrieval.log_content_read(
                    caller, opened, unsatisfiable=range_header or ""
                )
                opened.stream.close()
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{record.size}"}
                )
            services.retrieval.log_content_read(caller, opened, span=span)
        except BaseException:
            opened.stream.close()
            raise
        if span is None:
            start, end, status = 0, record.size - 1, 200
        else:
            start, end = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{record.size}"
        headers["Content-Length"] = str(end - start + 1)
        return StreamingResponse(
            _iter_stream(opened.stream, start, end - start + 1),
            status_code=status,
            media_type=record.mime_type or "application/octet-stream",
            headers=headers,
        )

    @app.get("/v1/audit/status")
    def audit_status(caller: CallerDep, services: ServicesDep) -> Any:
        """Integrity audits of the caller's tenant: per offer, the share of copies verified
        healthy within the window, open problems; the last run (admin, auditor, archivist)."""
        return services.audit.status(caller)

    @app.delete("/v1/admin/api-keys/{key}", status_code=204)
    def revoke_api_key(key: str, caller: CallerDep, services: ServicesDep) -> Response:
        """Revoke an API key of the caller's tenant (admin role), by key id or client id."""
        services.tenancy.revoke_key(key, by=caller)
        return Response(status_code=204)

    @app.get("/v1/tsa/certificates")
    def tsa_certificates(_caller: CallerDep, services: ServicesDep) -> Response:
        return Response(
            services.tsa.certificate_chain_pem(), media_type="application/pem-certificate-chain"
        )

    return app


def _digest_header(sha256_hex: str) -> str:
    """RFC 9530 ``Repr-Digest`` value."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode() + ":"


def _disposition(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One byte range (RFC 9110 §14.1.2); several ranges are answered with the whole file."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        length = int(m.group(2))
        if length == 0:
            return "unsatisfiable"
        start, end = max(0, size - length), size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _iter_stream(stream: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    try:
        if start:
            stream.seek(start)
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(STREAM_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        stream.close()
