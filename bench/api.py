"""Benchmark of the shop-facing HTTP API under load: offers on request and purchases over HTTP.

Starts its own stack as `bench.pipeline` does (`bench.stack.running_stack`: every service on free
ports in a temporary XSELL_HOME, the ranker trained on `--data`), then loads the API (a separate
uvicorn process) from this process with an open-loop aiohttp client: requests leave on a fixed
schedule (`--arrivals poisson` or `uniform` at the target rate) whatever the answers, and each
latency runs from the request's scheduled send time, so a queue in the API shows in the figures
(a closed-loop client, one request per user at a time, would wait with it and hide it: coordinated
omission). One connection pool with keep-alive carries every request.

Requests to `POST /v1/recommendations` are carts of real orders of `--data`: 5 distinct products
of one order with its quantities and unit prices; a customer id of the data for `1 - --anonymous-share`
of them (anonymous otherwise); context cart 50%, checkout 30%, product page 20% (one item). They
are drawn at random (`--seed`) into a pool that the steps cycle through.

1. warm-up: `/v1/recommendations` polled until it answers 200 (the first request loads the
   model), then `--warm-up-s` at `--warm-up-rps` (not measured), then a wait until the stack's
   processes idle (`bench.pipeline.wait_quiet`);
2. `reco_*`: `--reco-s` at `--reco-rps`: p50, p99, max, errors (non-2xx or no answer: 0 for a
   valid run), 2xx answers a second (first scheduled send to last answer) and the client's own
   lag behind the schedule;
3. `reco_max_rps`: the rate stepped up through `--steps`, `--step-s` each, a `--pause-s` pause
   between steps: the highest step held with p99 <= `--slo-ms` and no error, every step before it
   held too; stepping stops at the first step not held (after it the pause is `--timeout-s`, so
   what it left waiting has timed out). `reco_steps` has each step's figures;
4. `ingest_*`: `POST /v1/purchases` of real events of `--data` (new order ids, event id left to
   the API) from `--ingest-clients` closed-loop clients for `--ingest-s`: events acknowledged per
   second and the latency of each request; `ingest_batch_*`: the same with `/v1/purchases/batch`
   of `--batch-size` events a request.

Each step's `machine_busy_cores` (every process on the machine) and `bench_cpu_cores` (this
process: the load generator) tell whether the client or the machine's other work was the limit;
`api_cpu_cores` and `api_cpu_ms_per_request` are the API process's own CPU time (with its workers),
which other work on the machine does not inflate.
A progress line per step goes to stderr; one JSON line to stdout.

    .venv/bin/python -m bench.api --data data/online_retail_sample.parquet
    .venv/bin/python -m bench.api --quick
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import random
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import psutil

from xsell.events import EventType, PurchaseEvent
from xsell.logs import configure_logging
from xsell.settings import REPO_ROOT, Settings, load_settings

# (context, share of the requests, items in the request): a product page asks about one product
CONTEXT_MIX: tuple[tuple[str, float, int], ...] = (("cart", 0.5, 5), ("checkout", 0.3, 5), ("product_page", 0.2, 1))
BASKET_SIZE = 5
REQUEST_POOL = 20_000
START_LEAD_S = 0.05  # the schedule starts this far ahead, once the arrival times are computed
READY_POLL_S = 0.5
DETAIL_CHARS = 200
QUICK = {"warm_up_s": 3.0, "reco_s": 5.0, "steps": "50,100,200", "step_s": 4.0, "pause_s": 1.0, "ingest_s": 4.0}
ORDER_MARK = "@@order@@"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; raises ValueError when empty."""
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def arrival_offsets(rate: float, duration_s: float, arrivals: str, rng: random.Random) -> list[float]:
    """Send times (seconds from the start) of the requests at ``rate`` a second for ``duration_s``:
    evenly spaced (``uniform``) or with exponential gaps (``poisson``)."""
    if rate <= 0 or duration_s <= 0:
        return []
    if arrivals == "uniform":
        return [index / rate for index in range(int(rate * duration_s))]
    if arrivals != "poisson":
        raise ValueError(f"unknown arrivals {arrivals!r}: poisson or uniform")
    offsets, at = [], rng.expovariate(rate)
    while at < duration_s:
        offsets.append(at)
        at += rng.expovariate(rate)
    return offsets


