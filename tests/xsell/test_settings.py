"""The one settings load: the profile's values derived while the object is built, explicit values
winning, one-line errors, placeholder secrets refused in production; `environment_kept` puts
variables back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.profiles import profile_env
from xsell.settings import PlaceholderSecretError, SettingsError, environment_kept, load_settings


def test_the_local_profile_derives_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XSELL_PROFILE", raising=False)
    settings = load_settings(home=tmp_path)
    assert settings.feast_online_store == "sqlite" and settings.database_url is None
    assert settings.purchases_partitions == 4 and settings.offer_instances == 1


def test_production_derives_its_servers_from_the_ports_it_is_given(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, profile="production", redis_port=7001, postgres_port=7002, mlflow_ui_port=7003
    )
    assert settings.feast_online_store == "redis" and settings.redis_url == "127.0.0.1:7001"
    assert settings.database_url == "postgresql+psycopg2://xsell@127.0.0.1:7002/xsell"
    assert settings.tracking_uri == "http://127.0.0.1:7003"
    assert (settings.purchases_partitions, settings.offer_instances, settings.predict_threads) == (12, 3, 1)
    assert settings.topic_partitions[settings.topic_purchases] == 12


def test_an_explicit_value_wins_over_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSELL_PROFILE", "production")
    monkeypatch.setenv("XSELL_REDIS_URL", "redis.internal:6379")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.internal")
    settings = load_settings(home=tmp_path, offer_instances=5)
    assert settings.redis_url == "redis.internal:6379" and settings.tracking_uri == "https://mlflow.internal"
    assert settings.offer_instances == 5 and settings.delivery_instances == 2
    child = profile_env(settings)  # a child process derives the same values
    assert child["XSELL_PROFILE"] == "production" and child["XSELL_REDIS_URL"] == "redis.internal:6379"


def test_an_unknown_profile_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="XSELL_PROFILE must be one of local, production") as error:
        load_settings(home=tmp_path, profile="staging")
    assert "\n" not in str(error.value)


def test_production_refuses_the_demo_secrets_at_load(tmp_path: Path) -> None:
    with pytest.raises(PlaceholderSecretError, match="XSELL_API_KEY"):
        load_settings(home=tmp_path, env="production")
    strong = load_settings(
        home=tmp_path,
        env="production",
        api_key="kQ2v9wS7tYc1mN4pR8xZ0aB3",
        link_secret="Hj5Lq8Wn2Ee6Rt0Yu3Ii7Oo1",
        demo_enabled=False,
    )
    assert strong.env == "production"


def test_bundles_are_on_without_a_discount_and_a_discount_is_at_most_half(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert (settings.bundles, settings.bundle_discount, settings.bundle_max_items) == (True, 0.0, 3)
    assert load_settings(home=tmp_path, bundle_discount=0.5).bundle_discount == 0.5
    with pytest.raises(SettingsError, match="bundle_discount"):
        load_settings(home=tmp_path, bundle_discount=0.6)
    with pytest.raises(SettingsError, match="bundle_max_items"):
        load_settings(home=tmp_path, bundle_max_items=1)


def test_consumers_fetch_in_batches_and_wait_less_than_a_request(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert (settings.fetch_min_bytes, settings.fetch_max_wait_ms) == (32 * 1024, 250)
    with pytest.raises(SettingsError, match="fetch_max_wait_ms") as error:
        load_settings(home=tmp_path, fetch_max_wait_ms=30_000)  # kafka-python refuses it at start-up
    assert "\n" not in str(error.value)


def test_a_child_process_gets_the_same_settings_from_as_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = load_settings(
        home=tmp_path, profile="production", api_port=8123, excluded_products=["A", "B"], bundles=False
    )
    for name in [n for n in os.environ if n.startswith(("XSELL_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    for name, value in parent.as_environment().items():
        monkeypatch.setenv(name, value)
    child = load_settings()
    assert child == parent


def test_environment_kept_puts_the_named_variables_back_even_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSELL_TEST_GIVEN", "mine")
    monkeypatch.delenv("XSELL_TEST_UNSET", raising=False)

    def set_up_that_fails() -> None:
        with environment_kept("XSELL_TEST_GIVEN", "XSELL_TEST_UNSET"):
            os.environ["XSELL_TEST_GIVEN"] = "a library's"
            os.environ["XSELL_TEST_UNSET"] = "a library's"
            os.environ["XSELL_TEST_OTHER"] = "kept"
            raise RuntimeError("set-up failed")

    with pytest.raises(RuntimeError, match="set-up failed"):
        set_up_that_fails()
    assert os.environ["XSELL_TEST_GIVEN"] == "mine" and "XSELL_TEST_UNSET" not in os.environ
    assert os.environ.pop("XSELL_TEST_OTHER") == "kept"  # only the named ones are put back
