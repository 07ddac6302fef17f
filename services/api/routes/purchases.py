"""`POST /v1/purchases` and `POST /v1/purchases/batch` (up to 500 events): purchase events over HTTP, for a shop without a Kafka client.

The body is the purchase-event contract (`xsell.events.PurchaseEvent`), validated as ingestion
validates a record from Kafka (strict JSON: a quantity sent as "2" is an error, not a 2), with
``event_id`` optional: without it, the event id derives from the order id and event type, so the
same order sent twice is one event downstream. An invalid body gets 422 listing every failing
field, and nothing of it is produced. The answer, 202 with the event ids, comes only once the
broker acknowledged every event (`services.api.events`); the broker down gets 503 with Retry-After.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from services.api.deps import EventsDep, limit_rate, require_api_key
from services.api.events import BrokerUnavailable
from services.api.routes.offers import KEYED_RESPONSES, retry_later, unavailable
from xsell.events import PurchaseEvent, event_id_for

ModelT = TypeVar("ModelT", bound=BaseModel)

router = APIRouter(
    prefix="/v1",
    tags=["purchases"],
    dependencies=[Depends(require_api_key), Depends(limit_rate)],
    responses={
        **KEYED_RESPONSES,
        422: {
            "description": "The body is not a valid purchase event: every failing field is listed; nothing was produced."
        },
        503: retry_later("The broker did not acknowledge; send the same request again later (it is idempotent)."),
    },
)


class PurchaseIn(PurchaseEvent):
    """A purchase event as the shop sends it: the contract, with the event id optional."""

    event_id: str | None = Field(  # type: ignore[assignment]  # optional here, always set on the wire
        default=None,
        min_length=1,
        max_length=128,
        description="Default: derived from order_id and event_type (the same order gives the same id).",
    )

    def to_event(self) -> PurchaseEvent:
        """The contract's event, its id derived from the order when none was sent."""
        fields = {**self.__dict__, "event_id": self.event_id or event_id_for(self.order_id, self.event_type)}
        return PurchaseEvent.model_construct(**fields)  # every field is validated already


MAX_BATCH_EVENTS = 500  # of the API's contract: a batch is one request a shop retries whole


class PurchaseBatchIn(BaseModel):
    """Several purchase events in one request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[PurchaseIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class PurchasesAccepted(BaseModel):
    """Every event is acknowledged by the broker."""

    event_ids: list[str]
    count: int


def _parsed(model: type[ModelT], raw: bytes) -> ModelT:
    """``raw`` validated as JSON against ``model``, or FastAPI's 422 with every failing field."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "The body is not UTF-8 JSON", "input": None}]
        ) from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False, include_context=False)]
        ) from None


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of ``model``, its nested definitions inlined (the route reads the
    raw body, so FastAPI does not register them as components).

    A pattern's final ``$`` gets ``(?![\\s\\S])`` after it: in JSON Schema (ECMA-262) and in the
    validator ``$`` is the end of the string, but a client that reads the pattern as Python does
    would let ``$`` match before a final newline too, and send e-mail addresses the contract refuses."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: _end_anchored(value) if key == "pattern" else inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return {"required": True, "content": {"application/json": {"schema": inline(schema)}}}


def _end_anchored(pattern: str) -> str:
    return f"{pattern}(?![\\s\\S])" if pattern.endswith("$") else pattern


def _publish(events: list[PurchaseEvent], publisher: EventsDep) -> PurchasesAccepted:
    try:
        publisher.publish_purchases(events)
    except BrokerUnavailable as error:
        raise unavailable(str(error), error.retry_after_s) from error
    ids = [event.event_id for event in events]
    return PurchasesAccepted(event_ids=ids, count=len(ids))


@router.post(
    "/purchases",
    response_model=PurchasesAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={"requestBody": _body_schema(PurchaseIn)},
)
async def create_purchase(request: Request, publisher: EventsDep) -> PurchasesAccepted:
    """Produce one purchase (or cancellation) event to `purchases`; 202 once the broker has it."""
    event = _parsed(PurchaseIn, await request.body()).to_event()
    return await run_in_threadpool(_publish, [event], publisher)  # waiting for the broker blocks


@router.post(
    "/purchases/batch",
    response_model=PurchasesAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={"requestBody": _body_schema(PurchaseBatchIn)},
)
async def create_purchases(request: Request, publisher: EventsDep) -> PurchasesAccepted:
    """Produce several events to `purchases`; 202 once the broker has all of them (a retry of a
    batch that failed in part produces the acknowledged ones again: their ids are the same)."""
    batch = _parsed(PurchaseBatchIn, await request.body())
    return await run_in_threadpool(_publish, [event.to_event() for event in batch.events], publisher)
