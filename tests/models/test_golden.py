"""Golden values of the candidate index, the candidates, the feature matrix and a ranker's top k on
the shipped sample (``data/online_retail_sample.parquet``), so that a change meant to be faster
cannot change what is learnt or offered without notice.

What is pinned, at ``as_of`` = the last order minus 60 days (the protocol's default cutoff):
  * ``index.json``: items, orders, a digest of the products table, and per neighbour source the
    number of pairs, a digest of the exact (seed, item) structure and two checksums of the scores;
  * ``candidates.csv.gz``: the candidates of 50 evaluation triggers (every k-th of the table);
  * ``features.json``: per feature column of those candidates' rows (empty customer and product
    feature frames, so no Feast is needed), the NaN count and two checksums;
  * ``top_k.csv``: the top 10 of a tiny deterministic LightGBM ranker trained on those rows
    (label = candidate in the trigger's truth).

Floats compare with a 1e-6 tolerance, everything else exactly. To rewrite the files after a change
that is meant to change these values (say why in the commit), run

    XSELL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/models/test_golden.py

and review the diff of ``tests/data/golden/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.candidates import CandidateGenerator
from models.features import FEATURE_COLUMNS, build_feature_rows, candidates_with_context
from models.index import SOURCES, CandidateIndex
from models.ranking import top_k
from training.protocol import build_evaluation_triggers
from xsell.history import read_purchase_history

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "online_retail_sample.parquet"
GOLDEN = ROOT / "tests" / "data" / "golden"
UPDATE = os.environ.get("XSELL_UPDATE_GOLDEN") == "1"
TRIGGERS = 50
TOLERANCE = 1e-6
CANDIDATE_FIELDS = (
    "trigger_id",
    "product_id",
    "candidate_rank",
    "fused_score",
    "offer_type",
    "source",
    "source_rank",
    "seed_product_id",
)


@pytest.fixture(scope="module")
def golden() -> dict[str, object]:
    """Everything the golden files pin, computed from the sample with the current code."""
    lines = read_purchase_history(SAMPLE).lines
    as_of = lines["ordered_at"].max() - pd.Timedelta(days=60)
    index = CandidateIndex.build(lines, as_of)
    triggers = build_evaluation_triggers(lines, as_of, 30).triggers
    step = max(1, len(triggers) // TRIGGERS)
    triggers = triggers.iloc[::step].head(TRIGGERS).reset_index(drop=True)
    generator = CandidateGenerator(index)
    candidates = generator.candidates_for_triggers(triggers)
    context = candidates_with_context(generator, triggers)
    rows = build_feature_rows(
        context,
        triggers,
        pd.DataFrame(index=triggers["trigger_id"]),
        pd.DataFrame(index=pd.Index([], name="product_id")),
    )
    return {"index": index, "triggers": triggers, "candidates": candidates, "rows": rows}


def _digest(*arrays: np.ndarray) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


def _checksums(values: np.ndarray) -> dict[str, float]:
    """Sum of the finite values and their sum weighted by a position pattern (order-sensitive)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    weights = (np.arange(len(values)) % 97 + 1).astype(np.float64)
    return {
        "nan": int((~finite).sum()),
        "sum": float(values[finite].sum()),
        "weighted": float((values[finite] * weights[finite]).sum()),
    }


def index_summary(index: CandidateIndex) -> dict[str, object]:
    """Sizes and digests of the index (structure exact, scores by checksum)."""
    products = index.products.copy()
    products["last_sold"] = products["last_sold"].astype("int64")
    table = pd.util.hash_pandas_object(products.round(6), index=False).to_numpy()
    summary: dict[str, object] = {"items": index.size, "orders": index.orders, "products": _digest(table)}
    for source in (*SOURCES, "cooccurrence"):
        matrix = (index.cooccurrence if source == "cooccurrence" else index.neighbours[source]).tocsr().copy()
        matrix.sort_indices()
        rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
        cols = matrix.indices.astype(np.int64)
        scores = matrix.data.astype(np.float64)
        weights = ((rows * 1_000_003 + cols) % 9973 + 1).astype(np.float64)
        summary[source] = {
            "nnz": int(matrix.nnz),
            "structure": _digest(rows, cols),
            "sum": float(scores.sum()),
            "weighted": float((scores * weights).sum()),
        }
    return summary


