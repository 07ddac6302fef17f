"""Dependencies of the API handlers, declared once as `Annotated` aliases.

Everything comes from `app.state`, filled by `create_app`'s lifespan: the settings, the inbox and
preference stores, the feedback publisher and the templates. `require_api_key` guards the whole `/v1`
router (`dependencies=[Depends(require_api_key)]`, so no route can forget it): the shop's backend sends the key as `X-API-Key`; a missing or wrong key is a 401.
Every dependency is a coroutine, though none awaits: FastAPI runs a plain function
dependency in its thread pool, a thread hop per dependency and request, which cost the API more
than the work they do. `has_dashboard_access` lets the ops dashboard in with either that key or the signed session cookie
its login form sets (`services.api.session`); `require_dashboard_access` guards its JSON endpoints.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine

from services.api.events import EventPublisher
from services.api.feedback import FeedbackPublisher
from services.api.ratelimit import RateLimiter
from services.api.session import COOKIE_NAME, verify_session
from services.inbox.store import InboxStore
from services.offers.recommend import RecommenderThread
from services.preferences import PreferenceStore
from xsell.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The shop backend's API key.")


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_inbox(request: Request) -> InboxStore:
    """The in-app offer store."""
    inbox: InboxStore = request.app.state.inbox
    return inbox


async def get_preferences(request: Request) -> PreferenceStore:
    """The contact-preference store."""
    preferences: PreferenceStore = request.app.state.preferences
    return preferences


async def get_publisher(request: Request) -> FeedbackPublisher:
    """Where feedback facts go (Kafka in the service, a recorder in unit tests)."""
    publisher: FeedbackPublisher = request.app.state.publisher
    return publisher


async def get_templates(request: Request) -> Jinja2Templates:
    """The autoescaping Jinja2 templates."""
    templates: Jinja2Templates = request.app.state.templates
    return templates


async def get_facts(request: Request) -> Engine:
    """The offer-quality facts database (`services.feedback.facts`)."""
    facts: Engine = request.app.state.facts
    return facts


SettingsDep = Annotated[Settings, Depends(get_settings)]
InboxDep = Annotated[InboxStore, Depends(get_inbox)]
PreferencesDep = Annotated[PreferenceStore, Depends(get_preferences)]
PublisherDep = Annotated[FeedbackPublisher, Depends(get_publisher)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
FactsDep = Annotated[Engine, Depends(get_facts)]


def is_api_key(settings: Settings, key: str | None) -> bool:
    """True if `key` is `XSELL_API_KEY` (constant-time; an empty configured key matches nothing)."""
    if not key or not settings.api_key:
        return False
    return hmac.compare_digest(key.encode(), settings.api_key.encode())


async def require_api_key(settings: SettingsDep, key: Annotated[str | None, Security(api_key_header)]) -> str:
    """The caller's key if it matches `XSELL_API_KEY` (constant-time); 401 otherwise."""
    if key is None or not is_api_key(settings, key):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Missing or invalid API key.",
            headers={"WWW-Authenticate": "APIKey"},
        )
    return key


async def has_dashboard_access(
    request: Request, settings: SettingsDep, key: Annotated[str | None, Security(api_key_header)]
) -> bool:
    """True with a valid `X-API-Key` or a valid, unexpired dashboard session cookie."""
    session = request.cookies.get(COOKIE_NAME)
    return is_api_key(settings, key) or verify_session(settings.link_secret, settings.api_key, session, time.time())


async def require_dashboard_access(allowed: Annotated[bool, Depends(has_dashboard_access)]) -> None:
    """401 unless the caller has dashboard access (API key or session cookie)."""
    if not allowed:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Log in at /dashboard/login or send X-API-Key.",
            headers={"WWW-Authenticate": "APIKey"},
        )


async def get_rate_limiter(request: Request) -> RateLimiter:
    """The per-key request rate limit (`services.api.ratelimit`)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def limit_rate(
    key: Annotated[str, Depends(require_api_key)], limiter: Annotated[RateLimiter, Depends(get_rate_limiter)]
) -> None:
    """429 with Retry-After when the caller's key is over its rate (after the key check)."""
    retry_after = limiter.retry_after(key)
    if retry_after:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail="Too many requests for this API key; retry later.",
            headers={"Retry-After": str(retry_after)},
        )


async def get_events(request: Request) -> EventPublisher:
    """Where purchases and the decisions of offers on request are produced."""
    events: EventPublisher = request.app.state.events
    return events


async def get_recommender(request: Request) -> RecommenderThread:
    """The micro-batching recommender of offers on request, started on first use."""
    recommender: RecommenderThread = request.app.state.recommender()
    return recommender


EventsDep = Annotated[EventPublisher, Depends(get_events)]
RecommenderDep = Annotated[RecommenderThread, Depends(get_recommender)]
