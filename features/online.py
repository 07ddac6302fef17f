"""Online feature reads for serving and `xsell features show`, and the streaming pipeline's
online writes.

Reads go through the same FeatureService as training (`offer_ranker_v1`), so serving gets exactly
the features the model was trained on. `OnlineFeatureReader` resolves the service's feature lists
once (a registry lookup per read would cost more than the read itself).

`OnlineFeatureWriter` writes a pushed frame to the online store. On the local profile's SQLite
store (`features.online_store`, a row per entity) it writes the rows that store's Feast write
writes (same table, entity-key serialization, value bytes and timestamps) in one `executemany`
per view and one transaction: Feast's push converts each value through pandas checks and protos
first, twice the time for the same rows. Every other online store (Redis, PostgreSQL: already
batched) gets Feast's push.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.historical import FEATURE_SERVICE, service_features

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

VIEW_KEYS = {"customer_stats_fv": "customer_id", "product_stats_fv": "product_id"}


class OnlineFeatureReader:
    """Batch online reads of one feature store, view by view."""

    def __init__(self, store: object, service: str = FEATURE_SERVICE) -> None:
        self.store = store
        self.refs = {view: service_features(store, view, service) for view in VIEW_KEYS}
        self.names = {view: [ref.split(":", 1)[1] for ref in refs] for view, refs in self.refs.items()}

    def read(self, view: str, ids: list[str]) -> list[dict[str, object]]:
        """Feature values of `view` for each id, in order (None values where the id is unknown)."""
        if not ids:
            return []
        key, names, response = VIEW_KEYS[view], self.names[view], self._response(view, ids)
        return [{key: ids[row], **{n: response[n][row] for n in names}} for row in range(len(ids))]

    def columns(self, view: str, ids: list[str]) -> dict[str, np.ndarray]:
        """Feature values of `view` by feature, a value per id in order: what batch scoring reads,
        without a dict per row or a frame. An id may repeat (it is read once); an unknown or empty
        id (an anonymous customer: not read) has missing values. A feature whose values are all
        numbers (or missing) is a float array (NaN where missing), any other an object array."""
        names = self.names[view]
        distinct = list(dict.fromkeys(i for i in ids if i))
        if not distinct:  # nothing to read: every id is missing (an empty column is a float one)
            return {name: np.full(len(ids), np.nan) for name in names}
        response = self._response(view, distinct)
        at = {entity: row for row, entity in enumerate(distinct)}
        rows = np.fromiter((at.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))  # -1: empty
        missing = rows < 0
        columns = {}
        for name in names:
            column = _typed(response[name])[np.maximum(rows, 0)]
            if missing.any():
                column[missing] = np.nan if column.dtype.kind == "f" else None
            columns[name] = column
        return columns

    def _response(self, view: str, ids: list[str]) -> dict[str, list[object]]:
        return self.store.get_online_features(  # type: ignore[attr-defined]
            features=self.refs[view], entity_rows={VIEW_KEYS[view]: list(ids)}
        ).to_dict()

    def customers(self, customer_ids: list[str]) -> list[dict[str, object]]:
        """Current customer statistics."""
        return self.read("customer_stats_fv", customer_ids)

    def products(self, product_ids: list[str]) -> list[dict[str, object]]:
        """Current product statistics."""
        return self.read("product_stats_fv", product_ids)


def _typed(values: list[object]) -> np.ndarray:
    """A column of a Feast response as floats (NaN where missing) when every value is a number or
    missing, else as objects: batch scoring reads numbers without converting each column again."""
    if all(value is None or type(value) in (int, float) for value in values):
        return np.array([np.nan if value is None else value for value in values], dtype=float)
    return object_column(values)


def object_column(values: list[Any]) -> np.ndarray:
    """``values`` as a one-dimensional object array: tuples and lists stay elements (``np.array``
    would make them rows), and pandas takes the array as a column without inferring its type."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def customer_online_features(store: object, customer_ids: list[str]) -> list[dict[str, object]]:
    """Current customer statistics (one-off read; services keep an `OnlineFeatureReader`)."""
    return OnlineFeatureReader(store).customers(customer_ids)


