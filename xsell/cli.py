"""`xsell`: the one command line in front of every stage.

Each subcommand reads settings from `XSELL_*` environment variables when it starts (see
`xsell.settings.Settings`). Stage modules are imported inside the commands, so `--help` is fast.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from xsell.logs import configure_logging
from xsell.settings import Settings, get_settings

console = Console(stderr=True)
app = typer.Typer(
    help="xsell: cross-sell and up-sell offers after every purchase (Kafka, Feast, LightGBM, MLflow).",
    no_args_is_help=True,
    add_completion=False,
)
stack_app = typer.Typer(help="Start, stop and inspect the local stack (the Kafka broker).", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
features_app = typer.Typer(
    help="The Feast feature store: apply definitions, backfill from history, materialize, inspect, stream.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")

DataOption = Annotated[
    Path, typer.Option("--data", help="Purchase history: CSV or Parquet, canonical or UCI Online Retail layout.")
]


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level)
    return settings


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"not an ISO 8601 date: {value!r} (e.g. 2011-09-01 or 2011-09-01T08:00:00+00:00)")
        raise
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- stack ----------------------------------------------------------------------------------------
@stack_app.command("up")
def stack_up() -> None:
    """Fetch the broker's jars once, format storage on first start, start it and create the topics."""
    from infra.kafka.broker import BrokerError  # noqa: PLC0415
    from infra.stack import stack_up as up  # noqa: PLC0415

    settings = _settings()
    try:
        report = up(settings)
    except BrokerError as error:
        _fail(str(error))
        return
    console.print(f"[green]stack up[/] in {report.seconds:.1f}s: Kafka {settings.kafka_version} on "
                  f"{settings.kafka_bootstrap} (pid {report.broker.pid}), topics {report.topics}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop whatever `stack up` started (the data stays under XSELL_HOME)."""
    from infra.stack import stack_down as down  # noqa: PLC0415

    stopped = down(_settings())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Say what runs, on which ports, with which pids."""
    from infra.stack import stack_status as status  # noqa: PLC0415

    rows = status(_settings())
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table("component", "running", "pid", "address", "details")
    for row in rows:
        table.add_row(row["component"], "yes" if row["running"] else "no", str(row["pid"] or "-"),
                      row["address"], row["details"])
    Console().print(table)


# -- event stage -----------------------------------------------------------------------------------
@app.command()
def replay(
    data: DataOption,
    rate: Annotated[float | None, typer.Option(help="Events per second (default: as fast as possible).")] = None,
    speedup: Annotated[float | None, typer.Option(help="Replay at X times real time (86400 = a day a second).")] = None,
    since: Annotated[str | None, typer.Option(help="Only orders at or after this ISO date.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most N events.")] = None,
) -> None:
    """Produce a purchase-history file to `purchases` as events, in time order (acks=all)."""
    from services.ingest.replay import Pacing  # noqa: PLC0415
    from xsell.history import UnknownLayoutError  # noqa: PLC0415

    settings = _settings()
    try:
        report = _replay_with_progress(settings, data, Pacing(rate=rate, speedup=speedup), _parse_date(since), limit)
    except (UnknownLayoutError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
        return
    print(json.dumps(report.as_dict()))


def _replay_with_progress(settings: Settings, data: Path, pacing: object, since: datetime | None,
                          limit: int | None) -> object:
    """Replay `data` with a progress bar on stderr; return the ReplayReport."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from services.ingest.replay import produce_events, select_events, ReplayReport  # noqa: PLC0415
    from xsell.history import count_events, read_purchase_history  # noqa: PLC0415
    import time  # noqa: PLC0415

    started = time.monotonic()
    history = read_purchase_history(data)
    total = count_events(history.lines, since, limit)
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("replay", total=total)
        sent = produce_events(settings, select_events(history, since, limit), pacing,  # type: ignore[arg-type]
                              on_sent=lambda _event: progress.advance(task))
    return ReplayReport(sent=sent, skipped=history.rejected, seconds=time.monotonic() - started)


@app.command()
def ingest(
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="Stop once every partition is read to its end.")
    ] = False,
) -> None:
    """Validate every record on `purchases`; dead-letter bad ones to `purchases.dlq` with the reason."""
    from services.ingest.validator import IngestService  # noqa: PLC0415

    summary = IngestService(_settings(), until_caught_up=until_caught_up).run()
    print(json.dumps(summary.as_dict()))


# -- feature store ---------------------------------------------------------------------------------
@features_app.command("apply")
def features_apply() -> None:
    """Register entities, feature views and feature services in the Feast registry (`feast apply`)."""
    from features.store import apply_definitions  # noqa: PLC0415

    names = apply_definitions(_settings())
    console.print(f"applied {len(names)} Feast objects: {', '.join(names)}")


@features_app.command("backfill")
def features_backfill(data: DataOption) -> None:
    """Compute every feature from a purchase-history file: offline store, fold state, online store."""
    from rich.progress import Progress  # noqa: PLC0415

    from features.backfill import backfill  # noqa: PLC0415
    from xsell.history import UnknownLayoutError  # noqa: PLC0415

    settings = _settings()
    try:
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("folding days", total=None)
            report = backfill(settings, data, on_day=lambda done, total: progress.update(task, completed=done, total=total))
    except (UnknownLayoutError, FileNotFoundError) as error:
        _fail(str(error))
        return
    print(json.dumps(report.as_dict()))


