"""`xsell`: the one command line in front of every stage.

Each subcommand reads settings from `XSELL_*` environment variables when it starts (see
`xsell.settings.Settings`). Stage modules are imported inside the commands, so `--help` is fast.
A one-shot command logs to `XSELL_HOME/logs/<command>.log` and shows only xsell's warnings; a
service (`ingest`, `offers`, `api`, ...) logs JSON lines to stderr for its operator.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.experiment import experiment_app, print_status
from xsell.errors import UserError
from xsell.logs import configure_logging, show_only_actionable_warnings
from xsell.settings import PROFILES, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from services.ingest.replay import Pacing, ReplayReport

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
index_app = typer.Typer(
    help="The champion's candidate index: rebuild it from every order line the feature pipeline has seen.",
    no_args_is_help=True,
)
app.add_typer(index_app, name="index")
app.add_typer(experiment_app, name="experiment")


@app.callback()
def _entry() -> None:
    """xsell: cross-sell and up-sell offers after every purchase (Kafka, Feast, LightGBM, MLflow)."""
    show_only_actionable_warnings()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars per download


DataOption = Annotated[
    Path, typer.Option("--data", help="Purchase history: CSV or Parquet, canonical or UCI Online Retail layout.")
]


UntilCaughtUp = Annotated[bool, typer.Option("--until-caught-up", help="Stop once every partition is read to its end.")]


def _settings(*, service: bool = False, **overrides: object) -> Settings:
    """The command's settings (``load_settings``: the profile derived, secrets checked), its home
    checked and its logging configured: a `service` logs JSON lines to stderr, any other command to
    ``XSELL_HOME/logs/<command>.log`` (e.g. ``features-backfill.log``) with only xsell's warnings on
    the terminal. A problem is one line and exit 1."""
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        _fail(str(error))
    _check_home(settings.home)
    log_file = None if service else settings.home / "logs" / f"{_command_name()}.log"
    try:
        configure_logging(settings.log_level, log_file)
    except OSError as error:
        _fail(f"cannot write the log file {log_file} ({error.strerror or error}); set XSELL_HOME to a writable folder")
    return settings


def _command_name() -> str:
    """The subcommand's words on the command line, joined by dashes (`xsell features backfill
    --data F` -> features-backfill; every parameter of xsell is an option, so the words come first)."""
    words: list[str] = []
    for word in sys.argv[1:3]:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        words.append(word)
    return "-".join(words) or "xsell"


def _check_home(home: Path) -> None:
    """Fail clearly, naming the path, when XSELL_HOME is not a writable folder with some free space."""
    probe = home / f".write-probe-{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as error:
        with contextlib.suppress(OSError):
            probe.unlink()
        _fail(
            f"XSELL_HOME {home} is not a writable folder with free space ({error.strerror or error}); "
            "set XSELL_HOME to another folder or free some space"
        )


def _fail(message: str) -> None:
    _print_error(message)
    raise typer.Exit(code=1)


def _print_error(message: str) -> None:
    # one line, never wrapped: a pipe or a log file must get the message whole
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def _require_broker(settings: Settings, timeout_s: float = 3.0) -> None:
    """Fail in one line, at once, when no bootstrap server of `settings.kafka_bootstrap` accepts a
    connection (the Kafka client would retry for half a minute and end in a traceback)."""
    for address in settings.kafka_bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        with contextlib.suppress(OSError, ValueError):
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
            return
    _fail(
        f"Kafka broker not reachable at {settings.kafka_bootstrap}: start it with `xsell stack up` "
        "(or `make run`), or set XSELL_KAFKA_BOOTSTRAP to a running broker's host:port"
    )


def _require_free_port(host: str, port: int, variable: str) -> None:
    """Fail in one line when something already listens on host:port (the server could not bind it)."""
    from infra.local_server import port_in_use

    if port_in_use(host, port):
        _fail(f"port {port} on {host} is in use: stop what listens there or set {variable} to a free port")


def _nothing_trained(settings: Settings) -> bool:
    """True when the tracking store is XSELL_HOME's own SQLite file and it does not exist yet: no
    model was trained into it (known without importing MLflow, which would create the store)."""
    local_store = settings.tracking_uri.removeprefix("sqlite:///")
    return local_store != settings.tracking_uri and not Path(local_store).exists()


def _require_champion(settings: Settings) -> None:
    """Fail in one line, before any slow work, when the registry has no champion version to serve
    or score (``require_champion``; at once when nothing was trained into XSELL_HOME's own store)."""
    from models.registry import NoChampionError, open_tracking, require_champion

    try:
        if _nothing_trained(settings):
            raise NoChampionError(
                f"{settings.model_name} has no '{settings.champion_alias}' version: train a model first "
                "(xsell train --data FILE)"
            )
        require_champion(open_tracking(settings), settings)
    except NoChampionError as error:
        _fail(f"no champion model: {error}")


def _quiet_mlflow() -> None:
    """Send what MLflow prints to stderr outside logging ("Successfully registered model ...",
    "Created version ...") to the command's log instead: a command that registers a model says so
    in its own summary. MLflow switches its stream back on after some calls (``enable_logging``),
    so the stream's writes are rerouted rather than disabled."""
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    mlflow_log = logging.getLogger(f"{__name__}.mlflow")  # mlflow's own logger does not propagate

    def to_log(text: str) -> int:
        if text.strip():
            mlflow_log.info(text.strip())
        return len(text)

    MLFLOW_LOGGING_STREAM.write = to_log  # type: ignore[method-assign]
    MLFLOW_LOGGING_STREAM.flush = lambda: None  # type: ignore[method-assign]


def _every_seconds(every: str | None) -> float | None:
    """Seconds of an `--every` interval (None without one); a bad interval is a one-line error."""
    from training.schedule import parse_every

    if every is None:
        return None
    try:
        return parse_every(every)
    except ValueError as error:
        _fail(str(error))
        raise


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
def stack_up(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="local (Kafka + SMTP capture) or production (+ Redis, PostgreSQL, MLflow server, "
            "purchases at 12 partitions); default XSELL_PROFILE.",
        ),
    ] = None,
) -> None:
    """Fetch the broker's jars once, format storage on first start, start it and create the topics."""
    from infra.kafka.broker import BrokerError
    from infra.mlflow_server import MlflowServerError
    from infra.postgres import PostgresError
    from infra.redis import RedisError
    from infra.stack import stack_up as up
    from services.schema import create_schema

    if profile is not None and profile not in PROFILES:
        _fail(f"--profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    settings = _settings() if profile is None else _settings(profile=profile)
    try:
        report = up(settings, create_schema)
    except (BrokerError, RedisError, PostgresError, MlflowServerError) as error:
        _fail(str(error))
        return
    console.print(
        f"[green]stack up[/] ({settings.profile}) in {report.seconds:.1f}s: Kafka {settings.kafka_version} on "
        f"{settings.kafka_bootstrap} (pid {report.broker.pid}), topics {report.topics}"
    )
    if settings.profile != "local":
        console.print(
            f"online store {settings.feast_online_store} {settings.redis_url}, MLflow {settings.tracking_uri}, "
            f"database {settings.db_url}"
        )


@stack_app.command("down")
def stack_down() -> None:
    """Stop whatever `stack up` started (the data stays under XSELL_HOME)."""
    from infra.stack import stack_down as down

    stopped = down(_settings())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Say what runs, on which ports, with which pids."""
    from infra.stack import stack_status as status

    rows = status(_settings())
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table("component", "running", "pid", "address", "details")
    for row in rows:
        table.add_row(
            row["component"], "yes" if row["running"] else "no", str(row["pid"] or "-"), row["address"], row["details"]
        )
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
    settings = _settings()
    _require_broker(settings)
    from services.ingest.replay import Pacing
    from xsell.history import UnknownLayoutError

    try:
        report = _replay_with_progress(settings, data, Pacing(rate=rate, speedup=speedup), _parse_date(since), limit)
    except (UnknownLayoutError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
        return
    print(json.dumps(report.as_dict()))


def _replay_with_progress(
    settings: Settings, data: Path, pacing: Pacing, since: datetime | None, limit: int | None
) -> ReplayReport:
    """Replay `data` with a progress bar on stderr; return the ReplayReport."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from services.ingest.replay import ReplayReport, produce_events, select_events
    from xsell.history import count_events, read_purchase_history

    started = time.monotonic()
    history = read_purchase_history(data)
    total = count_events(history.lines, since, limit)
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("replay", total=total)
        sent = produce_events(
            settings,
            select_events(history, since, limit),
            pacing,
            on_sent=lambda _event: progress.advance(task),
        )
    return ReplayReport(sent=sent, skipped=history.rejected, seconds=time.monotonic() - started)


@app.command()
def archive(until_caught_up: UntilCaughtUp = False) -> None:
    """Keep every valid purchase and cancellation on `purchases` in the purchase archive (the
    configured database), each line once: the source `xsell train` and `xsell retrain` read."""
    from services.ingest.archive import ArchiveService

    stats = ArchiveService(_settings(service=True), until_caught_up=until_caught_up).run()
    print(json.dumps(stats.__dict__))


@app.command()
def ingest(
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="Stop once every partition is read to its end.")
    ] = False,
) -> None:
    """Validate every record on `purchases`; dead-letter bad ones to `purchases.dlq` with the reason."""
    from services.ingest.validator import IngestService

    summary = IngestService(_settings(service=True), until_caught_up=until_caught_up).run()
    print(json.dumps(summary.as_dict()))


# -- feature store ---------------------------------------------------------------------------------
@features_app.command("apply")
def features_apply() -> None:
    """Register entities, feature views and feature services in the Feast registry (`feast apply`)."""
    from features.store import apply_definitions

    names = apply_definitions(_settings())
    console.print(f"applied {len(names)} Feast objects: {', '.join(names)}")


@features_app.command("backfill")
def features_backfill(data: DataOption) -> None:
    """Compute every feature from a purchase-history file: offline store, fold state, online store;
    the file's order lines go into the purchase archive too (lines archived before are kept once)."""
    from rich.progress import Progress

    from features.backfill import backfill
    from xsell.history import UnknownLayoutError

    settings = _settings()
    try:
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("folding days", total=None)
            report = backfill(
                settings, data, on_day=lambda done, total: progress.update(task, completed=done, total=total)
            )
    except (UnknownLayoutError, FileNotFoundError) as error:
        _fail(str(error))
        return
    print(json.dumps(report.as_dict()))


@features_app.command("materialize")
def features_materialize() -> None:
    """Load the latest offline values into the online store (`feast materialize`)."""
    from features.backfill import materialize

    materialize(_settings())
    console.print("materialized")


@features_app.command("show")
def features_show(
    customer: Annotated[str | None, typer.Option(help="A customer id.")] = None,
    product: Annotated[list[str] | None, typer.Option(help="A product id (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the values as JSON.")] = False,
) -> None:
    """Print the online feature values of a customer and/or products."""
    from features.online import customer_online_features, product_online_features
    from features.store import open_feature_store

    if not customer and not product:
        _fail("give --customer ID and/or --product ID")
    store = open_feature_store(_settings())
    customer_row = customer_online_features(store, [customer])[0] if customer else None
    product_rows = product_online_features(store, list(product)) if product else []
    if as_json:
        values: dict[str, object] = {}
        if customer:
            values["customer"] = customer_row
        if product:
            values["products"] = product_rows
        print(json.dumps(values, default=str))
        return
    for title, rows in (("customer", [customer_row] if customer_row else []), ("product", product_rows)):
        for row in rows:
            if row:
                table = Table("feature", "value", title=title)
                for name, value in row.items():
                    table.add_row(name, "-" if value is None else str(value))
                Console().print(table)


@features_app.command("pipeline")
def features_pipeline(
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="Stop once every partition is read to its end.")
    ] = False,
) -> None:
    """Stream `purchases` into the feature store (own consumer group; SIGTERM stops it cleanly)."""
    from features.pipeline import FeaturePipeline

    stats = FeaturePipeline(_settings(service=True), until_caught_up=until_caught_up).run()
    print(json.dumps(stats.__dict__))


# -- training: the ranker ------------------------------------------------------------------------------
@app.command()
def train(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Purchase history: CSV or Parquet, canonical or UCI Online Retail layout. Default: the purchase "
            "archive (what `xsell archive` stored from the stream and `xsell import` loaded).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="From the archive: lines at or after this ISO date (default: --until minus 365 days)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="From the archive: lines before this ISO date (default: after the newest line).")
    ] = None,
    backfill: Annotated[
        bool | None,
        typer.Option(
            help="Backfill the feature store first: from DATA (default with --data), or from the whole archive "
            "(default off without --data: the feature pipeline folded the archived purchases already)."
        ),
    ] = None,
) -> None:
    """Build the training set, train the LightGBM ranker, evaluate it against the baselines on the
    held-out period, log everything to MLflow and register the model (the first version becomes
    champion). Trains on DATA, or on the purchase archive's last 365 days. Prints a JSON summary
    with the MLflow run id."""
    settings = _settings()
    _quiet_mlflow()
    if data is not None:
        if since or until:
            _fail("--since and --until choose a window of the archive: leave them out with --data")
        from training.commands import train as run_training

        print(json.dumps(run_training(settings, data, backfill=backfill is not False), default=str))
        return
    from training.retrain import train_from_archive

    summary = train_from_archive(settings, _parse_date(since), _parse_date(until), backfill=bool(backfill))
    print(json.dumps(summary, default=str))


@app.command()
def retrain(
    every: Annotated[
        str | None,
        typer.Option(
            "--every", help="Run as a service: retrain every interval (7d, 1d, 12h; the first one interval from now)."
        ),
    ] = None,
    live_trial: Annotated[
        bool,
        typer.Option(
            "--live-trial", help="Make the new version the challenger even when it beats the champion offline."
        ),
    ] = False,
) -> None:
    """One step for a scheduler: train from the purchase archive (its last 365 days), compare the
    new version with the champion on the same held-out data, then promote it if it wins or make it
    the challenger (it serves XSELL_CHALLENGER_SHARE of the customers; `xsell experiment` follows
    the live trial). Prints a JSON summary."""
    import signal
    import threading

    from training.retrain import retrain as run_retrain
    from training.retrain import retrain_every

    interval = _every_seconds(every)
    settings = _settings(service=interval is not None)
    _quiet_mlflow()
    if interval is None:
        result = run_retrain(settings, live_trial)
        keys = ("model_version", "run_id", "outcome", "message", "champion_version", "gate", "archive", "seconds")
        print(json.dumps({key: result[key] for key in keys if key in result}, default=str))
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(json.dumps(retrain_every(settings, interval, stop, live_trial).__dict__, default=str))


@app.command("import")
def import_history(data: DataOption) -> None:
    """Load a historical export (canonical or UCI layout) into the purchase archive, the training
    source; lines already archived (from an earlier import or from the stream) are not added again."""
    from features.archive import PurchaseArchive
    from xsell.history import read_purchase_history

    settings = _settings()
    history = read_purchase_history(data)
    archive = PurchaseArchive(settings.db_url)
    try:
        added = archive.add_lines(history.lines)
        oldest, newest, total = archive.span()
    finally:
        archive.close()
    print(
        json.dumps(
            {
                "read": len(history.lines),
                "rejected": dict(history.rejected),
                "added": added,
                "already_archived": len(history.lines) - added,
                "archive": {"lines": total, "oldest": oldest, "newest": newest},
            },
            default=str,
        )
    )


@app.command()
def evaluate(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Folder for metrics.json and report.md.")],
    test_days: Annotated[int, typer.Option(help="Days at the end held out for evaluation.")] = 60,
    horizon_days: Annotated[int, typer.Option(help="Follow-up window after the trigger purchase.")] = 30,
    champion: Annotated[
        bool, typer.Option(help="Evaluate the registered champion's held-out booster instead of training anew.")
    ] = False,
    served: Annotated[
        bool, typer.Option(help="Also backtest the served path on the same data and split (see `xsell backtest`).")
    ] = True,
) -> None:
    """The evaluation protocol on any data set: ranker vs baselines, overall and per offer type. The
    held-out figure describes the method (model and index fit at the cutoff: a research figure);
    the served-path backtest beside it measures the offers users get."""
    if served and not champion:
        from cli.backtest import evaluate_with_backtest

        settings = _settings()
        _quiet_mlflow()
        result = evaluate_with_backtest(settings, data, out, test_days=test_days, horizon_days=horizon_days)
    else:
        settings = _settings()
        if champion:
            _require_champion(settings)
        from training.commands import evaluate as run_evaluation

        result = run_evaluation(settings, data, out, test_days=test_days, horizon_days=horizon_days, champion=champion)
    summary: dict[str, object] = {
        "out": str(out),
        "triggers": result["triggers"],
        "heldout_ndcg_at_10": {m: v["overall"]["ndcg"] for m, v in result["models"].items()},
    }
    if "served_path" in result:
        path = result["served_path"]
        summary["served_path"] = {
            "triggers": path["triggers"],
            "ndcg": path["overall"]["ndcg"],
            "hit_rate": path["overall"]["hit_rate"],
            **path["versus_best_baseline"],
        }
    print(json.dumps(summary))


@app.command()
def backtest(
    data: DataOption,
    out: Annotated[Path | None, typer.Option(help="Folder for backtest.json and report.md.")] = None,
    test_days: Annotated[int, typer.Option(help="Days at the end that the backtest serves and scores.")] = 60,
    horizon_days: Annotated[int, typer.Option(help="Follow-up window after the trigger purchase.")] = 30,
    k: Annotated[int, typer.Option(help="Offers scored per purchase (the baselines' list length too).")] = 10,
) -> None:
    """Measure the offers users get: train as `xsell train` would on DATA before the cutoff (newest
    order minus TEST_DAYS; held-out evaluation and refit included, in a scratch home of its own),
    serve the following purchases through the offer service's code in event order with the
    candidate index rebuilt daily from them, and score the served offers against the baselines.
    Prints the served figures beside the held-out (research) ones."""
    from cli.backtest import backtest_command

    settings = _settings()
    _quiet_mlflow()
    result = backtest_command(settings, data, out, test_days=test_days, horizon_days=horizon_days, k=k)
    print(
        json.dumps(
            {
                "triggers": result["triggers"],
                "cutoff": result["cutoff"],
                "served": result["served"]["overall"],
                "versus_best_baseline": result["versus_best_baseline"],
                "heldout_research": result["heldout_research"]["overall"],
                "coverage_of_orders": result["coverage_of_orders"],
                "seconds": result["seconds"],
                **({"out": str(out)} if out else {}),
            },
            default=str,
        )
    )


@app.command()
def promote(
    version: Annotated[int | None, typer.Option(help="Version to promote (default: the latest).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if it does not beat the champion (logged).")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded with a forced promotion).")] = "",
) -> None:
    """Move the champion alias to VERSION only if it beats the champion on the same evaluation data."""
    settings = _settings()
    if _nothing_trained(settings):
        _fail(
            f"no model to promote: {settings.model_name} has no versions: train a model first (xsell train --data FILE)"
        )
    from training.commands import promote as gate

    decision = gate(settings, version, force, reason)
    print(json.dumps(decision, default=str))
    if not decision.get("promoted", False):
        raise typer.Exit(code=1)


@app.command()
def recommend(
    orders: Annotated[Path, typer.Option(help="Purchase orders (canonical or UCI layout).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
    k: Annotated[int, typer.Option(help="Offers per order.")] = 10,
) -> None:
    """Batch offers for every order of a file with the champion (campaigns, backtests)."""
    settings = _settings()
    _require_champion(settings)
    from training.commands import recommend as run_batch

    print(json.dumps(run_batch(settings, orders, out, k), default=str))


@app.command()
def audit(
    out: Annotated[Path, typer.Option(help="Folder for up_sell.csv, cross_sell.csv, bundle.csv and checks.json.")],
    sample: Annotated[int, typer.Option(help="Offers of each type in the sheets.")] = 100,
    recent: Annotated[int, typer.Option(help="Audit the N latest decisions.")] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the sample drawn for the sheets.")] = 0,
) -> None:
    """A relevance audit of recent offers for the people who own them: sheets of up-sells and
    cross-sells with the basket that triggered each (empty rating and note columns for a
    merchandiser), and automatic checks printed here: up-sells of another kind, up-sells not dearer
    than what was paid (must be 0), "Often bought with" claims below the lift threshold (must be 0)
    and the share of variants."""
    settings = _settings()
    _require_champion(settings)
    _quiet_mlflow()
    from services.offers.audit import run_audit

    for line in run_audit(settings, out, sample=sample, recent=recent, seed=seed).lines():
        print(line)
    print(f"sheets: {out}")


# -- the candidate index between retrains ---------------------------------------------------------
@index_app.command("refresh")
def index_refresh(
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Run as a service: refresh every interval (30m, 6h, 1d; first one interval after the "
            "serving index was logged) until SIGTERM.",
        ),
    ] = None,
) -> None:
    """Rebuild the champion's candidate index from every order line of the purchase archive (as of
    the newest line), log it to MLflow as a run of its own and tag the champion version with it; the
    offer service swaps it in without a restart. Prints a JSON summary (run id, as_of, items, version)."""
    import signal
    import threading

    from training.index_refresh import RefreshError, refresh_index, run_every

    interval = _every_seconds(every)
    settings = _settings(service=interval is not None)
    if interval is None:
        try:
            result = refresh_index(settings)
        except RefreshError as error:
            _fail(str(error))
            return
        print(json.dumps(result.as_dict(), default=str))
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stats = run_every(settings, interval, stop)
    print(json.dumps(stats.__dict__, default=str))


# -- offers: delivery, in-app, API -----------------------------------------------------------------


@app.command()
def offers(until_caught_up: UntilCaughtUp = False) -> None:
    """Answer every purchase on `purchases` with an offer decision on `offers` (champion model + rules)."""
    from services.offers.service import OfferService

    stats = OfferService(_settings(service=True), until_caught_up=until_caught_up).run()
    print(json.dumps(stats.__dict__, default=str))


@app.command()
def deliver(until_caught_up: UntilCaughtUp = False) -> None:
    """Send offer e-mails from `offers` through an outbox (retries with backoff; never twice)."""
    from services.delivery.service import DeliveryService

    settings = _settings(service=True)
    service = DeliveryService(
        settings,
        retry_base_s=settings.delivery_retry_base_s,
        retry_max_s=settings.delivery_retry_max_s,
        currency=settings.currency,
    )
    if until_caught_up:
        service.loop.until_caught_up = True
    stats = service.run()
    print(json.dumps({"stats": stats.__dict__, "outbox": service.outbox.counts()}, default=str))


@app.command()
def inbox(until_caught_up: UntilCaughtUp = False) -> None:
    """Store in-app offers from `offers` for the API to serve."""
    from services.inbox.consumer import InboxService

    summary = InboxService(_settings(service=True), until_caught_up=until_caught_up).run()
    print(json.dumps(summary.__dict__, default=str))


@app.command()
def api() -> None:
    """Serve the HTTP API (in-app offers, feedback, e-mail links, demo page) with uvicorn."""
    settings = _settings(service=True)
    _require_free_port(settings.api_host, settings.api_port, "XSELL_API_PORT")
    from services.api.app import main

    main(settings)


@app.command()
def feedback(until_caught_up: UntilCaughtUp = False) -> None:
    """Store offer-quality facts from `offers`, `offer-feedback` and `purchases`; attribute conversions."""
    from datetime import timedelta

    from services.feedback.service import FeedbackService

    settings = _settings(service=True)
    stats = FeedbackService(
        settings,
        group_id=settings.feedback_group,
        until_caught_up=until_caught_up,
        window=timedelta(days=settings.attribution_window_days),
    ).run()
    print(json.dumps(stats.__dict__, default=str))


@app.command()
def report(
    since: Annotated[
        str | None, typer.Option("--since", help="Offers decided at or after DATE (ISO 8601, UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Offers decided before DATE.")] = None,
    offer_type: Annotated[str | None, typer.Option("--offer-type", help="cross_sell or up_sell.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Offer quality: sent, clicked, converted, attributed revenue, rates, latency (from `xsell feedback`)."""
    from services.feedback.facts import open_facts
    from services.feedback.report import offer_quality

    engine = open_facts(_settings().db_url)
    try:
        figures = offer_quality(engine, since=_parse_date(since), until=_parse_date(until), offer_type=offer_type)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(figures, default=str))
        return
    table = Table(title="Offer quality")
    for column in ("", "offers sent", "clicks", "conversions", "revenue", "click rate", "conv. rate"):
        table.add_column(column, justify="left" if not column else "right")
    for name, row in {"all": figures, **{f"  {k}": v for k, v in figures["by_offer_type"].items()}}.items():
        table.add_row(
            name,
            str(row["offers_sent"]),
            str(row["clicks"]),
            str(row["conversions"]),
            f"{row['attributed_revenue']:.2f}",
            str(row["click_rate"]),
            str(row["conversion_rate"]),
        )
    Console().print(table)
    latency = figures["latency_ms"]
    print(
        f"latency p50 {latency['p50']} ms, p99 {latency['p99']} ms; suppressions {figures['suppressions_by_rule']}; "
        f"bounce rate {figures['bounce_rate']}, unsubscribe rate {figures['unsubscribe_rate']}"
    )


# -- the main job ----------------------------------------------------------------------------------
@app.command()
def run(
    data: Annotated[Path | None, typer.Option(help="Purchase history (default: the shipped sample).")] = None,
    live_days: Annotated[int, typer.Option(help="Replay the last N days as live purchases.")] = 21,
    trial_days: Annotated[
        int,
        typer.Option(
            help="Of those, the last N days are replayed after the retrain, served by champion and challenger."
        ),
    ] = 7,
    trial_rate: Annotated[float, typer.Option(help="Events per second of that paced replay.")] = 10.0,
    challenger_share: Annotated[
        float, typer.Option(help="Share of customers the challenger serves (XSELL_CHALLENGER_SHARE wins when set).")
    ] = 0.5,
) -> None:
    """The main job: stack up, archive the history, backfill, train + register, start every
    service, replay the latest weeks as live purchases, retrain from the archive (the new version
    becomes the challenger), replay the last days paced and served by both models, print what
    happened and where to look (`make stop` stops it all)."""
    from cli.demo import DemoError, run_demo
    from infra.kafka.broker import BrokerError

    settings = _settings()
    console.print("[bold]xsell run[/]: the offer pipeline on the shipped sample")
    _quiet_mlflow()
    try:
        report = run_demo(
            settings,
            data or settings.sample_data,
            live_days,
            say=console.print,
            trial_days=trial_days,
            trial_rate=trial_rate,
            challenger_share=challenger_share,
        )
    except (BrokerError, DemoError) as error:
        _fail(str(error))
        return
    _print_report(report, settings)


def _print_report(report: object, settings: Settings) -> None:
    out = Console()
    summary = Table("what", "count", title="xsell run: summary")
    summary.add_row("live purchase events replayed", str(report.live_events))  # type: ignore[attr-defined]
    for name, count in report.ingested.items():  # type: ignore[attr-defined]
        summary.add_row(f"  {name.replace('_', ' ')}", str(count))
    summary.add_row("events dead-lettered (purchases.dlq, all time)", str(report.dead_lettered))  # type: ignore[attr-defined]
    summary.add_row("offer decisions", str(report.decisions))  # type: ignore[attr-defined]
    for offer_type, count in sorted(report.offers_by_type.items()):  # type: ignore[attr-defined]
        summary.add_row(f"  offers: {offer_type}", str(count))
    for reason, count in sorted(report.no_offer_by_reason.items()):  # type: ignore[attr-defined]
        summary.add_row(f"  no offer: {reason}", str(count))
    for rule, count in sorted(report.suppressed_by_rule.items(), key=lambda kv: -kv[1]):  # type: ignore[attr-defined]
        summary.add_row(f"  suppressed by rule: {rule}", str(count))
    summary.add_row("e-mails sent (captured as .eml)", str(report.emails_sent))  # type: ignore[attr-defined]
    summary.add_row("e-mails still pending", str(report.emails_pending))  # type: ignore[attr-defined]
    summary.add_row("conversions attributed (purchase within 7 days)", str(report.conversions))  # type: ignore[attr-defined]
    summary.add_row("attributed revenue", f"{report.attributed_revenue:.2f}")  # type: ignore[attr-defined]
    summary.add_row("clicks (simulated on converted offers)", str(report.simulated_clicks))  # type: ignore[attr-defined]
    out.print(summary)
    if report.training:  # type: ignore[attr-defined]
        headline = {k: report.training.get(k) for k in ("model_version", "run_id", "champion")}  # type: ignore[attr-defined]
        out.print(f"trained and registered: {json.dumps(headline, default=str)}")
    if report.example:  # type: ignore[attr-defined]
        example = report.example  # type: ignore[attr-defined]
        out.print(
            f"example: customer {example['customer_id']}, order {example['order_id']}, model v{example['model_version']}"
        )
        for offer in example["offers"]:
            out.print(
                escape(f"  - [{offer['type']}] {offer['product']}: {offer['reason']} (score {offer['score']:.3f})")
            )
    if report.retrain:  # type: ignore[attr-defined]
        out.print(escape(f"retrained from the archive: {report.retrain['message']}"))  # type: ignore[attr-defined]
    if report.experiment:  # type: ignore[attr-defined]
        print_status(report.experiment)  # type: ignore[attr-defined]
    if report.checkout:  # type: ignore[attr-defined]
        checkout = report.checkout  # type: ignore[attr-defined]
        out.print(escape(f"checkout API: customer {checkout['customer_id']}, cart {', '.join(checkout['cart'])}"))
        for offer in checkout["offers"]:
            out.print(escape(f"  - [{offer['offer_type']}] {offer['name'] or offer['product_id']}: {offer['reason']}"))
        out.print(
            f"  the order again over HTTP, sent twice: {checkout['purchase_status']}, event ids {checkout['event_ids']}"
        )
    customer = (report.example or {}).get("customer_id", "")  # type: ignore[attr-defined]
    out.print(f"API:        {settings.base_url}/docs")
    out.print(f"demo page:  {settings.base_url}/demo?customer_id={customer}")
    out.print(f"MLflow UI:  http://{settings.api_host}:{settings.mlflow_ui_port}")
    out.print(f"dashboard:  {settings.base_url}/dashboard  (log in with the key below)")
    out.print(f"mail:       {settings.mail_dir}")
    out.print(f"XSELL_API_KEY={settings.api_key}")
    out.print("stop everything with: make stop")


def main() -> None:
    """The ``xsell`` command: the Typer app, with every ``UserError`` (a problem the user can fix,
    raised anywhere below) printed as one line and exit code 1 instead of a traceback."""
    try:
        app()
    except UserError as error:
        _print_error(str(error))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