def product_online_features(store: object, product_ids: list[str]) -> list[dict[str, object]]:
    """Current product statistics (one-off read; services keep an `OnlineFeatureReader`)."""
    return OnlineFeatureReader(store).products(product_ids)


class OnlineFeatureWriter:
    """Online writes of the frames pushed to one feature store's push sources (`push`)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.batched = _entity_rows(store)
        self._connection: sqlite3.Connection | None = None
        self._keys: dict[tuple[str, object], bytes] = {}  # (view, entity id) -> serialized entity key

    def push(self, frames: Mapping[str, pd.DataFrame]) -> None:
        """Write each frame (join key, ``event_timestamp``, a column per feature) to the online
        store of every view fed by its push source (the key): what ``store.push(source, frame,
        to=PushMode.ONLINE)`` writes for each. On the SQLite store of one row per entity
        (`features.online_store`) all of them in one transaction."""
        from features.feast_import import PushMode  # noqa: PLC0415  (Feast: slow to import)

        views = {
            source: [view for view in self.store.list_feature_views() if _fed_by(view, source)] for source in frames
        }
        services = self.store.list_feature_services()
        # Feast's push for what its writer does beyond the rows: pre-computed service vectors, the
        # error of an unknown push source
        if not self.batched or any(getattr(s, "precompute_online", False) for s in services) or not all(views.values()):
            for source, frame in frames.items():
                self.store.push(source, frame, to=PushMode.ONLINE)
            return
        writes = [
            entity_rows(self.store, view, frame, self._keys)
            for source, frame in frames.items()
            for view in views[source]
            if not frame.empty and not frame[[f.name for f in view.features]].isna().all().all()
        ]  # Feast writes nothing for a frame without feature values
        connection = self._connect()
        with connection:
            for statement, rows in writes:
                connection.executemany(statement, rows)

    def _connect(self) -> sqlite3.Connection:
        from features.online_store import connect  # noqa: PLC0415  (imports Feast: slow)

        if self._connection is None:
            self._connection = connect(self.store.config)
        return self._connection

    def close(self) -> None:
        """Close the SQLite connection (if one was opened)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _fed_by(view: FeatureView, source: str) -> bool:
    """Whether push source ``source`` feeds ``view`` (Feast's test for a push)."""
    return view.stream_source is not None and view.stream_source.name == source


def _entity_rows(store: FeatureStore) -> bool:
    """Whether the store's online store is the SQLite store of one row per entity (`features.online_store`)."""
    from features.online_store import STORE_TYPE  # noqa: PLC0415  (imports Feast: slow)

    return bool(getattr(store.config.online_store, "type", "") == STORE_TYPE)


def entity_rows(
    store: FeatureStore, view: FeatureView, frame: pd.DataFrame, keys: dict[tuple[str, object], bytes] | None = None
) -> tuple[str, list[tuple[Any, ...]]]:
    """The upsert statement and the rows the SQLite store of one row per entity
    (`features.online_store.EntityRowSqliteOnlineStore.online_write_batch`) writes for ``frame``
    into ``view``'s table: per entity, the serialized entity key, the feature names, the
    `RepeatedValue` of their values, the event time and no created time. Rows come in entity-key
    order, which keeps SQLite on neighbouring index pages; the sort is stable, so a later row of
    an entity still wins. ``keys`` keeps the serialized key of each (view, entity id) of a view
    with one join key across calls (a batch mostly pushes entities an earlier one pushed)."""
    from features.online_store import (  # noqa: PLC0415  (imports Feast: slow)
        NAME_SEPARATOR,
        sqlite_time,
        table_name,
        upsert_statement,
        value_field,
    )

    config = store.config
    entity_keys = _entity_keys(view, frame, config.entity_key_serialization_version, {} if keys is None else keys)
    if view.batch_source is None:
        raise ValueError(f"feature view {view.name} has no batch source: Feast cannot write it online either")
    stamps = pd.DatetimeIndex(frame[view.batch_source.timestamp_field])
    times = [sqlite_time(stamp) for stamp in stamps.to_pydatetime()]
    features = sorted(view.features, key=lambda f: f.name)
    names = NAME_SEPARATOR.join(f.name for f in features)
    columns = [_value_blobs(frame[f.name], f.dtype.to_value_type(), value_field) for f in features]
    order = sorted(range(len(entity_keys)), key=entity_keys.__getitem__)
    rows = [(entity_keys[i], names, b"".join([fields[i] for fields in columns]), times[i], None) for i in order]
    return upsert_statement(table_name(config, view)), rows


