"""Offers on request: what the shop's product page, cart or checkout asks for (POST /v1/recommendations).

The same decision path as the offer service (`OfferService.decide_new`): the request's items are
the basket of a purchase-shaped trigger at the time of the request, ranked by the champion (or the
challenger, for a customer in a live experiment's share) with the same candidates, online
features and customer history (what the customer owns, from the fold state), and decided by the
same rules with ``on_request`` set: in-app only, so no e-mail rule or cap applies, the cart's and
owned products are never offered, and an anonymous cart gets the model's cold-start offers.

Per context: at checkout the up-sells of cart items come first (the customer is still choosing);
a product page gets what goes well with the product and what it upgrades to; a cart (and a
checkout) below `free_delivery_threshold` gets one offer that closes the gap.

A `Recommender` is used by one thread at a time (the API serialises calls): it shares the offer
service's caches and store connections.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from services.offers.champion import SERVING_GAUGES
from services.offers.rules import CustomerContext, OfferRules
from services.offers.service import OfferService
from services.queues import batches
from xsell.consumer import settle_heap
from xsell.events import LineItem, PurchaseEvent
from xsell.logs import configure_logging
from xsell.metrics import gauge_samples, set_gauge_samples
from xsell.offers import OfferContext, OfferDecision, OfferType
from xsell.settings import Settings

log = logging.getLogger(__name__)

NUDGE_CONTEXTS = frozenset({OfferContext.CART, OfferContext.CHECKOUT})


class NoModelError(RuntimeError):
    """No champion is registered (or it cannot be loaded) yet: nothing can be ranked."""


@dataclass(frozen=True)
class RequestItem:
    """A product on the page or in the cart; the unit price defaults to the product's current one."""

    product_id: str
    quantity: int = 1
    unit_price: float | None = None


@dataclass(frozen=True)
class OfferRequest:
    """What the shop asks for: offers for these items in this context, for a customer or anonymous."""

    context: OfferContext
    items: tuple[RequestItem, ...]
    customer_id: str | None = None
    limit: int = 3
    request_id: str = ""  # default: a new one per request (it is the decision's event and order id)


@dataclass(frozen=True)
class PricedItem:
    """An item of a request as it was ranked: its name and the unit price used (given, or current)."""

    product_id: str
    name: str | None
    quantity: int
    unit_price: float


@dataclass(frozen=True)
class Recommendation:
    """The answer to a request: the decision (recorded like any other) and its items, priced."""

    decision: OfferDecision
    items: tuple[PricedItem, ...]


def new_request_id() -> str:
    """A fresh id for an offer request (its decision's event and order id)."""
    return f"req-{uuid.uuid4().hex}"


def ordered_for(decision: OfferDecision, context: OfferContext) -> OfferDecision:
    """The decision's offers in the order ``context`` shows them, ranks renumbered: at checkout the
    up-sells first (each class keeps its order), elsewhere as the rules ranked them."""
    offers = list(decision.offers)
    if context is OfferContext.CHECKOUT:
        offers.sort(key=lambda offer: offer.offer_type is not OfferType.UP_SELL)
    renumbered = tuple(offer.model_copy(update={"rank": rank}) for rank, offer in enumerate(offers, start=1))
    return decision.model_copy(update={"offers": renumbered, "context": context})


