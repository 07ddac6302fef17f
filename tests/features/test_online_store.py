"""The online store of one row per entity (`features.online_store`): its wire format of a row's
values, its times, and Feast's interface on a real repo (write, read, unknown keys, teardown)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from features.feast_import import EntityKeyProto, RepeatedValue, ValueProto
from features.online_store import EntityRowSqliteOnlineStore, repeated_value, sqlite_time, table_name
from features.store import apply_definitions, open_feature_store
from tests.features.test_online_writer import _customers, _feast_sqlite_store, _products, _read, _same
from xsell.settings import load_settings


def test_a_rows_values_are_a_repeated_value_built_from_serialized_values() -> None:
    values = [ValueProto(int64_val=3), ValueProto(), ValueProto(string_val="x" * 300), ValueProto(double_val=-0.0)]
    blob = repeated_value(v.SerializeToString() for v in values)
    assert blob == RepeatedValue(val=values).SerializeToString()  # a 300-byte value: a two-byte length
    assert list(RepeatedValue.FromString(blob).val) == values


def test_times_are_kept_as_utc_text_and_read_back_aware() -> None:
    stamp = datetime(2011, 12, 9, 12, 50, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert sqlite_time(stamp) == "2011-12-09 11:50:00.123456"
    assert sqlite_time(datetime(2011, 12, 9, 12, 0)) == "2011-12-09 12:00:00"  # naive: taken as UTC
    assert sqlite_time(None) is None


def test_feasts_interface_writes_reads_and_tears_down(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    apply_definitions(settings)
    store = open_feature_store(settings)
    online = store._get_provider().online_store
    assert isinstance(online, EntityRowSqliteOnlineStore)
    view = store.get_feature_view("customer_stats_fv")
    key = EntityKeyProto(join_keys=["customer_id"], entity_values=[ValueProto(string_val="C1")])
    other = EntityKeyProto(join_keys=["customer_id"], entity_values=[ValueProto(string_val="nobody")])
    at = datetime(2011, 12, 9, 12, 0, tzinfo=UTC)
    first = {"order_count": ValueProto(int64_val=1), "top_categories": ValueProto(string_val="MUG")}
    online.online_write_batch(store.config, view, [(key, first, at, None)], None)
    later = {"order_count": ValueProto(int64_val=2), "top_categories": ValueProto(string_val="BAG")}
    online.online_write_batch(store.config, view, [(key, later, at + timedelta(hours=1), None)], None)
    read = online.online_read(store.config, view, [other, key])
    assert read == [(None, None), (at + timedelta(hours=1), later)]  # the later write replaced the row
    path = settings.feast_dir / "online.db"
    table = table_name(store.config, view)
    with sqlite3.connect(path) as connection:
        assert connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone() == (1,)  # noqa: S608  (Feast's name)
    online.teardown(store.config, [view], [])
    with sqlite3.connect(path) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert table not in tables


def test_a_table_of_feasts_own_sqlite_store_is_taken_over_with_its_values(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    own = _feast_sqlite_store(settings)  # a row per entity and feature, in the home's online.db
    own.push("customer_stats_push_source", _customers())
    own.push("product_stats_push_source", _products())
    before = _read(settings, own)
    apply_definitions(settings)  # the store of a row per entity on the same file: it takes the tables over
    after = _read(settings)
    for part in ("customers", "products"):
        for name, values in before[part].items():
            assert all(_same(a, b) for a, b in zip(after[part][name], values, strict=True)), (part, name)
    with sqlite3.connect(settings.feast_dir / "online.db") as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not any(name.endswith("_by_feature") for name in tables)
