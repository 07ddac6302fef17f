"""Online feature reads for serving and `xsell features show`.

Reads go through the same FeatureService as training (`offer_ranker_v1`), so serving gets exactly
the features the model was trained on. `OnlineFeatureReader` resolves the service's feature lists
once (a registry lookup per read would cost more than the read itself).
"""

from __future__ import annotations

import pandas as pd

from features.historical import FEATURE_SERVICE, service_features

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
