"""The ops dashboard: offer quality at a glance, for the people who run xsell.

`/dashboard` is an HTML page whose script fetches `/dashboard/data` (the offer-quality report of
`services.feedback.report` plus offers sent per purchase day and decision latency over time),
`/dashboard/experiment` (the live experiment, champion against challenger:
`services.feedback.experiment`), `/dashboard/pipeline` (dead letters and
e-mail delivery outcomes), `/dashboard/model` (the champion's version and the as_of and age of
the candidate index it serves, from the MLflow registry) and `/dashboard/freshness` (the ages of the
model, its index and the purchase archive, and each consumer group's lag: `services.api.freshness`)
and draws them with Plotly.js, served by the API (`/static/plotly.min.js`).
The date-range and offer-type filters refetch both; filters live in the page's query string, so a
view can be shared.

Access: the API key. Operators type it into `/dashboard/login`, which sets a signed session cookie
(`services.api.session`; HttpOnly, SameSite=Strict, scoped to /dashboard, Secure over HTTPS); the
JSON endpoints also take it as `X-API-Key`. Without either, the page redirects to the login form and
the JSON endpoints answer 401. The page is fine with Kafka down: the dead-letter count and the
consumer lag are then null ("n/a") and everything else still shows.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import closing
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from kafka.errors import KafkaError
from pydantic import BeforeValidator, WithJsonSchema
from sqlalchemy.exc import SQLAlchemyError

from infra.kafka.lag import consumer_lag
from models.index_source import serving_index
from services.api.deps import (
    FactsDep,
    SettingsDep,
    TemplatesDep,
    has_dashboard_access,
    is_api_key,
    require_dashboard_access,
)
from services.api.freshness import age_s, freshness
from services.api.session import COOKIE_NAME, SESSION_TTL_S, sign_session
from services.delivery.outbox import Outbox
from services.feedback.experiment import experiment_report
from services.feedback.report import (
    latency_over_time,
    latest_model_version,
    newest_purchase_at,
    offer_quality,
    offers_sent_per_day,
)
from services.ingest.dead_letter import dead_letter_count
from xsell.offers import OfferType, as_utc
from xsell.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

COOKIE_PATH = "/dashboard"
MAX_LOGIN_BODY_BYTES = 4096
DLQ_TIMEOUT_S = 2.0
REGISTRY_TIMEOUT_S = 5.0  # the first read imports mlflow; a slow or unreachable server answers "n/a"
REGISTRY_TTL_S = 15.0  # as often as the offer service asks the registry
NO_STORE = {"Cache-Control": "no-store"}
FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)
BOUND_FORMATS = "a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 date-time with its offset"


def parse_bound(value: object) -> datetime:
    """A date filter as an aware UTC datetime: a full date is its midnight UTC, a date-time keeps its instant
    (clamped to the representable range). Anything else (a number, a naive or partial time) is a ValueError: 422."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    text = value if isinstance(value, str) else ""
    if FULL_DATE.fullmatch(text):
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if DATE_TIME.fullmatch(text):
        moment = datetime.fromisoformat(text.upper())
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # an instant just outside years 1..9999 in UTC
            return datetime.min.replace(tzinfo=UTC) if moment.year == 1 else datetime.max.replace(tzinfo=UTC)
    raise ValueError(f"expected {BOUND_FORMATS}")


# The query string carries what the page's date inputs send (a full date) or a precise instant; the
# spec says exactly that, so a value schemathesis draws outside both formats is the 422 it expects.
DateBound = Annotated[
    datetime,
    BeforeValidator(parse_bound),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}),
]
Since = Annotated[DateBound | None, Query(description=f"Offers decided at or after this: {BOUND_FORMATS}.")]
Until = Annotated[DateBound | None, Query(description=f"Offers decided before this: {BOUND_FORMATS}.")]
OfferTypeFilter = Annotated[OfferType | None, Query(description="Only offers of this type.")]