class Recommender:
    """Decides offers for requests with an `OfferService`'s models, features and rules."""

    def __init__(self, settings: Settings) -> None:
        """Keep the configuration; `opened` opens the stores, feature reader and model watchers."""
        self.settings = settings
        self.service = OfferService(settings)
        self.rules = replace(OfferRules.from_settings(settings), on_request=True)

    @contextmanager
    def opened(self) -> Iterator[Recommender]:
        """The recommender with the offer service's stores and model watchers open; closed on exit."""
        with self.service.opened():
            yield self

    def has_model(self) -> bool:
        """True once a champion is loaded (the first call loads it)."""
        return self.service.champion.current() is not None

    def recommend(self, request: OfferRequest, now: datetime | None = None) -> Recommendation:
        """The answer to one request (see `recommend_batch`)."""
        return self.recommend_batch([request], now)[0]

    def recommend_batch(self, requests: Sequence[OfferRequest], now: datetime | None = None) -> list[Recommendation]:
        """One decision per request, in order: its offers ranked (one ranking for the whole batch)
        and ordered for its context. Raises `NoModelError` while no champion is registered."""
        if not self.has_model():
            raise NoModelError("no champion model is registered yet: train one (`xsell train`)")
        at = now or datetime.now(UTC)
        prices = self._current_prices([item for request in requests for item in request.items])
        ids = [request.request_id or new_request_id() for request in requests]
        events = [
            PurchaseEvent(
                event_id=request_id,
                order_id=request_id,  # offer ids derive from it: each answer's are its own
                customer_id=request.customer_id,
                occurred_at=at,
                lines=tuple(
                    LineItem(
                        product_id=item.product_id,
                        quantity=item.quantity,
                        unit_price=item.unit_price if item.unit_price is not None else prices.get(item.product_id, 0.0),
                    )
                    for item in request.items
                ),
                currency=self.settings.currency,
                channel=request.context.value,
            )
            for request_id, request in zip(ids, requests, strict=True)
        ]
        customers = list(dict.fromkeys(r.customer_id for r in requests if r.customer_id))
        owned = self.service.fold_state.owned_products(customers, as_of=dict.fromkeys(customers, at))
        contexts = {c: CustomerContext(owned=frozenset(owned.get(c, ()))) for c in customers}
        rules_of = {
            event.event_id: replace(
                self.rules,
                max_offers=request.limit,
                free_delivery_threshold=self.rules.free_delivery_threshold
                if request.context in NUDGE_CONTEXTS
                else None,
            )
            for event, request in zip(events, requests, strict=True)
        }
        decided = {d.event_id: d for d in self.service.decide_new(events, contexts, owned, self.rules, rules_of)}
        names = self.service.champion.current().product_names  # type: ignore[union-attr]  # has_model() above
        return [
            Recommendation(
                ordered_for(decided[event.event_id], request.context),
                tuple(
                    PricedItem(ln.product_id, names.get(ln.product_id), ln.quantity, ln.unit_price)
                    for ln in event.lines
                ),
            )
            for event, request in zip(events, requests, strict=True)
        ]

    def _current_prices(self, items: Sequence[RequestItem]) -> dict[str, float]:
        """The current price of each unpriced item's product that the online features know."""
        unpriced = list(dict.fromkeys(item.product_id for item in items if item.unit_price is None))
        if not unpriced:
            return {}
        current = self.service.products.columns(unpriced)["current_price"]
        return {p: float(v) for p, v in zip(unpriced, current.tolist(), strict=True) if np.isfinite(v) and v >= 0}


