"""The fusion benchmark's generated inputs: tables of the asked shape; a call is timed."""

from __future__ import annotations

import numpy as np

from bench.fusion import call_ms, neighbour_tables


def test_tables_hold_the_asked_neighbours_per_source() -> None:
    tables = neighbour_tables(200, 7, 3, np.random.default_rng(1))
    assert tables.indptr.shape == (3, 201)
    per_item = np.diff(tables.indptr, axis=1)
    assert (per_item >= 1).all() and (per_item <= 7).all()  # duplicates are summed into one entry
    assert per_item.sum() > 0.9 * 3 * 200 * 7
    assert (tables.data > 0).all()


def test_a_call_is_timed() -> None:
    assert 0 < call_ms(300, 2, 5, calls=2, repeats=1, seed=3) < 1_000
