"""Fixtures of the API tests: settings on a temporary SQLite database, the in-memory feedback
publisher, the inbox store and a TestClient on the app (`tests/services/api/factories.py` builds
the data)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.inbox.store import InboxStore
from tests.services.api.factories import RecordingPublisher
from xsell.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path, database_url=f"sqlite:///{tmp_path / 'api.db'}", api_key="test-key", link_secret="test-secret"
    )


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def store(settings: Settings) -> Iterator[InboxStore]:
    inbox = InboxStore(settings.db_url)
    yield inbox
    inbox.close()


@pytest.fixture
def client(settings: Settings, publisher: RecordingPublisher) -> Iterator[TestClient]:
    with TestClient(create_app(settings, publisher=publisher)) as test_client:
        yield test_client