@dataclass(frozen=True)
class Outcome:
    """One request: seconds from its scheduled send to its answer, its status (0: no answer), the
    client's lag behind the schedule when it sent it, and what a failed answer said."""

    latency_s: float
    status: int
    lag_s: float = 0.0
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300


@dataclass(frozen=True)
class StepFigures:
    """The figures of one load step."""

    rate: float
    requests: int
    answered_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: int
    statuses: dict[str, int]
    send_lag_p99_ms: float | None
    machine_busy_cores: float | None = None
    bench_cpu_cores: float | None = None
    api_cpu_cores: float | None = None
    api_cpu_ms_per_request: float | None = None
    error_details: list[str] = field(default_factory=list)

    def held(self, slo_ms: float) -> bool:
        """True when every request was answered with a 2xx and the p99 is within ``slo_ms``."""
        return self.requests > 0 and self.errors == 0 and self.p99_ms is not None and self.p99_ms <= slo_ms


def step_figures(rate: float, outcomes: Sequence[Outcome], elapsed_s: float) -> StepFigures:
    """Percentiles (ms), errors and statuses of a step's outcomes; ``rate`` is its target."""
    latencies = [o.latency_s * 1000 for o in outcomes]
    lags = [o.lag_s * 1000 for o in outcomes]
    errors = [o for o in outcomes if not o.ok]
    details = Counter(f"{o.status}: {o.detail}" for o in errors)
    return StepFigures(
        rate=rate,
        requests=len(outcomes),
        answered_per_s=round(sum(o.ok for o in outcomes) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        p50_ms=round(percentile(latencies, 50), 2) if latencies else None,
        p99_ms=round(percentile(latencies, 99), 2) if latencies else None,
        max_ms=round(max(latencies), 2) if latencies else None,
        errors=len(errors),
        statuses={str(status): count for status, count in sorted(Counter(o.status for o in outcomes).items())},
        send_lag_p99_ms=round(percentile(lags, 99), 2) if lags else None,
        error_details=[f"{count}x {detail}" for detail, count in details.most_common(3)],
    )


def held_rate(steps: Sequence[StepFigures], slo_ms: float) -> float | None:
    """The highest rate of the steps held one after the other from the first (None: the first failed)."""
    best = None
    for step in steps:
        if not step.held(slo_ms):
            break
        best = step.rate
    return best


async def run_steps(
    rates: Sequence[float], run_step: Callable[[float], Awaitable[StepFigures]], slo_ms: float
) -> list[StepFigures]:
    """Run a step per rate, in order, up to and including the first one not held."""
    steps = []
    for rate in rates:
        step = await run_step(rate)
        steps.append(step)
        if not step.held(slo_ms):
            break
    return steps


def recommendation_bodies(
    baskets: Sequence[tuple[tuple[str, int, float], ...]],
    customers: Sequence[str],
    count: int,
    anonymous_share: float,
    rng: random.Random,
) -> tuple[list[bytes], dict[str, float]]:
    """``count`` JSON bodies of `POST /v1/recommendations` drawn from ``baskets`` (product, quantity,
    unit price) by `CONTEXT_MIX`, anonymous for ``anonymous_share``; with the shares drawn (contexts
    and anonymous)."""
    contexts = [name for name, _, _ in CONTEXT_MIX]
    weights = [share for _, share, _ in CONTEXT_MIX]
    sizes = {name: size for name, _, size in CONTEXT_MIX}
    bodies, drawn = [], Counter[str]()
    for _ in range(count):
        context = rng.choices(contexts, weights)[0]
        basket = rng.choice(baskets)[: sizes[context]]
        body: dict[str, object] = {
            "context": context,
            "items": [{"product_id": p, "quantity": q, "unit_price": price} for p, q, price in basket],
        }
        if rng.random() >= anonymous_share:
            body["customer_id"] = rng.choice(customers)
        else:
            drawn["anonymous"] += 1
        drawn[context] += 1
        bodies.append(json.dumps(body).encode())
    return bodies, {name: round(drawn[name] / count, 3) for name in [*contexts, "anonymous"]}


def data_baskets(events: Sequence[PurchaseEvent], size: int) -> list[tuple[tuple[str, int, float], ...]]:
    """``size`` distinct products (with quantity and unit price) of each purchase with at least that many."""
    baskets = []
    for event in events:
        if event.event_type is not EventType.PURCHASE:
            continue
        lines = {line.product_id: (line.product_id, line.quantity, line.unit_price) for line in event.lines}
        if len(lines) >= size:
            baskets.append(tuple(lines.values())[:size])
    return baskets


class PurchaseBodies:
    """JSON bodies of the data's events for `POST /v1/purchases`, again and again with new order ids
    (this run's tag and a counter) and no event id (the API derives it from the order)."""

    def __init__(self, events: Sequence[PurchaseEvent]) -> None:
        """Keep each event as JSON split around its order id."""
        mark = json.dumps(ORDER_MARK)
        self.templates = [
            tuple(json.dumps({**e.model_dump(mode="json", exclude={"event_id"}), "order_id": ORDER_MARK}).split(mark))
            for e in events
        ]
        self.tag = uuid.uuid4().hex[:8]
        self.count = itertools.count()

    def event(self) -> str:
        """The next event as JSON."""
        index = next(self.count)
        before, after = self.templates[index % len(self.templates)]
        return f"{before}{json.dumps(f'bench-{self.tag}-{index}')}{after}"

    def single(self) -> bytes:
        """A body with one event."""
        return self.event().encode()

    def batch(self, size: int) -> bytes:
        """A batch body with ``size`` events."""
        return ('{"events":[' + ",".join(self.event() for _ in range(size)) + "]}").encode()


async def send(session: aiohttp.ClientSession, url: str, body: bytes, due: float) -> Outcome:
    """POST ``body``; the outcome timed from ``due`` (event-loop time)."""
    loop = asyncio.get_running_loop()
    lag = loop.time() - due
    try:
        async with session.post(url, data=body) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as error:
        return Outcome(loop.time() - due, 0, lag, f"{type(error).__name__}: {error}"[:DETAIL_CHARS])
    detail = None if 200 <= status < 300 else text[:DETAIL_CHARS]
    return Outcome(loop.time() - due, status, lag, detail)


async def open_loop(
    session: aiohttp.ClientSession, url: str, bodies: Iterator[bytes], offsets: Sequence[float]
) -> tuple[list[Outcome], float]:
    """Send a request at each offset (seconds from now) whatever the answers; the outcomes and the
    seconds from the first scheduled send to the last answer."""
    loop = asyncio.get_running_loop()
    start = loop.time() + START_LEAD_S
    tasks = []
    for offset in offsets:
        due = start + offset
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(send(session, url, next(bodies), due)))
    outcomes = await asyncio.gather(*tasks)
    return list(outcomes), loop.time() - start


