"""No one let in: the API key, customer isolation, signed links, escaping, logs and secrets.

The API runs on a real SQLite store with the `RecordingPublisher`; e-mails go through a real SMTP
server (aiosmtpd, in-process, on a free port). Each test checks the refusal and that it changed
nothing (the preference store, offer statuses, published feedback).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from services.api.app import create_app
from services.delivery.render import render_offer_email
from services.delivery.service import DeliveryService, feedback_for, plan_emails
from services.inbox.store import InboxStore, OfferStatus
from services.links import _b64, _unb64, sign_link
from services.offers.rules import CustomerContext, OfferRules, RankedCandidate, decide
from services.preferences import PreferenceStore
from tests.conftest import EventFactory, FakeRecord
from tests.services.api.factories import RecordingPublisher, deliver, make_decision
from xsell.logs import JsonFormatter
from xsell.offers import OfferDecision, OfferType, offer_id_for
from xsell.settings import REPO_ROOT, Settings, load_settings

API_KEY = "access-test-key-0123456789"
LINK_SECRET = "access-test-link-secret"
KEY = {"X-API-Key": API_KEY}
HOSTILE = 'Tom & Jerry\'s "MUG" <script>alert(1)</script><img src=x onerror=alert(2)>'


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        api_key=API_KEY,
        link_secret=LINK_SECRET,
        public_base_url="https://shop.example",
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
    app = create_app(settings, publisher=publisher)
    with TestClient(app) as test_client:
        test_client.app_routes = app.routes
        yield test_client


# -- the API key ----------------------------------------------------------------------------------


def v1_operations(client: TestClient) -> list[tuple[str, str]]:
    """(method, path with every parameter filled) of each /v1 route the app serves."""
    operations = []
    routes = list(client.app_routes)
    while routes:
        route = routes.pop()
        if (included := getattr(route, "original_router", None)) is not None:  # FastAPI keeps routers nested
            routes += included.routes
        elif isinstance(route, APIRoute) and route.path.startswith("/v1"):
            path = re.sub(r"\{[^}]+\}", "C1", route.path)
            operations += [(method, path) for method in sorted(route.methods or ())]
    return operations


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "wrong"},
        {"X-API-Key": API_KEY[:-1]},
        {"X-API-Key": API_KEY + "x"},
        {"X-API-Key": API_KEY.upper()},
        {"X-API-Key": f" {API_KEY}"},
        {"Authorization": f"Bearer {API_KEY}"},
        {"X-Api-Key-Backup": API_KEY},
    ],
    ids=["none", "empty", "wrong", "prefix", "longer", "upper", "space", "bearer", "other-header"],
)
def test_every_v1_route_refuses_a_missing_or_wrong_key_with_401(client: TestClient, headers: dict[str, str]) -> None:
    operations = v1_operations(client)
    assert {path.split("/")[2] for _, path in operations} >= {"customers", "offers"}
    for method, path in operations:
        response = client.request(method, path, headers=headers, json={"customer_id": "C1", "type": "click"})
        assert response.status_code == 401, (method, path)
        assert response.json() == {"detail": "Missing or invalid API key."}
        assert response.headers["www-authenticate"] == "APIKey"


def test_the_key_is_checked_before_the_body_and_declared_in_the_spec(client: TestClient) -> None:
    response = client.post("/v1/offers/x/events", content=b"{not json")
    assert response.status_code == 401
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        if path.startswith("/v1"):
            for operation in operations.values():
                assert operation["security"] == [{"APIKeyHeader": []}]
                assert "401" in operation["responses"]


def test_an_empty_configured_key_lets_no_one_in(tmp_path: Path, publisher: RecordingPublisher) -> None:
    settings = load_settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}", api_key="")
    with TestClient(create_app(settings, publisher=publisher)) as client:
        for headers in ({}, {"X-API-Key": ""}):
            assert client.get("/v1/customers/C1/offers", headers=headers).status_code == 401


# -- customer isolation ---------------------------------------------------------------------------


def test_a_customer_sees_only_their_own_offers(client: TestClient, settings: Settings, store: InboxStore) -> None:
    mine, theirs = make_decision("O1", customer_id="C1"), make_decision("O2", customer_id="C2", products=("P7",))
    deliver(settings, store, mine, theirs)

    listed = {o["offer_id"] for o in client.get("/v1/customers/C1/offers", headers=KEY).json()["offers"]}

    assert listed == {o.offer_id for o in mine.offers}
    for wildcard in ("%", "%25", "*", "C%", "' OR '1'='1", "C1' --"):  # ids are bound parameters, not patterns
        body = client.get(f"/v1/customers/{quote(wildcard, safe='')}/offers", headers=KEY).json()
        assert body["count"] == 0, wildcard


@pytest.mark.parametrize("kind", ["impression", "click", "dismiss", "convert"])
def test_another_customers_offer_cannot_be_acted_on_and_answers_like_an_unknown_one(
    client: TestClient, settings: Settings, store: InboxStore, publisher: RecordingPublisher, kind: str
) -> None:
    theirs = make_decision("O2", customer_id="C2", products=("P7", "P8"))
    deliver(settings, store, theirs, make_decision("O1", customer_id="C1"))
    guessed = [offer_id_for("O2", "P7"), offer_id_for("O2", "P8")]  # ids derive from order and product: guessable
    assert guessed == [o.offer_id for o in theirs.offers]
    unknown = [str(uuid.uuid4()), offer_id_for("O3", "P7"), offer_id_for("O2", "P9"), "' OR 1=1 --", "%"]

    responses = [
        client.post(
            f"/v1/offers/{quote(offer_id, safe='')}/events",
            headers={**KEY, "Idempotency-Key": "k"},
            json={"customer_id": "C1", "type": kind},
        )
        for offer_id in guessed + unknown
    ]

    first = responses[0]
    assert first.status_code == 404 and first.json() == {"detail": "Offer not found."}
    for response in responses[1:]:  # nothing tells a foreign offer from a missing one
        assert (response.status_code, response.content, dict(response.headers)) == (
            first.status_code,
            first.content,
            dict(first.headers),
        )
    assert publisher.events == []
    assert [store.offer(o).status for o in guessed] == [OfferStatus.ACTIVE, OfferStatus.ACTIVE]  # type: ignore[union-attr]
    assert client.get("/v1/customers/C2/offers", headers=KEY).json()["count"] == 2


# -- signed links ---------------------------------------------------------------------------------


def forged_tokens(secret: str, action: str, customer: str = "C1", offer: str | None = "offer-1") -> dict[str, str]:
    """Tokens that must all be refused for `action`."""
    valid = sign_link(secret, action, customer, offer, ttl_s=3600)
    payload, signature = valid.split(".")
    other = sign_link(secret, action, "C2", offer, ttl_s=3600)
    claim = json.loads(_unb64(payload))
    longer = _b64(json.dumps({**claim, "e": claim["e"] + 10**9}, separators=(",", ":"), sort_keys=True).encode())
    return {
        "other secret": sign_link("not-the-secret", action, customer, offer, ttl_s=3600),
        "empty secret": sign_link("", action, customer, offer, ttl_s=3600),
        "altered signature": payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:],
        "payload of C2, signature of C1": other.split(".")[0] + "." + signature,
        "extended expiry": longer + "." + signature,
        "no signature": payload + ".",
        "payload only": payload,
        "three parts": valid + ".x",
        "expired": sign_link(secret, action, customer, offer, ttl_s=60, now=time.time() - 3600),
        "wrong action": sign_link(secret, "click" if action != "click" else "unsubscribe", customer, offer, 3600),
        "not base64": "%%%.%%%",
        "unicode": "ü.ü",
    }


def test_forged_unsubscribe_links_are_refused_and_unsubscribe_no_one(
    client: TestClient, settings: Settings, publisher: RecordingPublisher
) -> None:
    for case, token in forged_tokens(settings.link_secret, "unsubscribe", offer=None).items():
        for method in ("GET", "POST"):
            body = {"List-Unsubscribe": "One-Click"} if method == "POST" else None  # RFC 8058 one-click
            response = client.request(method, f"/unsubscribe/{quote(token, safe='')}", data=body)
            assert response.status_code == 400, (case, method)
            assert "not valid" in response.text and "You are unsubscribed" not in response.text
    assert PreferenceStore(settings.db_url).unsubscribed(["C1", "C2"]) == set()
    assert publisher.events == []
    valid = sign_link(settings.link_secret, "unsubscribe", "C1", None, ttl_s=3600)  # the control: a real link works
    assert client.get(f"/unsubscribe/{valid}").status_code == 200
    assert PreferenceStore(settings.db_url).unsubscribed(["C1", "C2"]) == {"C1"}


@pytest.mark.parametrize(("path", "action"), [("/r/{}", "click"), ("/o/{}.gif", "open")])
def test_forged_click_and_open_links_are_refused_and_record_nothing(
    client: TestClient, settings: Settings, store: InboxStore, publisher: RecordingPublisher, path: str, action: str
) -> None:
    decision = make_decision("O1", customer_id="C1")
    deliver(settings, store, decision)
    for case, token in forged_tokens(settings.link_secret, action, offer=decision.offers[0].offer_id).items():
        response = client.get(path.format(quote(token, safe="")), follow_redirects=False)
        assert response.status_code == 400, case
        assert "location" not in response.headers and response.headers["cache-control"] == "no-store"
    assert publisher.events == []
    assert store.offer(decision.offers[0].offer_id).status is OfferStatus.ACTIVE  # type: ignore[union-attr]


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=", min_size=1, max_size=300
    )
    | st.text(min_size=1, max_size=40)
)
def test_random_tokens_never_pass(
    client: TestClient, settings: Settings, publisher: RecordingPublisher, token: str
) -> None:
    for path in ("/r/{}", "/o/{}.gif", "/unsubscribe/{}"):
        response = client.get(path.format(quote(token, safe="")), follow_redirects=False)
        if response.status_code == 307:  # "x/" -> "x": Starlette's trailing-slash redirect, to the same kind of link
            assert response.headers["location"].startswith("http://testserver" + path.split("{")[0]), token
        else:
            assert response.status_code in (400, 404, 422), (path, token)
    assert publisher.events == []
    assert PreferenceStore(settings.db_url).unsubscribed(["C1"]) == set()


# -- escaping -------------------------------------------------------------------------------------


class Tags(HTMLParser):
    """Every start tag and its attributes, and the text of <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def assert_no_injected_markup(html: str, scripts: int) -> None:
    tags = parse(html)
    assert sum(tag == "script" for tag, _ in tags) == scripts
    assert not [(tag, name) for tag, attrs in tags for name in attrs if name.startswith("on")]
    assert not [attrs for tag, attrs in tags if tag == "img" and attrs.get("src") == "x"]
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_offer_email_html_escapes_names_and_reasons(settings: Settings) -> None:
    decision = make_decision("O1", customer_id="C1", name=HOSTILE).model_copy(
        update={"customer_email": "jane@example.org", "marketing_consent": True}
    )
    rendered = render_offer_email(decision, settings)
    html = rendered.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = rendered.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    assert_no_injected_markup(html, scripts=0)
    assert "Tom &amp; Jerry&#39;s &#34;MUG&#34;" in html
    assert HOSTILE in text  # the text part is not HTML: the name is shown as it is
    hrefs = [attrs["href"] for tag, attrs in parse(html) if tag == "a"]
    assert hrefs and all(href.startswith("https://shop.example/") for href in hrefs)  # type: ignore[union-attr]


