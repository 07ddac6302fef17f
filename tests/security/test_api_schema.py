"""The API against its own OpenAPI spec: schemathesis 4 with every check it has, as `--checks all` runs them.

schemathesis generates requests from `/openapi.json` (its coverage phase: boundary values, missing and
unexpected parameters, undocumented methods; its fuzzing phase: 50 cases per operation, valid and
invalid data) and sends them in-process over ASGI to an app on a real SQLite store with a few stored
offers and a ranker trained on the shipped sample (offers on request are ranked for real); feedback goes to the `RecordingPublisher`, purchases and decisions to `RecordingEvents`. A
stateful run then chains operations along the links schemathesis infers from the spec (an offer listed,
then an event on it; an unsubscribe, then its page).

The checks: `case.call_and_validate` without `checks=` runs every check schemathesis registers, the
same set as `schemathesis run --checks all`, and the stateful run does too:
- not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
  response_schema_conformance: every answer is a non-5xx status the spec lists, with its documented
  content type, headers and body;
- positive_data_acceptance / negative_data_rejection: a schema-valid request is accepted and an invalid
  one refused (422, or 400/401/404...);
- missing_required_header, ignored_auth: a route that declares the API key refuses a request without it
  (GET /dashboard declares the key optional: it takes the session cookie too, and redirects to its login
  form otherwise);
- unsupported_method, allow_header_conformance: an undocumented method gets a 405 whose `Allow` lists the
  path's methods (`services.api.app.method_not_allowed`);
- use_after_free, ensure_resource_availability, object_level_authorization: stateful; they judge
  resources a call creates or deletes, and the spec has no DELETE and no created resource to read
  back, so they run and pass without finding anything to judge (tests/security/test_access.py covers
  access to what exists);
- max_response_time: on only with a time limit, and the API has no latency budget to enforce here.

Configuration (tests/security/schemathesis.toml, shared with the CLI: `schemathesis --config-file
tests/security/schemathesis.toml run URL --checks all -H 'X-API-Key: ...'`): 50 examples per
operation, positive and negative data, and for the signed e-mail links (tag `links`) a 400 also counts as
accepting valid data: a schema-valid token is any string, only a signed one is a valid link, and the
refusal is the documented 400.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from services.api.app import create_app
from services.inbox.store import InboxStore
from tests.services.api.factories import RecordingEvents, RecordingPublisher, deliver, make_decision
from training import commands
from xsell.settings import REPO_ROOT, load_settings

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"

API_KEY = "schema-test-key"
HOME = Path(tempfile.mkdtemp(prefix="xsell-schemathesis-"))
SETTINGS = load_settings(
    home=HOME,
    database_url=f"sqlite:///{HOME / 'api.db'}",
    api_key=API_KEY,
    recommendation_timeout_s=60.0,  # the first answer waits for the recommender process to load the model
    link_secret="schema-test-secret",
    kafka_bootstrap="127.0.0.1:9",
)  # nothing listens there: Kafka-backed figures answer "n/a"
PUBLISHER = RecordingPublisher()
EVENTS = RecordingEvents()  # purchases and decisions: no broker either
CONFIG = SchemathesisConfig.from_path(Path(__file__).with_name("schemathesis.toml"))
# The key as the CLI's `-H` sets it: schemathesis knows the header is the caller's, never negates it, and
# its auth checks (ignored_auth, missing_required_header) send their probes without it.
CONFIG.projects.override.update(headers={"X-API-Key": API_KEY})


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
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(SETTINGS, publisher=PUBLISHER, events=EVENTS), config=CONFIG
)

CASES: Counter[str] = Counter()
HYPOTHESIS = settings(deadline=None, suppress_health_check=list(HealthCheck))  # examples: the config's 50


@pytest.fixture(scope="module", autouse=True)
def trained_model() -> None:
    """A ranker trained on the shipped sample in the app's home, so POST /v1/recommendations is
    fuzzed through the real recommender (loaded on the first request, after this)."""
    commands.train(SETTINGS, SAMPLE)


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Iterator[None]:
    yield
    print(f"\nschemathesis: {CASES.total()} cases over {len(CASES)} operations")  # visible with -s


@schema.parametrize()
@HYPOTHESIS
def test_api_conforms_to_its_openapi_spec(case: schemathesis.Case) -> None:
    CASES[case.operation.label] += 1
    case.call_and_validate()  # no `checks=`: all of them


def test_api_workflows_conform_to_its_openapi_spec() -> None:
    """Sequences of calls along the inferred links, each answer validated by every check."""
    schema.as_state_machine().run(settings=settings(HYPOTHESIS, max_examples=25, stateful_step_count=6))
