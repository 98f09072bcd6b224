"""Logs configured as the entry points configure them, written to a buffer a test reads."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import structlog

from archive_service.observability.logs import OWN_HANDLERS, configure_logging


@contextmanager
def captured_logs(
    fmt: Literal["json", "console"] = "json", level: str = "INFO"
) -> Iterator[io.StringIO]:
    """``configure_logging`` into a buffer; the logging state is restored afterwards."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    own = {name: logging.getLogger(name) for name in OWN_HANDLERS}
    saved = {name: (lg.handlers[:], lg.propagate, lg.level) for name, lg in own.items()}
    buffer = io.StringIO()
    configure_logging(fmt, level, stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers, root.level = handlers, root_level
        for name, (own_handlers, propagate, own_level) in saved.items():
            own[name].handlers, own[name].propagate = own_handlers, propagate
            own[name].setLevel(own_level)
        logging.captureWarnings(False)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