@features_app.command("materialize")
def features_materialize() -> None:
    """Load the latest offline values into the online store (`feast materialize`)."""
    from features.backfill import materialize  # noqa: PLC0415

    materialize(_settings())
    console.print("materialized")


@features_app.command("show")
def features_show(
    customer: Annotated[str | None, typer.Option(help="A customer id.")] = None,
    product: Annotated[list[str] | None, typer.Option(help="A product id (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the values as JSON.")] = False,
) -> None:
    """Print the online feature values of a customer and/or products."""
    from features.online import customer_online_features, product_online_features  # noqa: PLC0415
    from features.store import open_feature_store  # noqa: PLC0415

    if not customer and not product:
        _fail("give --customer ID and/or --product ID")
    store = open_feature_store(_settings())
    values: dict[str, object] = {}
    if customer:
        values["customer"] = customer_online_features(store, [customer])[0]
    if product:
        values["products"] = product_online_features(store, list(product))
    if as_json:
        print(json.dumps(values, default=str))
        return
    for title, rows in (("customer", [values.get("customer")]), ("product", values.get("products", []))):
        for row in rows:
            if row:
                table = Table("feature", "value", title=title)
                for name, value in row.items():  # type: ignore[union-attr]
                    table.add_row(name, "-" if value is None else str(value))
                Console().print(table)


@features_app.command("pipeline")
def features_pipeline(
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="Stop once every partition is read to its end.")
    ] = False,
) -> None:
    """Stream `purchases` into the feature store (own consumer group; SIGTERM stops it cleanly)."""
    from features.pipeline import FeaturePipeline  # noqa: PLC0415

    stats = FeaturePipeline(_settings(), until_caught_up=until_caught_up).run()
    print(json.dumps(stats.__dict__))


# -- offers: delivery, in-app, API -----------------------------------------------------------------
UntilCaughtUp = Annotated[bool, typer.Option("--until-caught-up", help="Stop once every partition is read to its end.")]


@app.command()
def offers(until_caught_up: UntilCaughtUp = False) -> None:
    """Answer every purchase on `purchases` with an offer decision on `offers` (champion model + rules)."""
    from services.offers.service import OfferService  # noqa: PLC0415

    stats = OfferService(_settings(), until_caught_up=until_caught_up).run()
    print(json.dumps(stats.__dict__, default=str))


@app.command()
def deliver(until_caught_up: UntilCaughtUp = False) -> None:
    """Send offer e-mails from `offers` through an outbox (retries with backoff; never twice)."""
    from services.delivery.service import DeliveryService  # noqa: PLC0415

    settings = _settings()
    service = DeliveryService(settings, retry_base_s=settings.delivery_retry_base_s,
                              retry_max_s=settings.delivery_retry_max_s, currency=settings.currency)
    if until_caught_up:
        service.loop.until_caught_up = True
    stats = service.run()
    print(json.dumps({"stats": stats.__dict__, "outbox": service.outbox.counts()}, default=str))


@app.command()
def inbox(until_caught_up: UntilCaughtUp = False) -> None:
    """Store in-app offers from `offers` for the API to serve."""
    from services.inbox.consumer import InboxService  # noqa: PLC0415

    summary = InboxService(_settings(), until_caught_up=until_caught_up).run()
    print(json.dumps(summary.__dict__, default=str))


@app.command()
def api() -> None:
    """Serve the HTTP API (in-app offers, feedback, e-mail links, demo page) with uvicorn."""
    from services.api.app import main  # noqa: PLC0415

    main(_settings())


# -- the main job ----------------------------------------------------------------------------------
@app.command()
def run(
    data: Annotated[Path | None, typer.Option(help="Purchase history to replay (default: the shipped sample).")] = None,
) -> None:
    """The main job on embedded defaults: stack up, replay the sample, validate it, print a summary."""
    from infra.kafka.broker import BrokerError  # noqa: PLC0415
    from infra.stack import stack_up as up  # noqa: PLC0415
    from services.ingest.replay import Pacing  # noqa: PLC0415
    from services.ingest.validator import IngestService  # noqa: PLC0415

    settings = _settings()
    source = data or settings.sample_data
    try:
        stack = up(settings)
    except BrokerError as error:
        _fail(str(error))
        return
    console.print(f"[green]stack up[/] ({stack.seconds:.1f}s): Kafka on {settings.kafka_bootstrap}")
    replayed = _replay_with_progress(settings, source, Pacing(), None, None)
    console.print(f"replayed {source.name}: {json.dumps(replayed.as_dict())}")  # type: ignore[attr-defined]
    summary = IngestService(settings, until_caught_up=True).run()
    _print_summary(summary.as_dict())
    console.print("stop everything with [bold]make stop[/] (or `xsell stack down`)")


def _print_summary(summary: dict[str, object]) -> None:
    table = Table("ingested", "count", title="xsell run: summary")
    for key, value in summary.items():
        if key != "dead_lettered_by_reason":
            table.add_row(key.replace("_", " "), str(value))
    for reason, count in dict(summary["dead_lettered_by_reason"]).items():  # type: ignore[call-overload]
        table.add_row(f"  dead-lettered: {reason}", str(count))
    Console().print(table)
    sys.stdout.flush()


if __name__ == "__main__":
    app()
