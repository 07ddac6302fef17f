"""Feast, imported in one place and without typeguard's import-time instrumentation.

Feast's import also sets the Prometheus multi-process variables to a temporary folder of its own
(for its Gunicorn feature server, which xsell does not run). Left set, they would put this process's
metrics (when prometheus_client is first imported after Feast) and those of every process it starts
into that folder: each counter update a write to a memory-mapped file, in a folder Feast removes
when this process exits. Unless the user set them, they are removed again after the import.

Feast decorates its classes and functions with ``typeguard.typechecked``, which re-parses and
re-compiles the decorated function's whole module at import: about ten seconds of every command
that touches the feature store, for argument checks on calls this project makes from code its
tests cover. While Feast's modules load, ``typechecked`` returns its target unchanged (what it
does under ``python -O``); every other user of typeguard keeps the real decorator. Import Feast's
names from here, never from ``feast`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import prometheus_client  # noqa: F401  (its value class is chosen at import: in-process, before Feast's variables)
import typeguard

from xsell.settings import environment_kept

os.environ.setdefault("FEAST_USAGE", "False")  # no telemetry attempts from a closed network
PROMETHEUS_MULTIPROCESS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")  # Feast sets both


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """``typechecked`` as ``python -O`` has it: the target unchanged (also when called with options)."""
    if target is None:
        return lambda decorated: decorated
    return target


@contextmanager
def _without_typechecked() -> Iterator[None]:
    checked: Callable[..., Any] = typeguard.typechecked
    typeguard.typechecked = _unchecked
    try:
        yield
    finally:
        typeguard.typechecked = checked


with _without_typechecked(), environment_kept(*PROMETHEUS_MULTIPROCESS):
    from feast import (
        Entity,
        FeatureService,
        FeatureStore,
        FeatureView,
        Field,
        FileSource,
        PushSource,
        RepoConfig,
        ValueType,
    )
    from feast.data_source import DataSource, PushMode
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores import sqlite as _sqlite_online_store  # noqa: F401  (Feast's own, for tests and tools)
    from feast.infra.online_stores.helpers import compute_table_id
    from feast.infra.online_stores.online_store import OnlineStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import RepeatedValue
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.repo_config import FeastConfigBaseModel
    from feast.types import Float64, Int64, String

__all__ = [
    "DataSource",
    "Entity",
    "EntityKeyProto",
    "FeastConfigBaseModel",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "Field",
    "FileSource",
    "Float64",
    "Int64",
    "OnlineStore",
    "PushMode",
    "PushSource",
    "RepeatedValue",
    "RepoConfig",
    "String",
    "ValueProto",
    "ValueType",
    "compute_table_id",
    "serialize_entity_key",
]
