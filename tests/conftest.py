"""Fixtures every test may use: factories of valid events and of consumed-record look-alikes, and
a real PostgreSQL server for the stores that must hold on it as on SQLite."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xsell.events import EventType, LineItem, PurchaseEvent, event_id_for


def pytest_configure(config: pytest.Config) -> None:
    """Import Feast before any test: at import it puts a "once" filter for DeprecationWarning in
    front of the warning filters, which inside a test would outrank the ones pyproject.toml sets;
    imported here, pytest puts its own filters in front of it for every test. Imported the way
    the product imports it (`features.feast_import`)."""
    import features.feast_import  # noqa: F401, PLC0415  (imported for its side effect on the warning filters)


@dataclass(frozen=True)
class FakeRecord:
    """The fields of a consumed record the pure processing functions read (no Kafka involved)."""

    value: bytes | None
    key: bytes | None = None
    topic: str = "purchases"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


EventFactory = Callable[..., PurchaseEvent]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL cluster (Debian's, run by `infra.postgres` as the production profile runs
    it) on a free port for the session; yields the URL of its server, without a database."""
    from infra.kafka.broker import free_port  # noqa: PLC0415  (only the tests that need PostgreSQL)
    from infra.postgres import PostgresCluster  # noqa: PLC0415  (only the tests that need PostgreSQL)
    from xsell.settings import load_settings  # noqa: PLC0415  (only the tests that need PostgreSQL)

    home = Path(tempfile.mkdtemp(prefix="xsell-postgres-"))
    home.chmod(0o755)  # under root the server runs as the postgres user, which must reach the folder
    settings = load_settings(home=home, postgres_port=free_port())
    cluster = PostgresCluster(settings)
    cluster.start()
    try:
        yield f"postgresql+psycopg2://{settings.postgres_user}@127.0.0.1:{settings.postgres_port}"
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server (one per test)."""
    import psycopg2  # noqa: PLC0415  (only the tests that need PostgreSQL)

    name = f"test_{uuid.uuid4().hex[:12]}"
    server = postgres_server.removeprefix("postgresql+psycopg2://")
    user, _, address = server.partition("@")
    host, _, port = address.partition(":")
    connection = psycopg2.connect(host=host, port=int(port), user=user, dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return f"{postgres_server}/{name}"


@pytest.fixture
def make_event() -> EventFactory:
    """Build a valid purchase event; keyword arguments override fields."""
    counter = iter(range(1_000_000))

    def build(**overrides: object) -> PurchaseEvent:
        number = next(counter)
        order_id = str(overrides.pop("order_id", f"T{number:06d}"))
        event_type = overrides.pop("event_type", EventType.PURCHASE)
        fields: dict[str, object] = {
            "event_id": event_id_for(order_id, event_type),  # type: ignore[arg-type]
            "event_type": event_type,
            "order_id": order_id,
            "customer_id": "C1",
            "occurred_at": datetime(2011, 1, 1, tzinfo=UTC) + timedelta(minutes=number),
            "lines": (LineItem(product_id="P1", name="MUG", quantity=2, unit_price=3.5),),
        }
        fields.update(overrides)
        return PurchaseEvent(**fields)  # type: ignore[arg-type]

    return build


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests under tests/integration/ and run them after the fast unit tests."""
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)