class RecommenderThread:
    """Serves requests from other threads in micro-batches: `submit` queues a request and returns a
    future; one thread opens the `Recommender` (its stores and caches are used by that thread only),
    or the `RecommenderProcess` that runs one (``settings.recommendation_process``), takes every
    request waiting (at most ``max_batch``), decides them in one ranking and resolves their
    futures; ``on_decided`` (the API's recorder) gets each batch's decisions. A request waits for
    at most the batch before it: ranking a few baskets at once costs little more than one.
    """

    def __init__(
        self,
        settings: Settings,
        on_decided: Callable[[list[OfferDecision]], None] | None = None,
        max_batch: int = 64,
        on_loaded: Callable[[], None] | None = None,
    ) -> None:
        """Keep the configuration; `start` starts the thread (it opens the recommender, loads the
        model, then calls ``on_loaded``: a server settles its heap there; a recommender process
        settles its own)."""
        self.recommender: Recommender | RecommenderProcess = (
            RecommenderProcess(settings) if settings.recommendation_process else Recommender(settings)
        )
        self.on_decided = on_decided
        self.on_loaded = on_loaded
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[OfferRequest, Future[Recommendation]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recommender", daemon=True)
        self._failure: BaseException | None = None

    def start(self) -> RecommenderThread:
        """Start the thread; requests submitted before it has opened the recommender wait for it."""
        self._thread.start()
        return self

    def submit(self, request: OfferRequest) -> Future[Recommendation]:
        """Queue ``request``; the future holds its answer, or `NoModelError`, or the error that
        stopped the recommender from opening."""
        future: Future[Recommendation] = Future()
        if self._failure is not None:
            future.set_exception(self._failure)
        else:
            self._queue.put((request, future))
        return future

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the requests queued so far, then close the recommender."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            with self.recommender.opened():
                self.recommender.has_model()  # load the champion before the first batch
                if self.on_loaded is not None:
                    self.on_loaded()
                self._serve()
        except Exception as error:  # noqa: BLE001 - every waiting and later request gets it
            log.error("recommender failed", extra={"error": f"{type(error).__name__}: {error}"})
            self._failure = error
            self._fail_waiting(error)

    def _serve(self) -> None:
        for batch in batches(self._queue, self.max_batch):
            self._decide(batch)

    def _decide(self, batch: list[tuple[OfferRequest, Future[Recommendation]]]) -> None:
        live = [(request, future) for request, future in batch if future.set_running_or_notify_cancel()]
        try:
            answers = self.recommender.recommend_batch([request for request, _ in live])
        except Exception as error:  # every request of the batch gets it; no model yet is no failure
            if not isinstance(error, NoModelError):
                log.exception("recommendation batch failed")
            for _, future in live:
                future.set_exception(error)
            return
        for (_, future), answer in zip(live, answers, strict=True):
            future.set_result(answer)
        if self.on_decided is not None and answers:
            self.on_decided([answer.decision for answer in answers])

    def _fail_waiting(self, error: BaseException) -> None:
        while True:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                return
            if waiting is not None and waiting[1].set_running_or_notify_cancel():
                waiting[1].set_exception(error)


class RecommenderUnavailable(RuntimeError):
    """The recommender process failed or exited; the next batch starts another."""


class RecommenderProcess:
    """A `Recommender` in a child process, used like one (`opened`, `has_model`,
    `recommend_batch`) from one thread of this process.

    Why a process: ranking a batch is Python work that holds the interpreter lock for
    milliseconds; in the API process it waits for the lock the event loop and the decision
    recorder hold, and they for it, so answers queue behind both. In its own process it takes a
    core of its own. A batch crosses as pickled requests and answers (a fraction of a
    millisecond), and the child's serving-model gauges come back with each answer for this
    process's /metrics. The child is started with ``spawn`` (a fork of a process with broker and
    database threads would copy their locks mid-use) and ends with this process: it is a daemon
    and it exits when its pipe closes. One that exits or fails is replaced at the next batch, and
    the batch it was ranking fails with `RecommenderUnavailable`.
    """

    def __init__(self, settings: Settings, poll_s: float = 1.0) -> None:
        """Keep the configuration; `opened` starts the child (``poll_s``: how often a wait for it
        checks that it is still alive)."""
        self.settings = settings
        self.poll_s = poll_s
        self._loaded = False
        self._child: BaseProcess | None = None
        self._pipe: Connection | None = None
        self._broken = False  # the pipe failed: the child is gone, or going (it may not be reaped yet)

    @contextmanager
    def opened(self) -> Iterator[RecommenderProcess]:
        """The child started and its recommender open (its model loaded, if one is registered);
        stopped on exit. Raises the child's error if it cannot open the recommender."""
        self._start()
        try:
            yield self
        finally:
            self._stop()

    def has_model(self) -> bool:
        """True once the child has a champion loaded (as of its last answer)."""
        return self._loaded

    @property
    def pid(self) -> int | None:
        """The child's process id (None while none runs)."""
        return self._child.pid if self._child is not None else None

    def recommend_batch(self, requests: Sequence[OfferRequest], now: datetime | None = None) -> list[Recommendation]:
        """`Recommender.recommend_batch` in the child; raises `NoModelError` as it does, and
        `RecommenderUnavailable` when the child fails (a new one serves the next batch)."""
        if self._child is None or self._broken or not self._child.is_alive():
            log.error("recommender process is gone; starting another")
            self._stop()
            self._start()
        kind, value, gauges = self._call((list(requests), now))
        set_gauge_samples(SERVING_GAUGES, gauges)
        self._loaded = kind != "no_model"
        if kind == "answers":
            return value  # type: ignore[no-any-return]
        if kind == "no_model":
            raise NoModelError(value)
        raise RecommenderUnavailable(value)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._child = context.Process(
            target=serve_recommendations, args=(self.settings, child_end), name="xsell-recommender", daemon=True
        )
        self._child.start()
        child_end.close()  # the child's end lives in the child: its exit closes the pipe
        kind, value, gauges = self._receive()
        if kind == "failed":
            self._stop()
            raise RecommenderUnavailable(value)
        set_gauge_samples(SERVING_GAUGES, gauges)
        self._loaded = bool(value)

    def _call(self, message: object) -> tuple[str, Any, list[tuple[str, dict[str, str], float]]]:
        assert self._pipe is not None  # started by recommend_batch
        try:
            self._pipe.send(message)
        except (OSError, ValueError) as error:
            self._broken = True
            raise RecommenderUnavailable(f"recommender process unreachable: {error}") from error
        return self._receive()

    def _receive(self) -> tuple[str, Any, list[tuple[str, dict[str, str], float]]]:
        assert self._pipe is not None and self._child is not None
        try:
            while not self._pipe.poll(self.poll_s):
                if not self._child.is_alive():
                    raise EOFError
            return self._pipe.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError) as error:
            self._broken = True
            raise RecommenderUnavailable(f"recommender process exited (exit code {self._child.exitcode})") from error

    def _stop(self, timeout_s: float = 10.0) -> None:
        if self._pipe is not None:
            with suppress(OSError, ValueError):
                self._pipe.send(None)
            self._pipe.close()
            self._pipe = None
        if self._child is not None:
            self._child.join(timeout_s)
            if self._child.is_alive():
                self._child.kill()
                self._child.join()
            self._child = None
        self._broken = False