async def closed_loop(
    session: aiohttp.ClientSession, url: str, body: Callable[[], bytes], clients: int, duration_s: float
) -> tuple[list[Outcome], float]:
    """``clients`` clients each sending a request as soon as its previous one is answered, for
    ``duration_s``; the outcomes (timed from each send) and the seconds until the last answer."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    outcomes: list[Outcome] = []

    async def client() -> None:
        while loop.time() - start < duration_s:
            outcomes.append(await send(session, url, body(), loop.time()))

    await asyncio.gather(*(client() for _ in range(clients)))
    return outcomes, loop.time() - start


class CpuWatch:
    """CPU time between its creation and `figures`: busy cores of the machine, of this process (the
    load generator) and of the API (its process and its workers, when ``api_pid`` is known)."""

    def __init__(self, api_pid: int | None) -> None:
        """Take the first reading."""
        self.api_pid = api_pid
        self.at, self.machine, self.bench, self.api = (
            time.perf_counter(),
            self._machine(),
            self._bench(),
            self._api(),
        )

    def figures(self, requests: int) -> dict[str, float | None]:
        """Busy cores since the first reading, and the API's CPU milliseconds per request of ``requests``."""
        elapsed = time.perf_counter() - self.at
        api_s = self._api() - self.api if self.api_pid is not None else None
        return {
            "machine_busy_cores": round((self._machine() - self.machine) / elapsed, 2),
            "bench_cpu_cores": round((self._bench() - self.bench) / elapsed, 2),
            "api_cpu_cores": round(api_s / elapsed, 2) if api_s is not None else None,
            "api_cpu_ms_per_request": round(api_s / requests * 1000, 2) if api_s is not None and requests else None,
        }

    @staticmethod
    def _machine() -> float:
        times = psutil.cpu_times()
        return float(times.user + times.nice + times.system + times.irq + times.softirq)

    @staticmethod
    def _bench() -> float:
        times = psutil.Process().cpu_times()
        return float(times.user + times.system)

    def _api(self) -> float:
        from bench.pipeline import tree_cpu_s  # noqa: PLC0415  (the stack's modules: slow to import)

        return 0.0 if self.api_pid is None else tree_cpu_s(self.api_pid)


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"bench.api: {message}", file=sys.stderr, flush=True)


