"""Point-in-time feature retrieval for training, through Feast's historical retrieval.

The feature lists come from the versioned FeatureService (`offer_ranker_v1`), view by view, so the
model's inputs are declared in one place. Rows keep their order and count: Feast's file offline
store leaves out entity rows that have no earlier snapshot, so a row id is carried through and
missing rows come back as NaN (a customer or product not seen before that time).
"""

from __future__ import annotations

import pandas as pd

from features.store import open_feature_store
from xsell.settings import Settings

FEATURE_SERVICE = "offer_ranker_v1"
ROW_ID = "__row_id"


def service_features(store: object, view: str, service: str = FEATURE_SERVICE) -> list[str]:
    """Feature references `view:feature` that the feature service takes from `view`."""
    feature_service = store.get_feature_service(service)  # type: ignore[attr-defined]
    for projection in feature_service.feature_view_projections:
        if projection.name == view:
            return [f"{view}:{feature.name}" for feature in projection.features]
    raise KeyError(f"feature service {service} has no view {view}")


def historical_features(
    settings: Settings, entity_rows: pd.DataFrame, view: str, service: str = FEATURE_SERVICE
) -> pd.DataFrame:
    """Feature values of `view` as of each row's `event_timestamp` (strictly before it).

    `entity_rows` has the view's join key and `event_timestamp`; the result has the same index
    and order, with one column per feature (named as in the view).
    """
    store = open_feature_store(settings)
    refs = service_features(store, view, service)
    entity_df = entity_rows.reset_index(drop=True).copy()
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    entity_df[ROW_ID] = range(len(entity_df))
    result = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    names = [ref.split(":", 1)[1] for ref in refs]
    aligned = result.set_index(ROW_ID)[names].reindex(range(len(entity_df)))
    aligned.index = entity_rows.index
    return aligned