def test_demo_pages_escape_names_customer_and_product_ids(
    client: TestClient, settings: Settings, store: InboxStore
) -> None:
    decision = make_decision("O1", customer_id="C1", name=HOSTILE)
    deliver(settings, store, decision)
    offer = decision.offers[0]
    pages = [
        client.get("/demo", params={"customer_id": "C1"}),
        client.get(f"/demo/products/{offer.product_id}", params={"customer_id": "C1", "offer_id": offer.offer_id}),
    ]
    for page in pages:
        assert page.status_code == 200
        assert_no_injected_markup(page.text, scripts=1)  # the page's own script only
    hostile_ids = [
        client.get("/demo", params={"customer_id": '"><script>alert(1)</script>'}),
        client.get(f"/demo/products/{quote('<script>alert(1)', safe='')}"),
    ]  # a path segment: no "/"
    for page in hostile_ids:
        assert page.status_code in (200, 404)
        assert_no_injected_markup(page.text, scripts=1)
    assert f"const API_KEY = {json.dumps(API_KEY)};" in pages[0].text


# -- logs -----------------------------------------------------------------------------------------

ADDRESSES = {
    "accept": "jane.doe+offers@example.org",
    "bounce": "bounce.me@example.net",
    "soft": "soft.fail@example.com",
}