def step_line(name: str, step: StepFigures) -> str:
    """A step's figures in one line."""
    target = f" {step.rate:g}/s" if step.rate else ""  # a closed-loop step has no target rate
    return (
        f"{name}{target}: {step.requests} requests, {step.answered_per_s}/s answered, p50 {step.p50_ms} ms, "
        f"p99 {step.p99_ms} ms, errors {step.errors}, busy cores {step.machine_busy_cores} "
        f"(bench {step.bench_cpu_cores}, API {step.api_cpu_cores}: {step.api_cpu_ms_per_request} ms a request)"
    )


class ApiLoad:
    """The load steps against one API: its URLs, the client session, the request bodies."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        reco_bodies: Sequence[bytes],
        args: argparse.Namespace,
        api_pid: int | None = None,
    ) -> None:
        """Keep the session, the bodies, the settings of the steps and the API's pid (for its CPU time)."""
        self.api_pid = api_pid
        self.reco_url = f"{base_url}/v1/recommendations"
        self.purchase_url = f"{base_url}/v1/purchases"
        self.session = session
        self.reco_bodies = itertools.cycle(reco_bodies)
        self.args = args
        self.rng = random.Random(args.seed)

    async def wait_ready(self, timeout_s: float) -> float:
        """Poll `/v1/recommendations` until it answers 200; the seconds it took."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        last: Outcome | None = None
        while loop.time() - start < timeout_s:
            last = await send(self.session, self.reco_url, next(self.reco_bodies), loop.time())
            if last.ok:
                return loop.time() - start
            await asyncio.sleep(READY_POLL_S)
        raise TimeoutError(f"/v1/recommendations did not answer 200 within {timeout_s:.0f}s; last: {last}")

    async def reco_step(self, rate: float, duration_s: float | None = None) -> StepFigures:
        """Open-loop requests for offers at ``rate`` for ``duration_s`` (default `--step-s`)."""
        offsets = arrival_offsets(rate, duration_s or self.args.step_s, self.args.arrivals, self.rng)
        watch = CpuWatch(self.api_pid)
        outcomes, elapsed = await open_loop(self.session, self.reco_url, self.reco_bodies, offsets)
        step = step_figures(rate, outcomes, elapsed)
        step = StepFigures(**{**asdict(step), **watch.figures(len(outcomes))})
        progress(step_line("reco", step))
        # after a step not held, every request it left waiting times out (both sides) before the next
        held = step.held(self.args.slo_ms)
        await asyncio.sleep(self.args.pause_s if held else max(self.args.pause_s, self.args.timeout_s))
        return step

    async def ingest(self, bodies: PurchaseBodies, batch_size: int) -> tuple[StepFigures, float]:
        """Closed-loop purchases (one a request, or batches of ``batch_size``); the figures and the
        events acknowledged a second."""
        url = self.purchase_url if batch_size == 1 else f"{self.purchase_url}/batch"

        def body() -> bytes:
            return bodies.single() if batch_size == 1 else bodies.batch(batch_size)

        watch = CpuWatch(self.api_pid)
        outcomes, elapsed = await closed_loop(self.session, url, body, self.args.ingest_clients, self.args.ingest_s)
        step = StepFigures(**{**asdict(step_figures(0.0, outcomes, elapsed)), **watch.figures(len(outcomes))})
        per_s = round(sum(o.ok for o in outcomes) * batch_size / elapsed, 1)
        name = "ingest" if batch_size == 1 else f"ingest batches of {batch_size}"
        progress(f"{step_line(name, step)}, {per_s} events/s acknowledged")
        await asyncio.sleep(self.args.pause_s)
        return step, per_s


def short(step: StepFigures) -> dict[str, object]:
    """A step's figures for `reco_steps`."""
    return {
        "rate": step.rate,
        "answered_per_s": step.answered_per_s,
        "p50_ms": step.p50_ms,
        "p99_ms": step.p99_ms,
        "errors": step.errors,
        "machine_busy_cores": step.machine_busy_cores,
        "bench_cpu_cores": step.bench_cpu_cores,
        "api_cpu_cores": step.api_cpu_cores,
        "api_cpu_ms_per_request": step.api_cpu_ms_per_request,
    }