def _page_headers(nonce: str) -> dict[str, str]:
    """No caching, no framing, scripts only from the API (and the page's own nonce)."""
    policy = (
        "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    return {
        **NO_STORE,
        "Content-Security-Policy": policy.format(nonce=nonce),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _login_page(request: Request, templates: TemplatesDep, error: str | None, status_code: int) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return templates.TemplateResponse(
        request,
        "dashboard_login.html",
        {"error": error, "nonce": nonce},
        status_code=status_code,
        headers=_page_headers(nonce),
    )


@router.get(
    "",
    response_class=HTMLResponse,
    responses={303: {"description": "No session and no valid X-API-Key: to the login form."}},
    # The key is optional here: the session cookie also lets a browser in, and without either the page
    # redirects (303) rather than refusing. `{}` is OpenAPI's "no credentials" alternative.
    openapi_extra={"security": [{}]},
)
def read_dashboard(
    request: Request, templates: TemplatesDep, allowed: Annotated[bool, Depends(has_dashboard_access)]
) -> Response:
    """The dashboard page (its script fetches the figures); without a session, a redirect to the login form."""
    if not allowed:
        return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER, headers=NO_STORE)
    nonce = secrets.token_urlsafe(16)
    offer_types = [kind.value for kind in OfferType]
    return templates.TemplateResponse(
        request, "dashboard.html", {"nonce": nonce, "offer_types": offer_types}, headers=_page_headers(nonce)
    )


@router.get("/login", response_class=HTMLResponse)
def read_login(request: Request, templates: TemplatesDep) -> HTMLResponse:
    """The login form: one field, the API key."""
    return _login_page(request, templates, None, status.HTTP_200_OK)


