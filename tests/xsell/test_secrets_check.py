"""`refuse_placeholder_secrets`: the public demo secrets never pass for production ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from xsell.settings import PlaceholderSecretError, load_settings, refuse_placeholder_secrets

STRONG_KEY = "kQ2v9wS7tYc1mN4pR8xZ0aB3"
STRONG_LINK_SECRET = "Hj5Lq8Wn2Ee6Rt0Yu3Ii7Oo1"


def test_shipped_defaults_are_refused_naming_every_variable(tmp_path: Path) -> None:
    with pytest.raises(PlaceholderSecretError) as refused:
        refuse_placeholder_secrets(load_settings(home=tmp_path))
    message = str(refused.value)
    assert "XSELL_API_KEY" in message and "XSELL_LINK_SECRET" in message and "XSELL_DEMO_ENABLED" in message


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"api_key": "short"}, "XSELL_API_KEY"),
        ({"link_secret": "changeme"}, "XSELL_LINK_SECRET"),
        ({"api_key": ""}, "XSELL_API_KEY"),
        ({"link_secret": STRONG_KEY}, "the same"),
        ({"demo_enabled": True}, "XSELL_DEMO_ENABLED"),
    ],
)
def test_each_weak_setting_is_refused(tmp_path: Path, overrides: dict[str, object], variable: str) -> None:
    fields = {"home": tmp_path, "api_key": STRONG_KEY, "link_secret": STRONG_LINK_SECRET, "demo_enabled": False}
    with pytest.raises(PlaceholderSecretError, match=variable):
        refuse_placeholder_secrets(load_settings(**{**fields, **overrides}))


def test_random_secrets_from_the_environment_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSELL_API_KEY", STRONG_KEY)
    monkeypatch.setenv("XSELL_LINK_SECRET", STRONG_LINK_SECRET)
    monkeypatch.setenv("XSELL_DEMO_ENABLED", "false")
    settings = load_settings(home=tmp_path)
    assert (settings.api_key, settings.link_secret) == (STRONG_KEY, STRONG_LINK_SECRET)
    assert refuse_placeholder_secrets(settings) is None