def _entity_keys(
    view: FeatureView, frame: pd.DataFrame, version: int, cache: dict[tuple[str, object], bytes]
) -> list[bytes]:
    """The serialized entity key of each row of ``frame`` (Feast's serialization). With one join
    key, each (view, entity id) is serialized once and kept in ``cache``."""
    from features.feast_import import EntityKeyProto, ValueProto, serialize_entity_key  # noqa: PLC0415  (Feast: slow)

    join_keys = [entity.name for entity in view.entity_columns]

    def serialize(rows: pd.DataFrame) -> list[bytes]:
        values = [
            [ValueProto.FromString(blob) for blob in _value_blobs(rows[entity.name], entity.dtype.to_value_type())]
            for entity in view.entity_columns
        ]
        return [
            serialize_entity_key(EntityKeyProto(join_keys=join_keys, entity_values=list(row)), version)
            for row in zip(*values, strict=True)
        ]

    if len(join_keys) != 1:
        return serialize(frame)
    ids = frame[join_keys[0]].tolist()
    missing = [n for n, i in enumerate(ids) if (view.name, i) not in cache]
    if missing:
        cache.update(zip(((view.name, ids[n]) for n in missing), serialize(frame.iloc[missing]), strict=True))
    return [cache[(view.name, i)] for i in ids]


def _value_blobs(column: pd.Series, value_type: object, wrap: Callable[[bytes], bytes] | None = None) -> list[bytes]:
    """A column as Feast's serialized ValueProtos (an empty one for a missing value), each passed
    through ``wrap`` if given. Integer, double and string columns are converted here, each distinct
    value once (a column repeats counts, categories and prices; a double zero is not reused, its
    sign is in its bytes); other types by Feast."""
    from feast.protos.feast.types.Value_pb2 import Value  # noqa: PLC0415  (Feast: slow to import)
    from feast.type_map import python_values_to_proto_values  # noqa: PLC0415  (Feast: slow to import)
    from feast.value_type import ValueType  # noqa: PLC0415  (Feast: slow to import)

    scalar: dict[object, tuple[str, Callable[[Any], Any]]] = {
        ValueType.INT64: ("int64_val", int),
        ValueType.DOUBLE: ("double_val", float),
        ValueType.STRING: ("string_val", str),
    }
    if value_type not in scalar:
        protos = python_values_to_proto_values(column.to_numpy(), value_type)  # type: ignore[arg-type]
        return [wrap(p.SerializeToString()) if wrap else p.SerializeToString() for p in protos]
    field, convert = scalar[value_type]
    missing = column.isna().to_numpy()
    empty = Value().SerializeToString()
    empty = wrap(empty) if wrap else empty
    seen: dict[object, bytes] = {}
    blobs: list[bytes] = []
    for value, absent in zip(column.tolist(), missing.tolist(), strict=True):
        if absent:
            blobs.append(empty)
            continue
        converted = convert(value)
        known = seen.get(converted)
        if known is None:
            known = Value(**{field: converted}).SerializeToString()
            known = wrap(known) if wrap else known
            if converted or field != "double_val":
                seen[converted] = known
        blobs.append(known)
    return blobs
