"""Structured logs: structlog and the standard library's loggers through one renderer.

Entry points (``archive-service serve``, ``worker``, ``beat``) call :func:`configure_logging`
once. Every line is then one JSON object (``ARCHIVE_LOG_FORMAT=json``, the default) with
``timestamp`` (ISO 8601, UTC), ``level``, ``event``, ``logger``, the extra fields of the call,
and the context bound with ``structlog.contextvars``: ``request_id`` in an HTTP request,
``transfer_id`` while a transfer is archived, ``job``/``id``/``attempt`` in a job. Records of
uvicorn, Celery, SQLAlchemy and Python warnings go through the same renderer.
``ARCHIVE_LOG_FORMAT=console`` renders the same fields for a human at a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

#: Loggers that install handlers of their own: they are made to propagate to the root.
OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "sqlalchemy")


def _processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def configure_logging(
    fmt: Literal["json", "console"] = "json",
    level: str | int = "INFO",
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route structlog and stdlib logging to ``stream`` (stderr) in ``fmt``; return the
    handler installed on the root logger (it replaces the root's handlers)."""
    structlog.configure(
        processors=[
            *_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    out = stream or sys.stderr
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        final = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        final = [renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_processors(), structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level decides, whoever set one before
    # SQLAlchemy's engine echo and pool chatter are debugging aids; its warnings stay.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler


def take_over_celery_logging(fmt: Literal["json", "console"], default_level: str) -> None:
    """Make a Celery worker or beat started in this process log through
    :func:`configure_logging` instead of its own set-up (which would replace the root's
    handlers): task start and end, errors and the ``ready.`` line are rendered like the rest."""
    from celery import signals

    def setup_logging(loglevel: object = None, **_: object) -> None:
        configure_logging(fmt, loglevel if isinstance(loglevel, str | int) else default_level)

    signals.setup_logging.connect(setup_logging, weak=False, dispatch_uid="archive-logging")
