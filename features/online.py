"""Online feature reads for serving and `xsell features show`.

Reads go through the same FeatureService as training (`offer_ranker_v1`), so serving gets exactly
the features the model was trained on. `OnlineFeatureReader` resolves the service's feature lists
once (a registry lookup per read would cost more than the read itself).
"""

from __future__ import annotations

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
        key = VIEW_KEYS[view]
        response = self.store.get_online_features(  # type: ignore[attr-defined]
            features=self.refs[view], entity_rows={key: list(ids)}
        ).to_dict()
        names = self.names[view]
        return [{key: ids[row], **{n: response[n][row] for n in names}} for row in range(len(ids))]

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
