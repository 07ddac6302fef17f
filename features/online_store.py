"""The local profile's online store: Feast's SQLite store with one row per entity.

Feast's own SQLite store keeps a row per (entity, feature): a streaming batch of 500 purchases
upserts some 26,000 of them, and SQLite's search of that primary key for each row is most of what
the write costs, whether the value changed or not. This store keeps a row per entity: its feature
names, its values as one serialized `RepeatedValue` (the `ValueProto` of each feature in name
order) and the event time; a batch upserts about 2,300 rows. Reads parse the row's values in one
call. Everything else is Feast's: the entity-key serialization, the table names, the protos, the
`FeatureStore` API over it (`get_online_features`, `push`, `materialize`).

A write replaces an entity's values, as every writer here writes all of a view's features (a push
of a view's snapshot, a materialization). Configured as
``type: features.online_store.EntityRowSqliteOnlineStore`` (`features.store.online_store_config`);
Redis, the production profile's store, keeps Feast's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from features.feast_import import (
    Entity,
    EntityKeyProto,
    FeastConfigBaseModel,
    FeatureView,
    OnlineStore,
    RepeatedValue,
    RepoConfig,
    ValueProto,
    compute_table_id,
    serialize_entity_key,
)

STORE_TYPE = "features.online_store.EntityRowSqliteOnlineStore"
NAME_SEPARATOR = "\x1f"  # between the feature names of a row (a unit separator: in no feature name)


class EntityRowSqliteOnlineStoreConfig(FeastConfigBaseModel):
    """Feast's configuration block of `EntityRowSqliteOnlineStore` (``path``: the SQLite file)."""

    type: Literal["features.online_store.EntityRowSqliteOnlineStore"] = (
        "features.online_store.EntityRowSqliteOnlineStore"
    )
    path: str = "data/online.db"


