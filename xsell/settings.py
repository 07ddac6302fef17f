"""One typed settings object for every stage, read from `XSELL_*` environment variables.

Values are read once, where an entry point starts (`load_settings()`: the CLI, the API's uvicorn
factory, the Feast repository), never at import time, and passed down as a frozen object. The
deployment profile's values are derived while the object is built (`XSELL_PROFILE=production`:
Redis, PostgreSQL, the MLflow server, partitions and instance counts; a value set explicitly
wins), and in production (`XSELL_ENV=production`) placeholder secrets are refused. Derived paths
are properties, so two runs with different `XSELL_HOME` and ports never touch each other's state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from xsell.price_band import DEFAULT_PRICE_BAND, PriceBand

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("local", "production")
MLFLOW_ALIASES = ("XSELL_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
MIN_SECRET_LENGTH = 16
# Values that are placeholders wherever they come from (the shipped defaults count too).
KNOWN_PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "password", "test", "xsell"})


class SettingsError(ValueError):
    """Settings that cannot be used; the message is one line naming the variable to fix."""


class PlaceholderSecretError(SettingsError):
    """A secret still has its demo value (or none); the message names each variable to set."""


class Settings(BaseSettings):
    """Everything configurable in xsell; each field maps to env var `XSELL_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="XSELL_", frozen=True, extra="ignore")

    env: str = Field(default="local", description="local | production; production refuses placeholder secrets.")
    profile: str = Field(
        default="local",
        description="local | production: production derives Redis, PostgreSQL, MLflow server, "
        "partitions and instance counts (`production_values`; explicit variables win).",
    )
    home: Path = Field(
        default=REPO_ROOT / ".xsell",
        description="Folder holding all local state: broker data, jars cache, feature store, MLflow, mail.",
    )
    server_state_dir: Path | None = Field(
        default=None,
        description="State of local servers that run as another user (PostgreSQL under root); default "
        "XSELL_HOME, or /var/lib/xsell/<hash of XSELL_HOME> when that user cannot reach XSELL_HOME.",
    )

    # Kafka broker
    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="host:port of the Kafka broker.")
    kafka_controller_port: int = Field(default=0, description="KRaft controller port; 0 = broker port + 1.")
    kafka_version: str = Field(default="4.1.1", description="Apache Kafka release run by `xsell stack up`.")
    kafka_heap_mb: int = Field(default=512, description="Broker JVM max heap (MB).")
    kafka_start_timeout_s: float = Field(default=60.0, description="How long `stack up` waits for the broker.")
    kafka_jars_dir: Path | None = Field(
        default=None, description="Where the broker jars are cached; default HOME/cache/kafka-VERSION."
    )
    kafka_security_protocol: str = Field(
        default="PLAINTEXT",
        pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
        description="How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL "
        "(xsell.kafka_security; `stack up`'s own broker serves PLAINTEXT).",
    )
    kafka_sasl_mechanism: str = Field(
        default="SCRAM-SHA-512",
        pattern=r"^(SCRAM-SHA-512|SCRAM-SHA-256|PLAIN)$",
        description="SASL mechanism with a SASL_* protocol: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.",
    )
    kafka_sasl_username: str = Field(default="", description="SASL user (needed with a SASL_* protocol).")
    kafka_sasl_password: str = Field(
        default="", repr=False, description="SASL password (needed with a SASL_* protocol; never logged)."
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM file of the CA that signed the broker's certificate; default the system's CAs."
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate, for a broker that authenticates clients by TLS."
    )
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM private key of kafka_ssl_certfile.")

    # Topics
    topic_purchases: str = "purchases"
    topic_purchases_dlq: str = "purchases.dlq"
    topic_offers: str = "offers"
    topic_offer_feedback: str = "offer-feedback"
    purchases_partitions: int = Field(default=4, description="Partitions of the purchases topic.")
    dlq_partitions: int = 1
    offers_partitions: int = 4
    feedback_partitions: int = 4
    dlq_max_message_bytes: int = Field(
        default=1_048_576, description="max.message.bytes of the DLQ topic; larger originals are truncated."
    )

    # Events and consumers
    max_event_bytes: int = Field(default=512 * 1024, description="Larger `purchases` records are dead-lettered.")
    log_level: str = Field(default="INFO", description="Log level of services (JSON lines on stderr).")
    metrics_port: int = Field(
        default=0, description="Port of this service's /metrics (0: none; the API serves its own)."
    )
    metrics_port_base: int = Field(
        default=9101, description="`make run` gives its services /metrics ports from here up."
    )
    sample_data: Path = Field(
        default=REPO_ROOT / "data" / "online_retail_sample.parquet",
        description="The shipped sample of real purchases that `xsell run` replays.",
    )
    ingest_group: str = Field(default="xsell-ingest", description="Consumer group of `xsell ingest`.")
    poll_max_records: int = Field(default=500, description="Records per poll in consumer services.")
    fetch_min_bytes: int = Field(
        default=32 * 1024,
        ge=1,
        description="A consumer's fetch waits for this many bytes (or `fetch_max_wait_ms`): at a trickle of "
        "events, one batch and one offset commit per few dozen records instead of one per record.",
    )
    fetch_max_wait_ms: int = Field(
        default=250,
        ge=0,
        lt=30_000,
        description="The longest a fetch waits for `fetch_min_bytes`: the most a hop between services adds "
        "to an offer's latency (below the client's 30 s request timeout).",
    )
    gc_young_threshold: int = Field(
        default=10_000,
        ge=0,
        description="Allocations between young-generation garbage collections in consumer services (Python's "
        "default is 700; a batch allocates tens of thousands of short-lived objects). 0 turns automatic "
        "collection off.",
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000, description="Consumer-group session timeout: how soon a crashed member's partitions move."
    )

    # Feature store
    features_group: str = Field(default="xsell-features", description="Consumer group of the feature pipeline.")
    feast_online_store: str = Field(default="sqlite", description="Feast online store: sqlite or redis.")
    redis_url: str = Field(default="127.0.0.1:6379", description="Redis host:port when the online store is redis.")
    feast_registry_url: str | None = Field(
        default=None,
        description="Feast registry as a SQLAlchemy URL (Feast's SQL registry, shared by every instance); default the "
        "registry file beside the feature store under XSELL_HOME (the production profile: the xsell database).",
    )
    feast_push_offline: bool = Field(
        default=False,
        description="The feature pipeline pushes each batch's snapshots to the offline store too (files under "
        "XSELL_HOME). Off by default: Feast's file source rewrites a view's whole Parquet file at each push (a cost that "
        "grows with the history), and nothing needs it: `xsell train --data` backfills "
        "from its file, `xsell train` and `xsell retrain` rebuild the offline features from the purchase archive first "
        "(`training.retrain.train_from_archive`). Offline reads of streamed orders not yet in a backfill or retrain "
        "(`xsell recommend`, `xsell train --no-backfill --data`) see the features as of that rebuild.",
    )
    redis_port: int = Field(default=6379, description="Port of the redis-server `stack up --profile production` runs.")
    postgres_port: int = Field(default=5433, description="Port of the PostgreSQL cluster the production profile runs.")
    postgres_user: str = Field(
        default="xsell", description="Superuser of the local PostgreSQL cluster (loopback, trust)."
    )

    # Model tracking
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices(*MLFLOW_ALIASES),
        description="MLflow tracking server; default a local SQLite store under XSELL_HOME/mlflow.",
    )
    model_name: str = Field(default="xsell-ranker", description="Registered model name of the ranker.")
    experiment_name: str = Field(default="xsell-ranker", description="MLflow experiment of training runs.")
    champion_alias: str = Field(default="champion", description="Registry alias of the model that serves.")
    challenger_alias: str = Field(
        default="challenger",
        description="Registry alias of a model on trial: it serves challenger_share of the customers.",
    )
    challenger_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of customers (a stable hash of customer id and experiment id) the challenger serves "
        "while the challenger alias is set; 0: the champion serves everyone.",
    )
    experiment_id: str = Field(
        default="",
        description="Id of the live experiment, hashed with the customer id to split traffic; default "
        "champion-vX-challenger-vY, so each new challenger draws a new split.",
    )
    archive_group: str = Field(default="xsell-archive", description="Consumer group of the purchase archive.")
    retrain_window_days: int = Field(
        default=365, ge=1, description="`xsell train` from the archive: the last N days before its newest purchase."
    )
    retrain_every: str = Field(
        default="7d",
        pattern=r"^\s*[0-9]+[smhdSMHD]\s*$",
        description="How often `xsell retrain --every` retrains from the archive (e.g. 7d).",
    )

    # Offer rules
    offer_group: str = Field(default="xsell-offers", description="Consumer group of the offer service.")
    max_offers_per_message: int = Field(default=3, description="At most N offers per message.")
    max_popular_offers: int = Field(
        default=1,
        ge=0,
        description='At most N offers per message not tied to its basket: popularity ("Popular right now") or '
        'an earlier purchase ("... (your earlier purchase)"); see fills_beside_basket.',
    )
    max_variant_offers: int = Field(
        default=1,
        ge=0,
        description='At most N offers per message that are another design of an item just bought ("More designs like").',
    )
    fills_beside_basket: bool = Field(
        default=False,
        description="Let fills (popularity, earlier purchases; at most max_popular_offers) take places beside offers "
        "tied to the basket; off: they go only into a message with nothing tied to its basket. On trades relevance "
        "for purchases predicted (docs/benchmarks.md: the backtest both ways).",
    )
    bundles: bool = Field(
        default=True,
        description='Offer "complete the set" bundles: complements of a basket item that are bought together '
        "(each with it and with each other), as one offer taking one place of the message.",
    )
    bundle_discount: float = Field(
        default=0.0, ge=0.0, le=0.5, description="Discount on a bundle's total, a fraction (0.1: 10 %); 0: none."
    )
    bundle_max_items: int = Field(default=3, ge=2, description="At most N items in a bundle (besides the seed).")
    cap_per_24h: int = Field(default=1, description="Messages per customer per 24 hours.")
    cap_per_7d: int = Field(default=3, description="Messages per customer per 7 days.")
    min_score: float = Field(default=float("-inf"), description="Offers scoring below are suppressed.")
    upsell_min_ratio: float = Field(
        default=DEFAULT_PRICE_BAND.min_ratio, description="Up-sell: at least this x the bought item's price."
    )
    upsell_max_ratio: float = Field(
        default=DEFAULT_PRICE_BAND.max_ratio, description="Up-sell: at most this x the bought item's price."
    )
    excluded_products: list[str] = Field(default_factory=list, description="Never offer these product ids.")
    model_refresh_s: float = Field(default=15.0, description="How often the offer service checks for a new champion.")
    index_refresh_every: str = Field(
        default="1d",
        pattern=r"^\s*[0-9]+[smhdSMHD]\s*$",
        description="How often the background `xsell index refresh --every` rebuilds the champion's candidate "
        "index from the order lines seen so far (30m, 6h, 1d).",
    )
    product_cache_ttl_s: float = Field(
        default=300.0, description="Cache lifetime of product features in the offer service."
    )
    serving_candidates: int = Field(
        default=0,
        ge=0,
        description="Candidates the offer service scores per purchase, the best of the fusion (0: as many as "
        "the champion was trained with, 100 by default). Fewer trade ranking quality for throughput; the "
        "README's measured figures show the size of the trade.",
    )
    predict_threads: int = Field(
        default=0,
        ge=0,
        description="Threads per batch in the offer service, for the candidate fusion and LightGBM's predict "
        "(0: one per core). "
        "Set 1 when several instances or services share the cores (the production profile does): "
        "oversubscribed OpenMP threads make small batches several times slower.",
    )

    # Delivery and API
    delivery_group: str = Field(default="xsell-delivery", description="Consumer group of e-mail delivery.")
    inbox_group: str = Field(default="xsell-inbox", description="Consumer group that stores in-app offers.")
    feedback_group: str = Field(default="xsell-feedback", description="Consumer group of the feedback service.")
    attribution_window_days: float = Field(
        default=7.0, description="A purchase up to N days after an offer converts it."
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    mail_from: str = "offers@xsell.example"
    currency: str = Field(default="GBP", description="Currency of prices in offer e-mails.")
    delivery_retry_base_s: float = Field(default=1.0, description="First retry delay when SMTP fails.")
    delivery_retry_max_s: float = Field(default=60.0, description="Longest retry delay when SMTP fails.")
    offer_instances: int = Field(
        default=1, description="Offer-service processes `make run` starts (one consumer group)."
    )
    feature_instances: int = Field(
        default=1,
        description="Feature-pipeline processes `make run` starts (one consumer group, one shared fold state).",
    )
    delivery_instances: int = Field(default=1, description="E-mail delivery processes `make run` starts (one group).")
    api_workers: int = Field(
        default=1, description="uvicorn workers of the API; >1 runs `uvicorn --factory --workers N`."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    mlflow_ui_port: int = Field(default=5000, description="Port of the MLflow UI that `make run` starts.")
    public_base_url: str = Field(default="", description="Base URL in links; default http://API_HOST:API_PORT.")
    api_key: str = Field(default="xsell-demo-key", description="Key the shop's backend sends as X-API-Key.")
    demo_enabled: bool = Field(default=True, description="Serve the demo shop page (embeds the API key: demo only).")
    link_secret: str = Field(default="xsell-demo-link-secret", description="HMAC secret of click/unsubscribe links.")
    link_ttl_days: int = Field(default=30, description="Click and unsubscribe links expire after this.")
    api_rate_per_s: float = Field(
        default=1_000.0,
        ge=0.0,
        description="Requests per second each API key may make to /v1 (a token bucket per key and API process; "
        "over it: 429 with Retry-After); 0: no limit.",
    )
    api_rate_burst: int = Field(default=2_000, ge=1, description="Requests a key may make at once above its rate.")
    api_ack_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description="How long POST /v1/purchases waits for the broker's acknowledgement before it answers 503.",
    )
    api_decision_linger_ms: int = Field(
        default=50,
        ge=0,
        le=1_000,
        description="How long the API's producer of recorded answers (decisions on `offers`) waits to send them "
        "together: nothing waits for them, and one request to the broker per answer costs the API's network thread "
        "and the broker CPU. At most this adds to the time until the inbox and feedback services see an answer.",
    )
    recommendation_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        description="How long POST /v1/recommendations waits for its answer (the model loading, a busy recommender) "
        "before it answers 503 with Retry-After.",
    )
    recommendation_max_offers: int = Field(
        default=20, ge=1, description="The largest `limit` POST /v1/recommendations accepts."
    )
    recommendation_predict_threads: int = Field(
        default=1,
        ge=0,
        description="Threads of the checkout API's ranking, for the candidate fusion and LightGBM's predict (0: "
        "one per core). One answers a small batch of requests sooner: OpenMP threads that wait for the next "
        "predict keep the cores the API's event loop needs.",
    )
    recommendation_process: bool = Field(
        default=True,
        description="Rank POST /v1/recommendations in a process of its own (started by the API process): the "
        "ranking then takes no time from the interpreter lock of the API's event loop and recorder, nor they from "
        "it. Off: a thread of the API process ranks.",
    )
    free_delivery_threshold: float | None = Field(
        default=None,
        gt=0.0,
        description="Order value from which delivery is free; set, a cart below it gets one offer that closes the "
        'gap ("Add £4.10 for free delivery") from POST /v1/recommendations.',
    )
    free_delivery_max_overshoot: float = Field(
        default=1.0,
        ge=0.0,
        description="The free-delivery offer costs at most the gap x (1 + this): an item far dearer than the gap "
        "does not close it, it is another sale.",
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the xsell database: offer state, outbox, facts, preferences, in-app offers, the "
        "purchase archive; default SQLite under XSELL_HOME.",
    )
    fold_state_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the feature fold's state (shared by feature-pipeline instances); default "
        "SQLite beside the feature store under XSELL_HOME (the production profile: the xsell database).",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        """The profile's derived values, for every field not given explicitly (environment or keyword)."""
        if not isinstance(data, dict):
            return data
        profile = data.get("profile", "local")
        if profile not in PROFILES:
            raise ValueError(f"XSELL_PROFILE must be one of {', '.join(PROFILES)}, not {profile!r}")
        if profile == "local":
            return data

        def given(name: str) -> object:
            return data.get(name, cls.model_fields[name].default)

        derived = {}
        for name, value in production_values(given).items():
            keys = MLFLOW_ALIASES if name == "mlflow_tracking_uri" else (name,)
            if not any(key in data for key in (name, *keys)):
                derived[keys[0]] = value
        return {**data, **derived}

    def as_environment(self) -> dict[str, str]:
        """The values set explicitly or by the profile, as the `XSELL_*` variables that give a
        child process the same settings (it reads nothing else)."""
        environment = {}
        for name in sorted(self.model_fields_set | {"profile", "home"}):
            value = getattr(self, name)
            if value is None:
                continue
            text = (
                json.dumps(value)
                if isinstance(value, list)
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            environment[f"XSELL_{name.upper()}"] = text
        return environment

    @property
    def price_band(self) -> PriceBand:
        """The up-sell price band as configured (`XSELL_UPSELL_MIN_RATIO`..`XSELL_UPSELL_MAX_RATIO`)."""
        return PriceBand(self.upsell_min_ratio, self.upsell_max_ratio)

    @property
    def db_url(self) -> str:
        """The configured database, or the embedded SQLite file."""
        return self.database_url or f"sqlite:///{self.home / 'xsell.db'}"

    @property
    def fold_state_db_url(self) -> str:
        """The fold state's database: the configured one, or the embedded SQLite file beside the feature store."""
        return self.fold_state_url or f"sqlite:///{self.feast_dir / 'fold_state.db'}"

    @property
    def base_url(self) -> str:
        """Public base URL of the API (for links in e-mails)."""
        return self.public_base_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def mail_dir(self) -> Path:
        """Where the capture SMTP server stores each message as an .eml file."""
        return self.home / "mail"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking (and registry) URI: the configured server, or the local SQLite store."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts_uri(self) -> str:
        """Artifact root for experiments created against the local store."""
        return (self.home / "mlflow" / "artifacts").resolve().as_uri()

    @property
    def feast_dir(self) -> Path:
        """Feast registry, online store (SQLite), offline Parquet files and the fold state."""
        return self.home / "feast"

    @property
    def kafka_host(self) -> str:
        """Host part of the bootstrap address."""
        return self.kafka_bootstrap.rsplit(":", 1)[0]

    @property
    def kafka_port(self) -> int:
        """Port part of the bootstrap address."""
        return int(self.kafka_bootstrap.rsplit(":", 1)[1])

    @property
    def controller_port(self) -> int:
        """KRaft controller port (broker port + 1 unless set)."""
        return self.kafka_controller_port or self.kafka_port + 1

    @property
    def broker_dir(self) -> Path:
        """Broker data, config and log folder."""
        return self.home / "kafka"

    @property
    def jars_dir(self) -> Path:
        """Broker jars cache, keyed by Kafka version."""
        return self.kafka_jars_dir or self.home / "cache" / f"kafka-{self.kafka_version}"

    @property
    def consumer_groups(self) -> dict[str, str]:
        """Every consumer group of xsell by its stage, in the order of the flow."""
        return {
            "ingest": self.ingest_group,
            "features": self.features_group,
            "archive": self.archive_group,
            "offers": self.offer_group,
            "delivery": self.delivery_group,
            "inbox": self.inbox_group,
            "feedback": self.feedback_group,
        }

    @property
    def topic_partitions(self) -> dict[str, int]:
        """Every topic xsell uses, with its partition count."""
        return {
            self.topic_purchases: self.purchases_partitions,
            self.topic_purchases_dlq: self.dlq_partitions,
            self.topic_offers: self.offers_partitions,
            self.topic_offer_feedback: self.feedback_partitions,
        }


def production_values(given: Callable[[str], object]) -> dict[str, object]:
    """What the production profile implies, by field, from the values ``given`` returns for the
    ports and user it depends on: Redis online store, MLflow server on PostgreSQL, the xsell
    database on PostgreSQL (also the fold state and the Feast registry; no offline pushes), 12
    partitions, 3 offer, 2 feature-pipeline and 2 delivery instances, 2 API workers, one OpenMP
    thread per instance (instances share the host's cores)."""
    return {
        "feast_online_store": "redis",
        "redis_url": f"127.0.0.1:{given('redis_port')}",
        "mlflow_tracking_uri": f"http://127.0.0.1:{given('mlflow_ui_port')}",
        "database_url": f"postgresql+psycopg2://{given('postgres_user')}@127.0.0.1:{given('postgres_port')}/xsell",
        "fold_state_url": f"postgresql+psycopg2://{given('postgres_user')}@127.0.0.1:{given('postgres_port')}/xsell",
        "feast_registry_url": f"postgresql+psycopg2://{given('postgres_user')}@127.0.0.1:{given('postgres_port')}/xsell",
        "feast_push_offline": False,
        "feature_instances": 2,
        "purchases_partitions": 12,
        "offer_instances": 3,
        "delivery_instances": 2,
        "api_workers": 2,
        "predict_threads": 1,
    }


def load_settings(**overrides: object) -> Settings:
    """Read the settings once, from the environment (keyword overrides win), with the profile's
    derived values; in production (``env`` production) refuse placeholder secrets. Raises
    ``SettingsError`` with one line that names what to fix."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = [
            (".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, ")) for e in error.errors()
        ]
        raise SettingsError("; ".join(f"{where}: {msg}" if where else msg for where, msg in problems)) from None
    if settings.env == "production":
        refuse_placeholder_secrets(settings)
    return settings


def refuse_placeholder_secrets(settings: Settings) -> None:
    """Raise ``PlaceholderSecretError`` if the API key or link secret is a default, a placeholder
    or too short, or if the demo page (which embeds the API key) is on. The shipped defaults are
    public (they are in the repository), so a production process must not start with any of them."""
    problems: list[str] = []
    for field, variable in (("api_key", "XSELL_API_KEY"), ("link_secret", "XSELL_LINK_SECRET")):
        value: str = getattr(settings, field)
        default = Settings.model_fields[field].default
        if value == default or value.strip().lower() in KNOWN_PLACEHOLDERS:
            problems.append(
                f"{variable} is the public demo/placeholder value; set a random secret "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        elif len(value.strip()) < MIN_SECRET_LENGTH:
            problems.append(
                f"{variable} is {len(value.strip())} characters; use at least {MIN_SECRET_LENGTH} random ones"
            )
    if settings.api_key and settings.api_key == settings.link_secret:
        problems.append("XSELL_API_KEY and XSELL_LINK_SECRET are the same; use two different secrets")
    if settings.demo_enabled:
        problems.append("XSELL_DEMO_ENABLED is true: the demo page shows the API key to every visitor; set it to false")
    if problems:
        raise PlaceholderSecretError("refusing to run with placeholder secrets: " + "; ".join(problems))


@contextmanager
def environment_kept(*names: str) -> Iterator[None]:
    """Put the variables of ``names`` back as they were before the block (removed where they were
    unset): for libraries that export settings of their own at import or set-up (Feast, MLflow),
    which later settings and started processes must not inherit."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