class EchoingHandler:
    """An SMTP server that names the recipient in its replies, as many real ones do."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("bounce"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: user unknown"
        if address.startswith("soft"):
            return f"451 4.2.0 <{address}>: mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK queued"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything xsell logged, as the JSON lines the services write (extra fields included)."""
    formatter = JsonFormatter()
    # mail.log is the test's own SMTP server (aiosmtpd), not xsell; the capture server silences it too.
    return "\n".join(formatter.format(record) for record in caplog.records if not record.name.startswith("mail."))


def email_decision(order_id: str, address: str) -> OfferDecision:
    return make_decision(order_id, customer_id=f"C-{order_id}", name="MUG").model_copy(
        update={"customer_email": address, "marketing_consent": True}
    )


def test_delivery_and_offer_rules_never_log_an_email_address(
    settings: Settings, caplog: pytest.LogCaptureFixture, make_event: EventFactory
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    settings = settings.model_copy(update={"smtp_port": port})
    controller = Controller(EchoingHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        service = DeliveryService(settings, retry_base_s=0.0, retry_max_s=0.0, smtp_timeout_s=5.0)
        records = [
            FakeRecord(value=email_decision(kind, address).to_bytes(), topic="offers", offset=i)
            for i, (kind, address) in enumerate(ADDRESSES.items())
        ]
        records.append(FakeRecord(value=b'{"customer_email": "jane.doe+offers@example.org"', topic="offers"))
        service.handle(records)  # type: ignore[arg-type]
        sent_first = service.send_due(now=time.time() + 1)
    finally:
        controller.stop()
    service.send_due(now=time.time() + 3600)  # the server is gone now: connection refused, retried later
    assert sent_first >= 1 and service.stats.failed >= 1 and service.stats.retries >= 1
    bounced = [event for row in service.outbox.unreported() for event in feedback_for(row)]

    event = make_event(customer_id="C9", customer_email=ADDRESSES["accept"], marketing_consent=True)
    candidates = [RankedCandidate("X1", OfferType.CROSS_SELL, 0.9, "Goes well with your MUG", HOSTILE, 2.0)]
    decision = decide(event, candidates, CustomerContext(), OfferRules(), "1", event.occurred_at)
    assert decision.customer_email == ADDRESSES["accept"] and decision.offers
    plan_emails([FakeRecord(value=decision.to_bytes(), topic="offers")], settings)  # type: ignore[list-item]

    text = logged_text(caplog)
    assert "e-mail sent" in text and "refused for good" in text and "will retry" in text  # the paths ran
    for address in ADDRESSES.values():
        assert address not in text and address.split("@")[0] not in text
    feedback = "\n".join(e.model_dump_json() for e in bounced)
    assert all(address not in feedback for address in ADDRESSES.values())  # bounce details go downstream too


# -- secrets --------------------------------------------------------------------------------------

# Assembled from parts so this file does not match its own patterns.
SECRET_PATTERNS = {
    "private key": re.compile("-----BEGIN ((RSA|EC|DSA|OPENSSH|PGP|ENCRYPTED) )?" + "PRIVATE KEY( BLOCK)?-----"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)" + r"[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?" + r"[A-Za-z0-9/+=]{40}"),
    "GitHub token": re.compile(r"\bgh[pousr]_" + r"[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-" + r"[0-9A-Za-z-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_" + r"[0-9A-Za-z]{16,}"),
    "Google API key": re.compile(r"\bAIza" + r"[0-9A-Za-z_-]{35}\b"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:" + r"[^\s@/'\"$<>{}]{6,}@[a-z0-9.-]+"),
}
SECRET_FILE_NAMES = re.compile(r"(^|/)(\.env(\..+)?|id_(rsa|ecdsa|ed25519)|.*\.(pem|key|p12|pfx|jks))$")


def test_no_secret_is_tracked_in_the_repository() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    paths = [name for name in files.decode().split("\0") if name]
    assert len(paths) > 50
    found = [path for path in paths if SECRET_FILE_NAMES.search(path)]
    for path in paths:
        file = REPO_ROOT / path
        if not file.is_file() or file.stat().st_size > 2_000_000:
            continue
        content = file.read_bytes()
        if b"\0" in content[:4096]:  # binary (Parquet, images)
            continue
        text = content.decode("utf-8", errors="replace")
        found += [f"{path}: {name}" for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert found == []


def test_secrets_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "XSELL_API_KEY": "k-from-env-0123456789",
        "XSELL_LINK_SECRET": "s-from-env-0123456789",
        "XSELL_SMTP_PASSWORD": "p-from-env",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(home=tmp_path)
    assert (settings.api_key, settings.link_secret, settings.smtp_password) == tuple(values.values())
    assert Settings.model_fields["smtp_password"].default is None  # no default SMTP password at all
