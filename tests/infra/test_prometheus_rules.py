"""The Prometheus configuration and alert rules under infra/prometheus load in promtool, the rules'
unit tests pass, every alert has a test in which it fires, and the rules read metrics xsell exports.

promtool comes from Debian's prometheus package (`make test-deps` installs it); without it these
tests fail rather than skip, so that the rules are never left unchecked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.metric_names import exported_metric_names, metric_names_in
from xsell.settings import REPO_ROOT

PROMETHEUS = REPO_ROOT / "infra" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool in the repository root; fail the test when it is not installed."""
    executable = shutil.which("promtool")
    assert executable, "promtool is not installed: `make test-deps` installs it (Debian's prometheus package)"
    return subprocess.run([executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    "command",
    [
        ("check", "rules", str(ALERTS.relative_to(REPO_ROOT))),
        ("check", "config", str((PROMETHEUS / "prometheus.yml").relative_to(REPO_ROOT))),
        ("test", "rules", str(ALERTS_TEST.relative_to(REPO_ROOT))),
    ],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool_accepts_the_configuration_and_the_rules_pass_their_tests(command: tuple[str, ...]) -> None:
    result = promtool(*command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_in_a_test_and_is_quiet_in_another() -> None:
    alerts = {rule["alert"] for group in load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule}
    assert {"XsellModelStale", "XsellArchiveBehind", "XsellFeaturePipelineBehind"} <= alerts
    assert {"XsellDeadLetterRateHigh", "XsellNoDecisions", "XsellEmailFailures"} <= alerts
    checks = [check for test in load(ALERTS_TEST)["tests"] for check in test["alert_rule_test"]]
    fired = {check["alertname"] for check in checks if check.get("exp_alerts")}
    quiet = {check["alertname"] for check in checks if not check.get("exp_alerts")}
    assert alerts - fired == set(), "alerts that no test fires"
    assert alerts - quiet == set(), "alerts that no test expects to stay quiet"
    assert (fired | quiet) - alerts == set(), "tests of alerts that do not exist"
    assert load(PROMETHEUS / "prometheus.yml")["rule_files"] == [ALERTS.name]


def test_the_rules_read_only_metrics_xsell_exports() -> None:
    rules = [rule for group in load(ALERTS)["groups"] for rule in group["rules"]]
    read = {name for rule in rules for name in metric_names_in(rule["expr"])}
    assert "xsell_archive_newest_purchase_seconds" in read
    assert read - exported_metric_names() == set(), "rules on metrics xsell does not export"