def feature_summary(rows: pd.DataFrame) -> dict[str, object]:
    """Labels digest plus per-column checksums of the feature matrix."""
    labels = rows[["trigger_id", "product_id", "offer_type", "reason"]].astype(str)
    return {
        "rows": len(rows),
        "labels": _digest(pd.util.hash_pandas_object(labels, index=False).to_numpy()),
        "columns": {c: _checksums(rows[c].to_numpy()) for c in FEATURE_COLUMNS},
    }


def ranked(golden: dict[str, object]) -> pd.DataFrame:
    """Top 10 per trigger of a tiny deterministic LightGBM ranker trained on the rows."""
    import lightgbm  # noqa: PLC0415  (LightGBM: slow to import)

    rows, triggers = golden["rows"], golden["triggers"]
    truth = triggers[["trigger_id", "truth"]].explode("truth").dropna()
    positive = pd.MultiIndex.from_arrays([truth["trigger_id"], truth["truth"]])
    labels = pd.MultiIndex.from_arrays([rows["trigger_id"], rows["product_id"]]).isin(positive).astype(int)
    groups = rows.groupby("trigger_id", sort=False).size().to_numpy()
    values = rows[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    model = lightgbm.LGBMRanker(
        n_estimators=10,
        num_leaves=7,
        min_child_samples=5,
        learning_rate=0.1,
        deterministic=True,
        force_col_wise=True,
        n_jobs=1,
        seed=7,
        verbose=-1,
    )
    model.fit(values, labels, group=groups)
    return top_k(rows, model.predict(values), 10)


def _compare(actual: object, expected: object, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), where
        for key in expected:
            _compare(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=TOLERANCE, abs=TOLERANCE), where
    else:
        assert actual == expected, where


def _check_json(name: str, actual: dict[str, object]) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    _compare(actual, json.loads(path.read_text()), name)


def _check_table(name: str, actual: pd.DataFrame, floats: tuple[str, ...]) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        actual.to_csv(path, index=False, float_format="%.9g")
    expected = pd.read_csv(path, dtype=str, keep_default_na=False)
    actual_text = actual.astype(object).where(actual.notna(), "").astype(str)
    assert list(actual.columns) == list(expected.columns), name
    assert len(actual) == len(expected), name
    for column in actual.columns:
        if column in floats:
            np.testing.assert_allclose(
                actual[column].to_numpy(dtype=float),
                expected[column].to_numpy(dtype=float),
                rtol=TOLERANCE,
                atol=TOLERANCE,
                err_msg=f"{name}: {column}",
            )
        else:
            mismatch = np.flatnonzero(actual_text[column].to_numpy() != expected[column].to_numpy())
            assert len(mismatch) == 0, f"{name}: {column} differs first at row {mismatch[:1]}"


def test_index_matches_golden(golden: dict[str, object]) -> None:
    _check_json("index.json", index_summary(golden["index"]))


def test_candidates_match_golden(golden: dict[str, object]) -> None:
    candidates = golden["candidates"][list(CANDIDATE_FIELDS)].copy()
    for column in ("candidate_rank", "source_rank"):
        candidates[column] = candidates[column].astype("int64")
    assert candidates["trigger_id"].nunique() == TRIGGERS
    _check_table("candidates.csv.gz", candidates, floats=("fused_score",))


def test_feature_matrix_matches_golden(golden: dict[str, object]) -> None:
    _check_json("features.json", feature_summary(golden["rows"]))


def test_top_k_matches_golden(golden: dict[str, object]) -> None:
    _check_table(
        "top_k.csv", ranked(golden)[["trigger_id", "product_id", "rank", "offer_type", "score"]], floats=("score",)
    )
