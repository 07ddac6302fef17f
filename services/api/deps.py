"""Dependencies of the API handlers, declared once as `Annotated` aliases.

Everything comes from `app.state`, filled by `create_app`'s lifespan: the settings, the inbox and
preference stores, the feedback publisher and the templates. `require_api_key` guards the whole `/v1`
router (`dependencies=[Depends(require_api_key)]`, so no route can forget it): the shop's backend sends the key as `X-API-Key`; a missing or wrong key is a 401.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from fastapi.templating import Jinja2Templates

from services.api.feedback import FeedbackPublisher
from services.inbox.store import InboxStore
from services.preferences import PreferenceStore
from xsell.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The shop backend's API key.")


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_inbox(request: Request) -> InboxStore:
    """The in-app offer store."""
    return request.app.state.inbox


def get_preferences(request: Request) -> PreferenceStore:
    """The contact-preference store."""
    return request.app.state.preferences


def get_publisher(request: Request) -> FeedbackPublisher:
    """Where feedback facts go (Kafka in the service, a recorder in unit tests)."""
    return request.app.state.publisher


def get_templates(request: Request) -> Jinja2Templates:
    """The autoescaping Jinja2 templates."""
    return request.app.state.templates


SettingsDep = Annotated[Settings, Depends(get_settings)]
InboxDep = Annotated[InboxStore, Depends(get_inbox)]
PreferencesDep = Annotated[PreferenceStore, Depends(get_preferences)]
PublisherDep = Annotated[FeedbackPublisher, Depends(get_publisher)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


def require_api_key(settings: SettingsDep, key: Annotated[str | None, Security(api_key_header)]) -> str:
    """The caller's key if it matches `XSELL_API_KEY` (constant-time); 401 otherwise."""
    expected = settings.api_key.encode()
    if not key or not expected or not hmac.compare_digest(key.encode(), expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Missing or invalid API key.",
            headers={"WWW-Authenticate": "APIKey"},
        )
    return key

