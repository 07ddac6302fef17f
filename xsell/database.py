"""The xsell database: one SQLAlchemy engine factory for every store on `settings.db_url`.

SQLite under XSELL_HOME by default, PostgreSQL (or any SQLAlchemy URL) by `XSELL_DATABASE_URL`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url


def engine_for(url: str) -> Engine:
    """An engine; for a SQLite file, its folder is created and writers wait for each other's locks."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, pool_pre_ping=True, connect_args={"timeout": 30})
