"""The serving model: a registered LightGBM booster with the candidate index it ranks, as the
offer service, batch scoring and the backtest load it from the MLflow registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from models.bundles import BundlePicker
from models.candidates import CandidateConfig, CandidateGenerator
from models.index import CandidateIndex
from models.index_source import index_run_id
from models.registry import (
    CONFIG_ARTIFACT,
    download_index,
    open_tracking,
    require_champion,
    version_number,
    version_run_id,
)
from xsell.settings import Settings


@dataclass
class Champion:
    """The serving model: booster, its candidate index and candidate settings, its version."""

    booster: object
    index: CandidateIndex
    candidate_config: CandidateConfig
    version: int
    run_id: str
    index_run_id: str = ""  # the run whose candidate index this serves (a refresh run, or run_id)
    registered_at: float = 0.0  # when this version was registered (Unix seconds)

    @cached_property
    def generator(self) -> CandidateGenerator:
        """The candidate generator of this model (built once: it prepares lookup tables)."""
        return CandidateGenerator(self.index, self.candidate_config)

    @cached_property
    def bundles(self) -> BundlePicker:
        """The "complete the set" picker of this model's index, with its candidates' claim threshold."""
        return BundlePicker(self.index, self.candidate_config)

    @property
    def index_as_of(self) -> pd.Timestamp:
        """The time the candidate index was built as of (it knows the lines before it)."""
        return self.index.as_of

    def prepare(self) -> None:
        """Build the lookup tables serving reads (generator, names, bundles) now rather than on the first batch."""
        _ = self.generator, self.product_names, self.bundles

    @cached_property
    def product_names(self) -> dict[str, str]:
        """Product names by id, as of the index."""
        products = self.index.products
        names = products["name"] if "name" in products else pd.Series([None] * len(products))
        return {p: n for p, n in zip(products["product_id"], names, strict=True) if isinstance(n, str)}


def load_champion(settings: Settings, scratch: Path, alias: str | None = None, version: int | None = None) -> Champion:
    """Load ``models:/NAME@champion`` (or another alias: the challenger; or the model ``version``
    given) and its candidate index (downloaded into ``scratch``): the index of the run its
    ``candidate_index.run_id`` tag names (``xsell index refresh``), else its training run's."""
    import mlflow  # noqa: PLC0415  (MLflow: slow to import)
    import mlflow.lightgbm  # noqa: PLC0415  (MLflow: slow to import)

    client = open_tracking(settings)
    alias = alias or settings.champion_alias
    if version is None and alias == settings.champion_alias:
        version = require_champion(client, settings)
    elif version is None:
        version = version_number(client.get_model_version_by_alias(settings.model_name, alias).version)
    mv = client.get_model_version(settings.model_name, str(version))
    booster = mlflow.lightgbm.load_model(f"models:/{settings.model_name}/{version}")
    index_run = index_run_id(mv)
    index = CandidateIndex.load(download_index(client, index_run, scratch))
    config_path = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id, artifact_path=CONFIG_ARTIFACT, dst_path=str(scratch)
    )
    n_candidates = int(json.loads(Path(config_path).read_text()).get("n_candidates", CandidateConfig.n_candidates))
    return Champion(
        booster=booster,
        index=index,
        candidate_config=CandidateConfig(n_candidates=n_candidates),
        version=version_number(mv.version),
        run_id=version_run_id(mv),
        index_run_id=index_run,
        registered_at=(mv.creation_timestamp or 0) / 1000,
    )