class EntityRowSqliteOnlineStore(OnlineStore):
    """Feast's online-store interface on SQLite, one row per entity (see the module docstring)."""

    _connection: sqlite3.Connection | None = None

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert each entity's row (Feast's write of a materialization or a push)."""
        version = config.entity_key_serialization_version
        rows = []
        for entity_key, values, event_ts, created_ts in data:
            names = sorted(values)
            blob = RepeatedValue(val=[values[name] for name in names]).SerializeToString()
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            rows.append((key, NAME_SEPARATOR.join(names), blob, sqlite_time(event_ts), sqlite_time(created_ts)))
        connection = self._connect(config)
        with connection:
            connection.executemany(upsert_statement(table_name(config, table)), rows)
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Each entity's event time and values, in the order asked ((None, None) where unknown)."""
        version = config.entity_key_serialization_version
        keys = [serialize_entity_key(key, entity_key_serialization_version=version) for key in entity_keys]
        found: dict[bytes, tuple[datetime | None, dict[str, ValueProto]]] = {}
        quoted = _quote(table_name(config, table))
        connection = self._connect(config)
        for start in range(0, len(keys), READ_CHUNK):
            chunk = keys[start : start + READ_CHUNK]
            cursor = connection.execute(
                f"SELECT entity_key, names, vals, event_ts FROM {quoted} "  # noqa: S608  (a quoted table name)
                f"WHERE entity_key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for key, names, blob, event_ts in cursor:
                values = RepeatedValue.FromString(blob).val
                found[key] = (_aware(event_ts), dict(zip(names.split(NAME_SEPARATOR), values, strict=True)))
        return [found.get(key, (None, None)) for key in keys]

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Create the tables of the views kept, drop those of the views deleted (`feast apply`)."""
        connection = self._connect(config)
        with connection:
            for view in tables_to_keep:
                _create_table(connection, table_name(config, view))
            for view in tables_to_delete:
                connection.execute(f"DROP TABLE IF EXISTS {_quote(table_name(config, view))}")

    def plan(self, config: RepoConfig, desired_registry_proto: Any) -> list[Any]:
        """No infrastructure objects of Feast's: `update` creates the tables."""
        return []

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        """Drop the views' tables (`feast teardown`)."""
        self.update(config, tables, [], entities, [], partial=False)

    def _connect(self, config: RepoConfig) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = connect(config)
        return self._connection


READ_CHUNK = 10_000  # entity keys a statement (SQLite allows 32,766 parameters)


def _create_table(connection: sqlite3.Connection, table: str) -> None:
    """Create a view's table; one that Feast's own SQLite store left (a row per entity and
    feature) is taken over: its values move into the new table, an entity's newest time kept."""
    columns = {row[1] for row in connection.execute(f"PRAGMA table_info({_quote(table)})")}
    old = f"{table}_by_feature"
    if columns and "vals" not in columns:
        connection.execute(f"ALTER TABLE {_quote(table)} RENAME TO {_quote(old)}")
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {_quote(table)} (entity_key BLOB PRIMARY KEY, names TEXT NOT NULL, "
        "vals BLOB NOT NULL, event_ts TIMESTAMP, created_ts TIMESTAMP) WITHOUT ROWID"
    )
    if columns and "vals" not in columns:
        rows = connection.execute(
            f"SELECT entity_key, feature_name, value, event_ts FROM {_quote(old)} ORDER BY entity_key, feature_name"  # noqa: S608  (a quoted table name)
        ).fetchall()
        by_entity: dict[bytes, list[tuple[str, bytes, str | None]]] = {}
        for key, name, value, event_ts in rows:
            by_entity.setdefault(key, []).append((name, value, event_ts))
        connection.executemany(
            upsert_statement(table),
            [
                (
                    key,
                    NAME_SEPARATOR.join(name for name, _, _ in values),
                    repeated_value(value for _, value, _ in values),
                    sqlite_time(max((_stored_time(ts) for _, _, ts in values if ts is not None), default=None)),
                    None,
                )
                for key, values in by_entity.items()
            ],
        )
        connection.execute(f"DROP TABLE {_quote(old)}")


def connect(config: RepoConfig) -> sqlite3.Connection:
    """A connection to the store's SQLite file (a relative path is relative to the Feast repo, as
    Feast has it; the folder is created), shared across threads, waiting for another writer's lock."""
    path = Path(config.online_store.path)
    path = Path(config.repo_path) / path if config.repo_path and not path.is_absolute() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(path, check_same_thread=False, timeout=30)


def table_name(config: RepoConfig, view: FeatureView) -> str:
    """The view's table: Feast's name for it (project and view)."""
    return str(compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning))


def upsert_statement(table: str) -> str:
    """The statement that writes one entity's row: (entity key, names, values, event time, created time)."""
    return (
        f"INSERT INTO {_quote(table)} (entity_key, names, vals, event_ts, created_ts) VALUES (?, ?, ?, ?, ?) "  # noqa: S608  (a quoted table name)
        "ON CONFLICT(entity_key) DO UPDATE SET names = excluded.names, vals = excluded.vals, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )


def repeated_value(blobs: Iterable[bytes]) -> bytes:
    """A serialized `RepeatedValue` made of serialized `ValueProto`s, without parsing them."""
    return b"".join(map(value_field, blobs))


def value_field(blob: bytes) -> bytes:
    """A serialized `ValueProto` as one element of a serialized `RepeatedValue` (the protobuf wire
    format of ``repeated Value val = 1``: tag, length, bytes); elements joined are the message."""
    return b"\n" + _varint(len(blob)) + blob


def _varint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def sqlite_time(stamp: datetime | None) -> str | None:
    """A time as the store keeps it: ISO text in UTC without an offset."""
    if stamp is None:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return stamp.isoformat(sep=" ")


def _stored_time(value: object) -> datetime:
    """A time Feast's own SQLite store kept: epoch seconds, or ISO text (naive UTC)."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _aware(stamp: str | None) -> datetime | None:
    return None if stamp is None else datetime.fromisoformat(stamp).replace(tzinfo=UTC)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
