"""A read-only engine of the report's own on the ledger (SQLite or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ...ledger.store import no_ledger_file

#: Bytes of a SQLite ledger the report maps into memory.
SQLITE_MMAP = 1 << 30


class LedgerError(Exception):
    """A ledger the report cannot open or read; the message says why and what to do."""


def open_ledger(url: str) -> Engine:
    """A read-only engine on the ledger at ``url``; :class:`LedgerError` when it is unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerError(f"CONSENTKIT_LEDGER_URL {url!r} is not an SQLAlchemy URL.") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not path.startswith("file:") \
                and not Path(path).is_file():
            raise LedgerError(no_ledger_file(path))
        connect_args: dict[str, Any] = {"check_same_thread": False}
    elif backend == "postgresql":
        connect_args = {"connect_timeout": 5}
    else:
        raise LedgerError(f"The report reads SQLite and PostgreSQL ledgers, not {backend!r} "
                          f"({shown}).")
    try:
        engine = create_engine(parsed, connect_args=connect_args, pool_size=2)
    except (NoSuchModuleError, ImportError) as e:
        raise LedgerError(f"Cannot open the ledger at {shown}: {e}. Install the database "
                          "driver (for PostgreSQL: pip install 'flask-consentkit[postgresql]').",
                          ) from None
    _read_only(engine)
    return engine


def shown_url(engine: Engine) -> str:
    """The engine's URL as messages show it: without the password."""
    return engine.url.render_as_string(hide_password=True)


def _read_only(engine: Engine) -> None:
    """Make every connection of ``engine`` refuse writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("PRAGMA query_only = ON")
            cursor.execute("PRAGMA temp_store = MEMORY")
            # read the file through the OS page cache, not a read() per page
            cursor.execute(f"PRAGMA mmap_size = {SQLITE_MMAP}")
        else:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            # room to sort and hash a year of receipts in memory; no JIT for one-off queries
            cursor.execute("SET work_mem = '64MB'")
            info = getattr(dbapi_connection, "info", dbapi_connection)
            if getattr(info, "server_version", 0) >= 110000:
                cursor.execute("SET jit = off")
        cursor.close()
        if engine.dialect.name == "postgresql":
            dbapi_connection.commit()
