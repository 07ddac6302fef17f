"""xsell's tables in the configured database (offer facts, preferences, in-app offers), created
once before the services start: several processes running `create_all` at once on PostgreSQL race
on the catalog (UniqueViolation on pg_type), which kills whichever API worker loses."""

from __future__ import annotations

from services.feedback.facts import open_facts
from services.inbox.store import InboxStore
from services.preferences import PreferenceStore


def create_schema(url: str) -> None:
    """Create every service's tables in the database at ``url`` (idempotent)."""
    open_facts(url).dispose()
    PreferenceStore(url).engine.dispose()
    InboxStore(url).close()
