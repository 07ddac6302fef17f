"""`xsell experiment`: the live experiment between the champion and the challenger.

`status` prints the per-variant figures with their 95% intervals and the verdict
(`services.feedback.experiment`) and the versions the two registry aliases point at; `conclude`
ends the experiment: `--promote` moves the champion alias to the challenger's version and deletes
the challenger alias (`training.promote.make_champion`: tagged as `xsell promote` tags a
promotion), `--stop` only deletes the challenger alias. The offer service follows the aliases
within `XSELL_MODEL_REFRESH_S`.

The helpers of `cli.main` (settings, one-line errors) and the stage modules are imported inside the
commands: `cli.main` imports this module to register it, and `--help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

PROMOTION_REASON = "won the live experiment"

experiment_app = typer.Typer(
    help="The live experiment: champion against challenger (figures, verdict), and ending it.", no_args_is_help=True
)


@experiment_app.command("status")
def status(
    since: Annotated[
        str | None, typer.Option("--since", help="Offers decided at or after DATE (ISO 8601, UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Offers decided before DATE.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Champion against challenger: per-variant figures with 95% intervals, the verdict, the aliases.

    Offers, clicks, conversions, click and conversion rates and revenue per offer of each variant,
    the verdict on conversion rate (two-proportion z-test), and the versions the two aliases point at."""
    from cli.main import _nothing_trained, _parse_date, _settings  # noqa: PLC0415  (cli.main imports this module)
    from models.registry import alias_version, open_tracking  # noqa: PLC0415  (imports stay inside commands: fast --help)
    from services.feedback.experiment import experiment_report  # noqa: PLC0415  (likewise)
    from services.feedback.facts import open_facts  # noqa: PLC0415  (likewise)

    settings = _settings()
    engine = open_facts(settings.db_url)
    try:
        report = experiment_report(engine, since=_parse_date(since), until=_parse_date(until))
    finally:
        engine.dispose()
    aliases: dict[str, int | None] = {settings.champion_alias: None, settings.challenger_alias: None}
    if not _nothing_trained(settings):
        client = open_tracking(settings)
        aliases = {alias: alias_version(client, settings, alias) for alias in aliases}
    report["aliases"] = aliases
    if as_json:
        print(json.dumps(report, default=str))
        return
    print_status(report)


def print_status(report: dict[str, Any]) -> None:
    """The figures of `experiment_report` (a column per variant), the aliases when the report has
    them, and the verdict, for a terminal (`status`, and `make run`'s summary)."""
    variants = report["variants"]
    table = Table(title="Champion vs challenger (95% intervals)")
    table.add_column("")
    for variant, figures in variants.items():
        versions = ", ".join(f"v{version}" for version in figures["model_versions"])
        table.add_column(f"{variant} ({versions})" if versions else variant, justify="right")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("decisions", lambda f: str(f["decisions"])),
        ("offers", lambda f: str(f["offers_sent"])),
        ("clicks", lambda f: str(f["clicks"])),
        ("click rate", lambda f: _with_interval(f["click_rate"], f["click_rate_ci"], _percent)),
        ("converted offers", lambda f: str(f["converted_offers"])),
        ("conversion rate", lambda f: _with_interval(f["conversion_rate"], f["conversion_rate_ci"], _percent)),
        ("attributed revenue", lambda f: f"{f['attributed_revenue']:.2f}"),
        (
            "revenue per offer",
            lambda f: _with_interval(f["revenue_per_offer"], f["revenue_per_offer_ci"], lambda v: f"{v:.4f}"),
        ),
    ]
    for name, shown in rows:
        table.add_row(name, *(shown(figures) for figures in variants.values()))
    console = Console()
    console.print(table)
    if "aliases" in report:
        aliases = ", ".join(f"{alias} -> {version or 'unset'}" for alias, version in report["aliases"].items())
        console.print(f"aliases: {aliases}", highlight=False)
    if report["offers_without_variant"]:
        console.print(f"offers without a variant (left out): {report['offers_without_variant']}", highlight=False)
    console.print(f"verdict: {report['verdict']}", highlight=False)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _with_interval(value: float | None, interval: list[float] | None, shown: Callable[[float], str]) -> str:
    """A figure and its interval ("1.20% [0.50%, 2.80%]"; "n/a" without one)."""
    if value is None:
        return "n/a"
    return shown(value) + (f" [{shown(interval[0])}, {shown(interval[1])}]" if interval else "")


@experiment_app.command("conclude")
def conclude(
    promote: Annotated[
        bool, typer.Option("--promote", help="The challenger becomes the champion; the experiment ends.")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="End the experiment; the champion stays.")] = False,
) -> None:
    """End the live experiment: promote the challenger to champion, or stop it (one of the two)."""
    from cli.main import _fail, _nothing_trained, _settings  # noqa: PLC0415  (cli.main imports this module)
    from models.registry import alias_version, open_tracking  # noqa: PLC0415  (imports stay inside commands: fast --help)
    from training.promote import make_champion  # noqa: PLC0415  (likewise)

    if promote == stop:
        _fail("give exactly one of --promote (the challenger becomes champion) or --stop (the champion stays)")
    settings = _settings()
    no_experiment = f"no live experiment: {settings.model_name} has no '{settings.challenger_alias}' version"
    if _nothing_trained(settings):
        _fail(no_experiment)
    client = open_tracking(settings)
    challenger = alias_version(client, settings, settings.challenger_alias)
    if challenger is None:
        _fail(no_experiment)
        return
    champion = alias_version(client, settings, settings.champion_alias)
    if promote:
        make_champion(client, settings, challenger, champion, PROMOTION_REASON)  # the challenger alias goes too
        message = f"version {challenger} is now {settings.champion_alias} (was {champion}); experiment ended"
    else:
        client.delete_registered_model_alias(settings.model_name, settings.challenger_alias)
        message = f"experiment stopped: version {champion} stays {settings.champion_alias}"
    outcome = {
        "model": settings.model_name,
        "action": "promote" if promote else "stop",
        "champion_version": challenger if promote else champion,
        "previous_champion": champion,
        "challenger_version": challenger,
        "message": message,
    }
    print(json.dumps(outcome))
