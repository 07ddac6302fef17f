"""Online feature reads for serving and `xsell features show`, and the streaming pipeline's
online writes.

Reads go through the same FeatureService as training (`offer_ranker_v1`), so serving gets exactly
the features the model was trained on. `OnlineFeatureReader` resolves the service's feature lists
once (a registry lookup per read would cost more than the read itself).

`OnlineFeatureWriter` writes a pushed frame to the online store. On Feast's SQLite online store it
writes the rows Feast's own writer writes (same table, entity-key serialization, value bytes and
timestamps) in one `executemany` per view and one transaction: Feast's writer converts each value
through pandas checks and issues one statement per feature value, twice the time for the same
rows. Every other online store (Redis, PostgreSQL: already batched) gets Feast's push.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    def frame(self, view: str, ids: list[str]) -> pd.DataFrame:
        """Feature values of `view` as a frame indexed by id, a column per feature (missing values
        where the id is unknown): what batch scoring reads, without a dict per row."""
        names = self.names[view]
        if not ids:
            return pd.DataFrame(columns=names, index=pd.Index([], dtype=object))
        response = self._response(view, ids)
        return pd.DataFrame({n: response[n] for n in names}, index=pd.Index(ids, dtype=object))

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
        self.batched = _plain_sqlite(store)
        self._connection: sqlite3.Connection | None = None

    def push(self, frames: Mapping[str, pd.DataFrame]) -> None:
        """Write each frame (join key, ``event_timestamp``, a column per feature) to the online
        store of every view fed by its push source (the key): what ``store.push(source, frame,
        to=PushMode.ONLINE)`` writes for each. On SQLite all of them in one transaction."""
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
            sqlite_rows(self.store, view, frame)
            for source, frame in frames.items()
            for view in views[source]
            if not frame.empty and not frame[[f.name for f in view.features]].isna().all().all()
        ]  # Feast writes nothing for a frame without feature values
        connection = self._connect()
        with connection:
            for statement, rows in writes:
                connection.executemany(statement, rows)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            config = self.store.config
            path = Path(config.online_store.path)
            if config.repo_path and not path.is_absolute():  # where Feast's SQLite store opens it
                path = Path(config.repo_path) / path
            self._connection = sqlite3.connect(path, check_same_thread=False)
        return self._connection

    def close(self) -> None:
        """Close the SQLite connection (if one was opened)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _fed_by(view: FeatureView, source: str) -> bool:
    """Whether push source ``source`` feeds ``view`` (Feast's test for a push)."""
    return view.stream_source is not None and view.stream_source.name == source


def _plain_sqlite(store: FeatureStore) -> bool:
    """Whether the store's online store is Feast's SQLite store with the plain table layout (no
    vector or numeric-value columns, which Feast's writer fills per value)."""
    online = store.config.online_store
    return (
        getattr(online, "type", "") in ("sqlite", "feast.infra.online_stores.sqlite.SqliteOnlineStore")
        and not getattr(online, "vector_enabled", False)
        and not getattr(online, "enable_openai_compatible_store", False)
    )


def sqlite_rows(store: FeatureStore, view: FeatureView, frame: pd.DataFrame) -> tuple[str, Iterator[tuple[Any, ...]]]:
    """The upsert statement and the rows Feast's SQLite online store writes for ``frame`` into
    ``view``'s table (`SqliteOnlineStore.online_write_batch`): per entity and feature, the
    serialized entity key, the feature name, the ValueProto bytes, their text, the event time
    (adapted as Feast's registered adapter stores it) and no created time. Rows come in (entity
    key, feature) order, which keeps SQLite on neighbouring index pages; the entity sort is stable,
    so a later row of an entity still wins."""
    from feast.infra.key_encoding_utils import serialize_entity_key  # noqa: PLC0415  (Feast: slow to import)
    from feast.infra.online_stores.helpers import compute_table_id  # noqa: PLC0415  (Feast: slow to import)
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey  # noqa: PLC0415  (Feast: slow to import)
    from feast.protos.feast.types.Value_pb2 import Value  # noqa: PLC0415  (Feast: slow to import)

    config = store.config
    table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    join_keys = [entity.name for entity in view.entity_columns]
    key_values = []
    for entity in view.entity_columns:
        blobs, _ = _value_blobs(frame[entity.name], entity.dtype.to_value_type())
        key_values.append([Value.FromString(blob) for blob in blobs])
    version = config.entity_key_serialization_version
    entity_keys = [
        serialize_entity_key(EntityKey(join_keys=join_keys, entity_values=list(values)), version)
        for values in zip(*key_values, strict=True)
    ]
    if view.batch_source is None:
        raise ValueError(f"feature view {view.name} has no batch source: Feast cannot write it online either")
    stamps = pd.DatetimeIndex(frame[view.batch_source.timestamp_field])
    if stamps.tz is not None:
        stamps = stamps.tz_convert("UTC").tz_localize(None)  # naive UTC, as Feast's to_naive_utc
    adapted = [sqlite3.adapt(stamp, sqlite3.PrepareProtocol) for stamp in stamps.to_pydatetime()]
    features = sorted(view.features, key=lambda f: f.name)
    columns = [_value_blobs(frame[f.name], f.dtype.to_value_type()) for f in features]
    order = sorted(range(len(entity_keys)), key=entity_keys.__getitem__)
    # a generator: each row tuple dies as SQLite takes it (a list of 26,000 tuples a batch is what
    # sets off full collections of the fold's objects, about 35 ms)
    rows = (
        (entity_keys[i], feature.name, blobs[i], texts[i], adapted[i], None)
        for i in order
        for feature, (blobs, texts) in zip(features, columns, strict=True)
    )
    quoted = '"' + table.replace('"', '""') + '"'
    insert = f"INSERT INTO {quoted} "  # Feast's table name, quoted as Feast quotes it
    statement = insert + (
        "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
        "created_ts = excluded.created_ts"
    )
    return statement, rows


def _value_blobs(column: pd.Series, value_type: object) -> tuple[list[bytes], list[str | None]]:
    """A column as Feast's serialized ValueProtos (an empty one for a missing value) and their
    texts (the `value_text` Feast stores: `extract_text_and_num`'s). Integer, double and string
    columns are converted here, each distinct value once (a column repeats counts, categories and
    prices; a double zero is not reused, its sign is in its bytes); other types by Feast."""
    from feast.infra.online_stores.helpers import extract_text_and_num  # noqa: PLC0415  (Feast: slow to import)
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
        return [p.SerializeToString() for p in protos], [extract_text_and_num(p, False)[0] for p in protos]
    field, convert = scalar[value_type]
    missing = column.isna().to_numpy()
    empty = Value().SerializeToString()
    seen: dict[object, tuple[bytes, str]] = {}
    blobs: list[bytes] = []
    texts: list[str | None] = []
    for value, absent in zip(column.tolist(), missing.tolist(), strict=True):
        if absent:
            blobs.append(empty)
            texts.append(None)
            continue
        converted = convert(value)
        known = seen.get(converted)
        if known is None:
            known = (
                Value(**{field: converted}).SerializeToString(),
                converted if field == "string_val" else str(converted),
            )
            if converted or field != "double_val":
                seen[converted] = known
        blobs.append(known[0])
        texts.append(known[1])
    return blobs, texts
