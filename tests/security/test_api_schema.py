"""The API against its own OpenAPI spec (schemathesis): no 5xx, and every response is documented.

schemathesis generates requests from `/openapi.json` (valid and invalid parameters and bodies) and
sends them in-process over ASGI to an app on a real SQLite store with a few stored offers; feedback
goes to the `RecordingPublisher`. Every response must be a non-5xx status the spec lists for the
operation, with the documented content type, headers and body schema; routes that declare the API
key must refuse a request without it (schemathesis' `ignored_auth` check).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.app import create_app
from services.inbox.store import InboxStore
from tests.services.api.factories import RecordingPublisher, deliver, make_decision
from xsell.settings import load_settings

API_KEY = "schema-test-key"
HOME = Path(tempfile.mkdtemp(prefix="xsell-schemathesis-"))
SETTINGS = load_settings(
    home=HOME,
    database_url=f"sqlite:///{HOME / 'api.db'}",
    api_key=API_KEY,
    link_secret="schema-test-secret",
    kafka_bootstrap="127.0.0.1:9",
)  # nothing listens there: Kafka-backed figures answer "n/a"
PUBLISHER = RecordingPublisher()


def _seed_offers() -> None:
    store = InboxStore(SETTINGS.db_url)
    try:
        deliver(
            SETTINGS,
            store,
            make_decision("O1", customer_id="C1", name='MUG & "CUP" <b>'),
            make_decision("O2", customer_id="C2"),
        )
    finally:
        store.close()


_seed_offers()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(SETTINGS, publisher=PUBLISHER))


CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# A route that declares the API key must refuse a request without it. Not GET /dashboard: a browser page,
# it answers a documented 303 to its login form (cookie or key), which these two checks count as "accepted".
AUTH = [ignored_auth, missing_required_header]
# Left out on purpose: positive/negative_data_acceptance (a schema-valid token or id is not a valid one:
# a 400/404 there is right), unsupported_method (Starlette's 405 `Allow` lists one route's methods when
# GET and POST are separate routes) and the stateful checks (covered by tests/security/test_access.py).


CASES: Counter[str] = Counter()
SLOW = "/dashboard/pipeline"  # waits up to 2 s for the (absent) broker on every call


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Iterator[None]:
    yield
    print(f"\nschemathesis: {CASES.total()} cases over {len(CASES)} operations")  # visible with -s


def call_and_check(case: schemathesis.Case) -> None:
    CASES[case.operation.label] += 1
    browser_page = case.operation.label == "GET /dashboard"
    case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CONFORMANCE + ([] if browser_page else AUTH))


@schema.exclude(path=SLOW).parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_spec(case: schemathesis.Case) -> None:
    call_and_check(case)


@schema.include(path=SLOW).parametrize()
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
def test_slow_api_operations_conform_to_the_spec(case: schemathesis.Case) -> None:
    call_and_check(case)