async def measure(
    settings: Settings,
    reco_bodies: Sequence[bytes],
    purchases: PurchaseBodies,
    args: argparse.Namespace,
    api_pid: int | None = None,
    base_url: str | None = None,
) -> dict[str, object]:
    """Warm the API up, wait for the stack to go quiet (a stack of its own: no ``base_url``), then
    run the recommendation and ingest steps; their figures."""
    from bench.pipeline import CpuMeter, wait_quiet  # noqa: PLC0415  (the stack's modules: slow to import)

    own_stack = base_url is None
    base_url = base_url or f"http://{settings.api_host}:{settings.api_port}"
    # The client's heap holds what starting the stack imported and built: a full collection of it
    # stalls the send schedule for hundreds of milliseconds, counted as the API's latency.
    gc.collect()
    gc.freeze()
    connector = aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=args.keepalive_s)
    timeout = aiohttp.ClientTimeout(total=args.timeout_s)
    headers = {"X-API-Key": settings.api_key, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        load = ApiLoad(base_url, session, reco_bodies, args, api_pid)
        ready_s = await load.wait_ready(args.ready_timeout_s)
        progress(
            f"the API answers offers after {ready_s:.1f}s; warming up {args.warm_up_s:g}s at {args.warm_up_rps:g}/s"
        )
        warm_up = await load.reco_step(args.warm_up_rps, args.warm_up_s)
        settle_s = 0.0
        if own_stack:
            settle_s, idle_cores = wait_quiet(CpuMeter(settings))  # the stack's start-up work done
            progress(f"the stack is quiet after {settle_s:.0f}s more ({idle_cores:.2f} cores busy)")
        reco = await load.reco_step(args.reco_rps, args.reco_s)
        steps = await run_steps(args.step_rates, load.reco_step, args.slo_ms)
        ingest, ingest_per_s = await load.ingest(purchases, 1)
        batch, batch_per_s = await load.ingest(purchases, args.batch_size)
    return {
        "reco_p50_ms": reco.p50_ms,
        "reco_p99_ms": reco.p99_ms,
        "reco_max_ms": reco.max_ms,
        "reco_errors": reco.errors,
        "valid": reco.errors == 0,
        "reco_answered_per_s": reco.answered_per_s,
        "reco_send_lag_p99_ms": reco.send_lag_p99_ms,
        "reco_machine_busy_cores": reco.machine_busy_cores,
        "reco_bench_cpu_cores": reco.bench_cpu_cores,
        "reco_api_cpu_cores": reco.api_cpu_cores,
        "reco_api_cpu_ms_per_request": reco.api_cpu_ms_per_request,
        "reco_max_rps": held_rate(steps, args.slo_ms),
        "reco_steps": [short(step) for step in steps],
        "ingest_http_per_s": ingest_per_s,
        "ingest_p50_ms": ingest.p50_ms,
        "ingest_p99_ms": ingest.p99_ms,
        "ingest_errors": ingest.errors,
        "ingest_machine_busy_cores": ingest.machine_busy_cores,
        "ingest_api_cpu_ms_per_request": ingest.api_cpu_ms_per_request,
        "ingest_batch_http_per_s": batch_per_s,
        "ingest_batch_requests_per_s": batch.answered_per_s,
        "ingest_batch_p50_ms": batch.p50_ms,
        "ingest_batch_p99_ms": batch.p99_ms,
        "ingest_batch_errors": batch.errors,
        "ingest_batch_api_cpu_ms_per_request": batch.api_cpu_ms_per_request,
        "warm_up": {
            "ready_after_s": round(ready_s, 1),
            "p99_ms": warm_up.p99_ms,
            "errors": warm_up.errors,
            "then_quiet_after_s": round(settle_s, 1),
        },
        "error_details": {
            name: step.error_details
            for name, step in [
                ("warm_up", warm_up),
                ("reco", reco),
                *((f"step_{s.rate:g}", s) for s in steps),
                ("ingest", ingest),
                ("ingest_batch", batch),
            ]
            if step.error_details
        },
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); `--quick` shortens every duration."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "online_retail_sample.parquet")
    parser.add_argument("--profile", choices=("local", "production"), default="local", help="the stack's profile")
    parser.add_argument(
        "--api-url",
        default=None,
        help="load this running API (e.g. http://127.0.0.1:8000) instead of starting a stack; its key from "
        "XSELL_API_KEY; the API's own CPU figures are then not measured",
    )
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson", help="the schedule's gaps")
    parser.add_argument("--seed", type=int, default=7, help="of the request draw and the Poisson schedule")
    parser.add_argument("--anonymous-share", type=float, default=0.2, help="share of carts without a customer id")
    parser.add_argument("--warm-up-rps", type=float, default=50.0)
    parser.add_argument("--warm-up-s", type=float, default=10.0)
    parser.add_argument("--reco-rps", type=float, default=200.0, help="the rate of reco_p50_ms and reco_p99_ms")
    parser.add_argument("--reco-s", type=float, default=30.0)
    parser.add_argument(
        "--steps",
        default="25,50,100,200,300,400,600,800,1000,1200",
        help="rates of the reco_max_rps steps, comma-separated",
    )
    parser.add_argument("--step-s", type=float, default=15.0, help="duration of each step")
    parser.add_argument(
        "--pause-s", type=float, default=3.0, help="pause after each step (--timeout-s after one not held)"
    )
    parser.add_argument("--slo-ms", type=float, default=50.0, help="the p99 a step must keep to be held")
    parser.add_argument("--ingest-clients", type=int, default=16, help="closed-loop clients of the ingest steps")
    parser.add_argument("--ingest-s", type=float, default=20.0, help="duration of each ingest step")
    parser.add_argument("--batch-size", type=int, default=100, help="events per /v1/purchases/batch request")
    parser.add_argument(
        "--connections",
        type=int,
        default=0,
        help="the keep-alive pool's connection limit; 0: none, so the pool never holds a request back",
    )
    parser.add_argument(
        "--keepalive-s",
        type=float,
        default=4.0,
        help="an idle connection is closed by the client after this; below uvicorn's 5 s, so the client never "
        "sends on a connection the server is closing",
    )
    parser.add_argument("--timeout-s", type=float, default=10.0, help="a request without an answer by then fails")
    parser.add_argument("--ready-timeout-s", type=float, default=180.0, help="wait this long for the first 200")
    parser.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the stack's logs folder here before teardown"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {', '.join(f'{k}={v}' for k, v in QUICK.items())}"
    )
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    args.step_rates = [float(rate) for rate in args.steps.split(",") if rate.strip()]
    return args


