"""The API application: `create_app(settings)` builds it, `main(settings)` serves it with uvicorn.

The lifespan opens what the handlers depend on (`services.api.deps`): the inbox and preference
stores and the offer-quality facts (what the ops dashboard shows) on `settings.db_url`, and the
feedback publisher, a Kafka producer with acks=all unless one is passed in (unit tests pass a
recorder). OpenAPI is FastAPI's: `/openapi.json` and `/docs`. A 405 lists in `Allow` every method
its path has (`method_not_allowed`), as the spec does.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import jinja2
import uvicorn
from fastapi import FastAPI, HTTPException, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import Scope

from services.api.deps import InboxDep
from services.api.events import DecisionRecorder, EventPublisher, KafkaEventPublisher
from services.api.feedback import FeedbackPublisher, KafkaFeedbackPublisher
from services.api.ratelimit import RateLimiter
from services.api.routes import assets, dashboard, demo, links, offers, purchases, recommendations
from services.feedback.facts import open_facts
from services.inbox.store import InboxStore
from services.offers.recommend import RecommenderThread
from services.preferences import PreferenceStore
from xsell.consumer import settle_heap
from xsell.logs import configure_logging
from xsell.offers import OfferDecision
from xsell.settings import Settings, load_settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


class Health(BaseModel):
    """Liveness and database reachability."""

    status: str


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route of `app` answers at the path of `scope` (a probe per method, matched as routing does)."""
    path, root_path = scope["path"], scope.get("root_path", "")
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({"type": "http", "path": path, "root_path": root_path, "method": method, "headers": []})[0]
            is Match.FULL
            for route in app.router.routes
        )
    ]


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """The 405 with an `Allow` listing every method of the path, not only the first matching route's
    (GET and POST of one path are separate routes, e.g. `/dashboard/login`)."""
    if not isinstance(exc, StarletteHTTPException):  # registered for the status: only HTTPExceptions come here
        raise exc
    methods = allowed_methods(request.app, request.scope)
    headers = {**(exc.headers or {}), "Allow": ", ".join(methods)} if methods else exc.headers
    return await http_exception_handler(request, StarletteHTTPException(exc.status_code, exc.detail, headers))


def create_app(
    settings: Settings,
    publisher: FeedbackPublisher | None = None,
    events: EventPublisher | None = None,
    warm: bool = False,
    server: bool = False,
) -> FastAPI:
    """The xsell API for `settings`; feedback goes to `publisher`, purchases and the decisions of
    offers on request to `events` (Kafka for either when None). With ``warm`` the recommender
    starts loading the model at start-up, else on the first request for offers; a ``server``
    process (not a test's) then settles its heap (`xsell.consumer.settle_heap`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            inbox = InboxStore(settings.db_url)  # first: it creates the SQLite folder
            stack.callback(inbox.close)
            preferences = PreferenceStore(settings.db_url)
            stack.callback(preferences.engine.dispose)
            facts = open_facts(settings.db_url)
            stack.callback(facts.dispose)
            if publisher is None:
                app.state.publisher = stack.enter_context(KafkaFeedbackPublisher(settings))
            else:
                app.state.publisher = publisher
            app.state.events = events or KafkaEventPublisher(settings)
            stack.callback(app.state.events.close)
            recorder = DecisionRecorder(inbox, app.state.events).start()
            stack.callback(recorder.stop)  # after the recommender (callbacks run last first): its last answers
            # a server settles its heap once the model is in: its hundreds of thousands of objects
            # out of every later collection, which otherwise stalls answers for a full collection
            settle = partial(settle_heap, settings.gc_young_threshold) if server else None
            recommender = LazyRecommender(settings, recorder.record, settle)
            stack.callback(recommender.stop)
            if warm:
                recommender()
            app.state.recommender = recommender
            app.state.inbox = inbox
            app.state.preferences = preferences
            app.state.facts = facts
            yield

    app = FastAPI(
        title="xsell",
        summary="In-app cross-sell and up-sell offers, their feedback, and e-mail link endpoints.",
        version="1",
        lifespan=lifespan,
    )
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, method_not_allowed)
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
    app.state.templates = Jinja2Templates(
        env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    )
    app.include_router(offers.router)
    app.include_router(recommendations.router)
    app.include_router(purchases.router)
    app.include_router(links.router)
    app.include_router(dashboard.router)
    app.include_router(assets.router)
    app.include_router(assets.icon_router)
    if settings.demo_enabled:  # the demo page embeds the API key: never on in production
        app.include_router(demo.router)

    @app.get("/metrics", include_in_schema=False)
    def read_metrics() -> Response:
        """This process's Prometheus metrics (text exposition format)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["health"],
        responses={503: {"description": "The database is unreachable."}},
    )
    def read_health(inbox: InboxDep) -> Health:
        """200 when the API can reach its database, 503 otherwise."""
        try:
            inbox.ping()
        except SQLAlchemyError as error:
            raise HTTPException(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail="database unreachable"
            ) from error
        return Health(status="ok")

    return app


class LazyRecommender:
    """The API's `RecommenderThread`, started by the first request for offers (an API that is
    never asked for any loads no model); calling it returns the running thread."""

    def __init__(
        self,
        settings: Settings,
        on_decided: Callable[[list[OfferDecision]], None],
        on_loaded: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_decided = on_decided
        self.on_loaded = on_loaded
        self._thread: RecommenderThread | None = None
        self._lock = threading.Lock()

    def __call__(self) -> RecommenderThread:
        """The running recommender (started now if it is not yet)."""
        with self._lock:
            if self._thread is None:
                self._thread = RecommenderThread(self.settings, self.on_decided, on_loaded=self.on_loaded).start()
            return self._thread

    def stop(self) -> None:
        """Stop the recommender, if it was started."""
        if self._thread is not None:
            self._thread.stop()


def create_app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory services.api.app:create_app_from_env` (several workers)."""
    settings = load_settings()  # the profile derived and, in production, secrets checked
    return create_app(settings, warm=True, server=True)


def main(settings: Settings) -> None:
    """Serve the API on `settings.api_host:api_port` until SIGTERM/SIGINT (uvicorn shuts down gracefully)."""
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings, warm=True, server=True),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep xsell's JSON log lines
        proxy_headers=True,
        server_header=False,
    )
