"""Online feature reads for serving and `xsell features show`.

Reads go through the same FeatureService as training (`offer_ranker_v1`), so serving gets exactly
the features the model was trained on.
"""

from __future__ import annotations

from features.historical import FEATURE_SERVICE, service_features


def online_features(store: object, view: str, key: str, ids: list[str]) -> list[dict[str, object]]:
    """Feature values of `view` for each id (None values where the id is unknown), in order."""
    if not ids:
        return []
    refs = service_features(store, view, FEATURE_SERVICE)
    response = store.get_online_features(features=refs, entity_rows=[{key: i} for i in ids]).to_dict()  # type: ignore[attr-defined]
    names = [ref.split(":", 1)[1] for ref in refs]
    return [{key: ids[row], **{n: response[n][row] for n in names}} for row in range(len(ids))]


def customer_online_features(store: object, customer_ids: list[str]) -> list[dict[str, object]]:
    """Current customer statistics."""
    return online_features(store, "customer_stats_fv", "customer_id", customer_ids)


def product_online_features(store: object, product_ids: list[str]) -> list[dict[str, object]]:
    """Current product statistics."""
    return online_features(store, "product_stats_fv", "product_id", product_ids)