def main() -> None:
    """Run the benchmark and print its figures as one JSON line."""
    args = parse_args()
    from bench.stack import running_stack  # noqa: PLC0415  (every service: slow to import, the unit tests need none)
    from infra.processes import ServiceProcesses  # noqa: PLC0415  (as slow)
    from services.ingest.replay import select_events  # noqa: PLC0415  (pandas: as slow)
    from xsell.history import read_purchase_history  # noqa: PLC0415  (pandas: as slow)

    configure_logging("WARNING")
    events = list(select_events(read_purchase_history(args.data)))
    rng = random.Random(args.seed)
    customers = sorted({e.customer_id for e in events if e.customer_id})
    baskets = data_baskets(events, BASKET_SIZE)
    reco_bodies, mix = recommendation_bodies(baskets, customers, REQUEST_POOL, args.anonymous_share, rng)
    load_before = os.getloadavg()
    progress(f"{len(baskets)} baskets of {BASKET_SIZE} products; load average {load_before[0]:.1f}; starting the stack")
    if args.api_url:  # someone else's API (its key from XSELL_API_KEY): the client's figures only
        settings = load_settings()
        figures = asyncio.run(measure(settings, reco_bodies, PurchaseBodies(events), args, base_url=args.api_url))
        api: dict[str, object] = {"api_url": args.api_url}
    else:
        with running_stack("xsell-bench-api-", args.data, args.profile) as settings:
            progress(f"stack up, API on port {settings.api_port}")
            api_pid = ServiceProcesses(settings).pid("api")
            figures = asyncio.run(measure(settings, reco_bodies, PurchaseBodies(events), args, api_pid))
            if args.keep_logs is not None:
                shutil.copytree(settings.home / "logs", args.keep_logs, dirs_exist_ok=True)
            api = {"api_workers": settings.api_workers, "api_rate_per_s": settings.api_rate_per_s}
    print(
        json.dumps(
            {
                "benchmark": "api",
                **figures,
                "settings": {
                    "data": str(args.data),
                    "profile": args.profile,
                    **api,
                    "arrivals": args.arrivals,
                    "reco_rps": args.reco_rps,
                    "reco_s": args.reco_s,
                    "warm_up": f"{args.warm_up_s:g}s at {args.warm_up_rps:g}/s",
                    "steps": args.step_rates,
                    "step_s": args.step_s,
                    "slo_p99_ms": args.slo_ms,
                    "request_mix": {
                        "contexts": {name: f"{share:.0%}, {size} item(s)" for name, share, size in CONTEXT_MIX},
                        "drawn": mix,
                        "pool": REQUEST_POOL,
                        "baskets": len(baskets),
                        "items": "distinct products of one real order, with its quantities and unit prices",
                    },
                    "ingest_clients": args.ingest_clients,
                    "ingest_s": args.ingest_s,
                    "batch_size": args.batch_size,
                    "connections": args.connections,
                    "keepalive_s": args.keepalive_s,
                    "quick": args.quick,
                },
                "machine": {
                    "cores": os.cpu_count(),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
