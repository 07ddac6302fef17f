"""The feature repository as the Feast CLI reads it inside this folder (`feast apply`,
`feast materialize`, `feast ui`): xsell's definitions for the settings of the calling environment
(XSELL_HOME, default `../.xsell`). xsell itself builds them from its settings object
(`features.store.apply_definitions`), never from this module.
"""

from features.definitions import feature_definitions
from xsell.settings import load_settings

_definitions = feature_definitions(load_settings().feast_dir / "data")
customer = _definitions.customer
product = _definitions.product
customer_stats_source = _definitions.customer_stats_source
product_stats_source = _definitions.product_stats_source
customer_stats_push_source = _definitions.customer_stats_push_source
product_stats_push_source = _definitions.product_stats_push_source
customer_stats_fv = _definitions.customer_stats_fv
product_stats_fv = _definitions.product_stats_fv
offer_ranker_v1 = _definitions.offer_ranker_v1
