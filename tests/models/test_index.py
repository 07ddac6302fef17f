"""The candidate index: what it learns, what it ignores, and its save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.candidates import CandidateGenerator
from models.index import SOURCES, CandidateIndex, IndexConfig
from tests.models.retail import START, lines_frame, order, store_history


def neighbours_of(index: CandidateIndex, source: str, product: str) -> set[str]:
    row = index.neighbours[source][index.position[product]]
    return set(index.products["product_id"].to_numpy()[row.indices])


def test_service_codes_are_not_items() -> None:
    index = CandidateIndex.build(store_history(), START + pd.Timedelta(days=40))
    assert "POST" not in index.position
    assert {"L1", "L2", "C1", "M1"} <= set(index.position)


def test_lines_at_or_after_as_of_are_ignored() -> None:
    lines = store_history()
    as_of = START + pd.Timedelta(days=25)
    future = lines_frame(order("F1", "K9", 25, "L1", "M1") + order("F2", "K9", 26, "L2", "M1"))
    plain = CandidateIndex.build(lines, as_of)
    with_future = CandidateIndex.build(pd.concat([lines, future], ignore_index=True), as_of)
    pd.testing.assert_frame_equal(plain.products, with_future.products)
    for source in SOURCES:
        assert (plain.neighbours[source] != with_future.neighbours[source]).nnz == 0


def test_sources_learn_the_expected_pairs() -> None:
    index = CandidateIndex.build(store_history(), START + pd.Timedelta(days=40))
    assert "C1" in neighbours_of(index, "basket", "L1")
    assert "M1" in neighbours_of(index, "followup", "L1")
    assert neighbours_of(index, "upsell", "L1") == {"L2"}  # L3 is too dear, L4 too cheap
    products = index.products.set_index("product_id")
    assert products.loc["L1", "category"] == products.loc["L2", "category"] == "METAL LANTERN"
    assert products.loc["C3", "return_rate"] > 0


def test_upsell_band_is_configurable() -> None:
    config = IndexConfig(upsell_min_ratio=1.01, upsell_max_ratio=20.0, upsell_min_customers=1)
    index = CandidateIndex.build(store_history(), START + pd.Timedelta(days=40), config)
    assert neighbours_of(index, "upsell", "L1") == {"L2", "L3", "L4"}


def test_save_load_round_trip(tmp_path: Path) -> None:
    lines = store_history()
    index = CandidateIndex.build(lines, START + pd.Timedelta(days=40), IndexConfig(neighbours=20))
    directory = index.save(tmp_path / "index")
    assert {p.name for p in directory.iterdir()} == {
        "manifest.json",
        "products.parquet",
        "neighbours.parquet",
        "cooccurrence.parquet",
        "kind_pairs.parquet",
    }
    loaded = CandidateIndex.load(directory)
    assert loaded.config == index.config
    assert loaded.as_of == index.as_of
    assert loaded.orders == index.orders
    pd.testing.assert_frame_equal(loaded.products, index.products)
    for source in SOURCES:
        assert np.array_equal(loaded.neighbours[source].toarray(), index.neighbours[source].toarray())
    assert np.array_equal(loaded.cooccurrence.toarray(), index.cooccurrence.toarray())
    assert index.kind_pairs is not None and len(index.kind_pairs)  # lanterns go with candles
    pd.testing.assert_frame_equal(loaded.kind_pairs, index.kind_pairs)
    trigger = {"customer_id": "K5", "basket": ["L1"], "at": START + pd.Timedelta(days=41), "history": {"C1"}}
    pd.testing.assert_frame_equal(
        CandidateGenerator(loaded).candidates_for(**trigger), CandidateGenerator(index).candidates_for(**trigger)
    )


def test_load_refuses_an_unknown_format(tmp_path: Path) -> None:
    directory = CandidateIndex.build(store_history(), START + pd.Timedelta(days=40)).save(tmp_path / "i")
    manifest = directory / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version": 99'))
    try:
        CandidateIndex.load(directory)
    except ValueError as error:
        assert "format" in str(error)
    else:
        raise AssertionError("an unknown format version was accepted")


def test_an_index_saved_without_kind_pairs_loads_and_backs_every_claim(tmp_path: Path) -> None:
    index = CandidateIndex.build(store_history(), START + pd.Timedelta(days=40))
    directory = index.save(tmp_path / "index")
    (directory / "kind_pairs.parquet").unlink()
    loaded = CandidateIndex.load(directory)
    assert loaded.kind_pairs is None
    trigger = {"customer_id": "K5", "basket": ["L1"], "at": START + pd.Timedelta(days=41), "history": set()}
    reasons = CandidateGenerator(loaded).candidates_for(**trigger).set_index("product_id")["reason"]
    assert reasons["C1"] == "Often bought with WHITE METAL LANTERN"
