"""Contact preferences: who unsubscribed from offer e-mails, in the xsell database.

SQLite under XSELL_HOME by default, PostgreSQL (or any SQLAlchemy URL) by `XSELL_DATABASE_URL`.
The unsubscribe link writes here; the offer service reads here before choosing channels.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.engine import Engine

from xsell.database import SelectIn, create_tables, engine_for

metadata = MetaData()
unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("unsubscribed_at", DateTime(timezone=True), nullable=False),
    Column("source", String(32), nullable=False),
)
_UNSUBSCRIBED = SelectIn(select(unsubscribes.c.customer_id), unsubscribes.c.customer_id)


class PreferenceStore:
    """Read and record unsubscribes."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = engine_for(url)
        create_tables(metadata, self.engine)

    def unsubscribe(self, customer_id: str, source: str = "email_link") -> bool:
        """Record an unsubscribe; True if it is new (idempotent)."""
        with self.engine.begin() as db:
            if db.execute(select(unsubscribes.c.customer_id).where(unsubscribes.c.customer_id == customer_id)).first():
                return False
            db.execute(
                unsubscribes.insert().values(customer_id=customer_id, unsubscribed_at=datetime.now(UTC), source=source)
            )
            return True

    def unsubscribed(self, customer_ids: Iterable[str]) -> set[str]:
        """Which of these customers unsubscribed."""
        ids = set(customer_ids)
        if not ids:
            return set()
        with self.engine.connect() as db:
            return {row["customer_id"] for row in _UNSUBSCRIBED.rows(db, ids)}