@router.post(
    "/login",
    response_class=HTMLResponse,
    responses={
        303: {"description": "Logged in: session cookie set, to the dashboard."},
        401: {"description": "Wrong key: the form again."},
    },
)
async def create_session(request: Request, settings: SettingsDep, templates: TemplatesDep) -> Response:
    """Check the posted key (form field `key`); if right, set the session cookie and go to the dashboard."""
    body = await request.body()
    fields = parse_qs(body.decode("utf-8", "replace")) if len(body) <= MAX_LOGIN_BODY_BYTES else {}
    key = (fields.get("key") or [""])[0]
    if not is_api_key(settings, key):
        log.warning("dashboard login refused")
        return _login_page(request, templates, "That key is not valid.", status.HTTP_401_UNAUTHORIZED)
    response = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER, headers=NO_STORE)
    response.set_cookie(
        COOKIE_NAME,
        sign_session(settings.link_secret, settings.api_key, time.time()),
        max_age=SESSION_TTL_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("dashboard login")
    return response


@router.post("/logout", responses={303: {"description": "Session cookie cleared, to the login form."}})
def delete_session(request: Request) -> Response:
    """End the session (clear the cookie)."""
    response = RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER, headers=NO_STORE)
    response.delete_cookie(
        COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@router.get(
    "/data",
    dependencies=[Depends(require_dashboard_access)],
    responses={401: {"description": "No session and no valid X-API-Key."}},
)
def read_dashboard_data(
    facts: FactsDep, response: Response, since: Since = None, until: Until = None, offer_type: OfferTypeFilter = None
) -> dict[str, Any]:
    """`offer_quality` of the offers decided in [since, until) (of one type), plus offers sent per
    purchase day by type, the decision latency percentiles over time and the model version of the
    newest offer (the one serving)."""
    response.headers.update(NO_STORE)
    kind = offer_type.value if offer_type else None
    since, until = (as_utc(bound) if bound else None for bound in (since, until))
    return {
        **offer_quality(facts, since=since, until=until, offer_type=kind),
        "offers_sent_per_day": offers_sent_per_day(facts, since=since, until=until, offer_type=kind),
        "latency_over_time": latency_over_time(facts, since=since, until=until),
        "latest_model_version": latest_model_version(facts, since=since, until=until, offer_type=kind),
    }


@router.get(
    "/experiment",
    dependencies=[Depends(require_dashboard_access)],
    responses={401: {"description": "No session and no valid X-API-Key."}},
)
def read_experiment(
    facts: FactsDep, response: Response, since: Since = None, until: Until = None, offer_type: OfferTypeFilter = None
) -> dict[str, Any]:
    """The live experiment on the offers decided in [since, until) (of one type): champion against
    challenger, per variant, with 95% intervals and the verdict (`experiment_report`)."""
    response.headers.update(NO_STORE)
    since, until = (as_utc(bound) if bound else None for bound in (since, until))
    return experiment_report(facts, since=since, until=until, offer_type=offer_type.value if offer_type else None)


@router.get(
    "/pipeline",
    dependencies=[Depends(require_dashboard_access)],
    responses={401: {"description": "No session and no valid X-API-Key."}},
)
def read_pipeline_health(settings: SettingsDep, response: Response) -> dict[str, Any]:
    """Records in the dead-letter topic and e-mails per outbox status (each null when unreachable)."""
    response.headers.update(NO_STORE)
    dead_letters: int | None
    try:
        dead_letters = dead_letter_count(settings, timeout_s=DLQ_TIMEOUT_S)
    except KafkaError as error:
        log.warning("dead-letter count unavailable", extra={"error": type(error).__name__})
        dead_letters = None
    delivery: dict[str, int] | None
    try:
        with closing(Outbox.for_settings(settings)) as outbox:
            delivery = outbox.counts()
    except (SQLAlchemyError, OSError) as error:
        log.warning("outbox counts unavailable", extra={"error": type(error).__name__})
        delivery = None
    return {"dlq_topic": settings.topic_purchases_dlq, "dlq_records": dead_letters, "delivery": delivery}


class _RegistryReader:
    """`serving_index` in a worker thread, its answer kept for REGISTRY_TTL_S: a dashboard request
    waits at most REGISTRY_TIMEOUT_S, and an unreachable MLflow costs one thread, not one per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-registry")
        self._pending: dict[str, Future[dict[str, object] | None]] = {}
        self._cached: dict[str, tuple[float, dict[str, object] | None]] = {}

    def read(self, settings: Settings) -> dict[str, object] | None:
        key = f"{settings.tracking_uri}|{settings.model_name}|{settings.champion_alias}"
        with self._lock:
            cached = self._cached.get(key)
            if cached is not None and time.monotonic() - cached[0] < REGISTRY_TTL_S:
                return cached[1]
            future = self._pending.get(key)
            if future is None or future.done():
                future = self._pending[key] = self._executor.submit(serving_index, settings)
        try:
            value = future.result(timeout=REGISTRY_TIMEOUT_S)
        except FutureTimeout:
            log.warning("registry read timed out", extra={"timeout_s": REGISTRY_TIMEOUT_S})
            return cached[1] if cached is not None else None
        except Exception as error:  # noqa: BLE001  (the page shows n/a; the registry may be down)
            log.warning("registry unavailable", extra={"error": type(error).__name__})
            value = None
        with self._lock:
            self._cached[key] = (time.monotonic(), value)
        return value


_registry = _RegistryReader()


@router.get(
    "/model",
    dependencies=[Depends(require_dashboard_access)],
    responses={401: {"description": "No session and no valid X-API-Key."}},
)
def read_serving_model(settings: SettingsDep, facts: FactsDep, response: Response) -> dict[str, Any]:
    """The champion's version and the candidate index it serves (its MLflow run, as_of), from the
    registry (the offer service swaps a new one in within `XSELL_MODEL_REFRESH_S`), and the index's
    age: how long before the newest purchase in the facts it was built as of (each null when unknown)."""
    response.headers.update(NO_STORE)
    serving = _registry.read(settings) or {}
    newest = newest_purchase_at(facts)
    as_of = serving.get("index_as_of")
    return {
        "model_version": serving.get("model_version"),
        "index_run_id": serving.get("index_run_id"),
        "index_as_of": as_of,
        "newest_purchase_at": newest.isoformat() if newest else None,
        "index_age_s": age_s(newest, datetime.fromisoformat(str(as_of)) if as_of is not None else None),
    }


@router.get(
    "/freshness",
    dependencies=[Depends(require_dashboard_access)],
    responses={401: {"description": "No session and no valid X-API-Key."}},
)
def read_freshness(settings: SettingsDep, facts: FactsDep, response: Response) -> dict[str, Any]:
    """How fresh what serves is (`services.api.freshness.freshness`): the champion's age since it
    was registered, its index's age and the archive's delay behind the newest purchase, and each
    consumer group's lag on the broker (null when Kafka does not answer within a short timeout)."""
    response.headers.update(NO_STORE)
    lag: dict[str, int | None] | None
    try:
        lag = consumer_lag(settings, list(settings.consumer_groups.values()), timeout_s=DLQ_TIMEOUT_S)
    except KafkaError as error:
        log.warning("consumer lag unavailable", extra={"error": type(error).__name__})
        lag = None
    return freshness(_registry.read(settings) or {}, facts, lag, now=datetime.now(UTC))
