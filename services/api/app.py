"""The API application: `create_app(settings)` builds it, `main(settings)` serves it with uvicorn.

The lifespan opens what the handlers depend on (`services.api.deps`): the inbox and preference
stores and the offer-quality facts (what the ops dashboard shows) on `settings.db_url`, and the
feedback publisher, a Kafka producer with acks=all unless one is passed in (unit tests pass a
recorder). OpenAPI is FastAPI's: `/openapi.json` and `/docs`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import jinja2
import uvicorn
from fastapi import FastAPI, HTTPException, Response, status
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from services.api.deps import InboxDep
from services.api.feedback import FeedbackPublisher, KafkaFeedbackPublisher
from services.api.routes import assets, dashboard, demo, links, offers
from services.feedback.facts import open_facts
from services.inbox.store import InboxStore
from services.preferences import PreferenceStore
from xsell.logs import configure_logging
from xsell.settings import Settings, load_settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


class Health(BaseModel):
    """Liveness and database reachability."""

    status: str


def create_app(settings: Settings, publisher: FeedbackPublisher | None = None) -> FastAPI:
    """The xsell API for `settings`; feedback goes to `publisher`, or to Kafka when None."""

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
    app.state.settings = settings
    app.state.templates = Jinja2Templates(
        env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    )
    app.include_router(offers.router)
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


def create_app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory services.api.app:create_app_from_env` (several workers)."""
    return create_app(load_settings())  # the profile derived and, in production, secrets checked


def main(settings: Settings) -> None:
    """Serve the API on `settings.api_host:api_port` until SIGTERM/SIGINT (uvicorn shuts down gracefully)."""
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep xsell's JSON log lines
        proxy_headers=True,
        server_header=False,
    )