def serve_recommendations(settings: Settings, pipe: Connection) -> None:
    """The child of a `RecommenderProcess`: open a `Recommender`, report ("ready", has a model,
    gauges) or ("failed", error, []), then answer each (requests, now) message with ("answers",
    recommendations, gauges), ("no_model", message, gauges) or ("error", message, gauges) until
    None or a closed pipe."""
    configure_logging(settings.log_level)
    try:
        with Recommender(settings).opened() as recommender:
            loaded = recommender.has_model()
            settle_heap(settings.gc_young_threshold)
            pipe.send(("ready", loaded, gauge_samples(SERVING_GAUGES)))
            while (message := _next_message(pipe)) is not None:
                requests, now = message
                try:
                    reply: tuple[str, object] = ("answers", recommender.recommend_batch(requests, now))
                except NoModelError as error:
                    reply = ("no_model", str(error))
                except Exception as error:  # the batch's requests get it; the next batch is served
                    log.exception("recommendation batch failed")
                    reply = ("error", f"{type(error).__name__}: {error}")
                pipe.send((*reply, gauge_samples(SERVING_GAUGES)))
    except Exception as error:  # reported to the parent, which raises it
        log.exception("recommender process failed")
        with suppress(OSError):
            pipe.send(("failed", f"{type(error).__name__}: {error}", []))


def _next_message(pipe: Connection) -> tuple[list[OfferRequest], datetime | None] | None:
    """The next message of the parent; None when it says stop or its end is closed."""
    try:
        return pipe.recv()  # type: ignore[no-any-return]
    except EOFError:
        return None
