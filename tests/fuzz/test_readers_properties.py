"""Property-based fuzzing of the purchase-history readers on generated CSV files (hypothesis).

Broken rows, missing values, bad dates and numbers, odd encodings and truncated quoting: the reader
returns a `PurchaseHistory` whose lines are all valid order lines and whose rejected rows are
counted by reason, or raises `UnknownLayoutError`, `FileNotFoundError` or a `ValueError` naming the
file, never another exception.
"""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsell.events import MAX_LINE_QUANTITY, MAX_UNIT_PRICE
from xsell.history import (
    CANONICAL_OPTIONAL,
    CANONICAL_REQUIRED,
    LINE_COLUMNS,
    UCI_COLUMNS,
    PurchaseHistory,
    UnknownLayoutError,
    read_purchase_history,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# every reason the reader counts (xsell.history), including what the event contract refuses
REASONS = {
    "missing_order_id",
    "missing_product_id",
    "bad_timestamp",
    "bad_quantity",
    "bad_price",
    "non_positive_price",
    "id_too_long",
    "bad_currency",
    "bad_channel",
    "bad_email",
}

garbage = st.text(max_size=12) | st.sampled_from(
    [
        "",
        " ",
        "NaN",
        "nan",
        "NULL",
        "None",
        "inf",
        "-inf",
        "1e400",
        "now",
        "today",
        "\x00",
        '"',
        "'",
        ",",
        "\n",
        "\r\n",
        "é",
        "€",
    ]
)
dates = (
    st.sampled_from(
        [
            "2011-01-01T10:00:00Z",
            "2011-01-01 10:00",
            "2010-12-01T08:26:00+01:00",
            "12/1/2010 8:26",
            "1/13/2011 8:26",
            "2011-02-30",
            "0001-01-01",
            "9999-12-31T23:59:59-01:00",
            "2262-04-12",
            "1677-09-21",
            "1970-01-01",
            "0",
            "-1",
            "1e30",
            "99999999999999999999",
            "2011-13-01",
            "2011-01-01T25:00",
            "Tue, 1 Mar 2011 10:00:00 +0000",
        ]
    )
    | st.datetimes().map(lambda d: d.isoformat())
    | garbage
)
quantities = (
    st.integers(-2 * MAX_LINE_QUANTITY, 2 * MAX_LINE_QUANTITY).map(str)
    | st.sampled_from(["0", "-0", "1.5", "2.0", "1e30", "-1e30", "99999999999999999999", "9" * 400])
    | garbage
)
prices = (
    st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.sampled_from(["0", "-1", "2.55", "1e-300", str(MAX_UNIT_PRICE + 1), "1,5"])
    | garbage
)
ids = st.text(alphabet="ABC0123456789 -_", max_size=8) | garbage
CELLS = {
    "quantity": quantities,
    "Quantity": quantities,
    "unit_price": prices,
    "UnitPrice": prices,
    "ordered_at": dates,
    "InvoiceDate": dates,
    "CustomerID": st.floats().map(repr) | ids,
}


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    """(file bytes, suffix, well_formed): a canonical or UCI layout (or neither), fuzzed cells, maybe broken."""
    layout = draw(st.sampled_from(["canonical", "uci", "other"]))
    if layout == "canonical":
        columns = list(CANONICAL_REQUIRED) + draw(st.lists(st.sampled_from(CANONICAL_OPTIONAL), unique=True))
    elif layout == "uci":
        columns = list(UCI_COLUMNS) + ["Country"]
    else:
        columns = draw(
            st.lists(st.sampled_from(CANONICAL_REQUIRED + UCI_COLUMNS) | st.text(max_size=6), max_size=6, unique=True)
        )
    columns = draw(st.permutations(columns))
    rows = [[draw(CELLS.get(column, ids)) for column in columns] for _ in range(draw(st.integers(0, 8)))]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([columns, *rows])
    text = buffer.getvalue()
    well_formed = draw(st.booleans())
    if not well_formed:  # break it: cut it anywhere, drop or add cells, stray quotes
        text = draw(
            st.sampled_from(
                [
                    text[: draw(st.integers(0, len(text)))],
                    text.replace(",", "", 1),
                    text + "a,b,c,d,e,f,g,h,i,j\n",
                    text.replace("\n", '\n"', 1),
                    text.replace("\n", ",extra\n", 2),
                    text + "\n\n\n",
                    "\ufeff" + text,
                ]
            )
        )
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    suffix = draw(st.sampled_from([".csv", ".csv", ".txt", ".gz"]))
    if suffix == ".gz":
        data = gzip.compress(data) if draw(st.booleans()) else data  # a .gz that is not gzip: a clear error
    return data, suffix, well_formed and encoding in ("utf-8", "utf-8-sig") and suffix != ".gz"


def check_history(history: PurchaseHistory) -> None:
    """Every kept line is a valid order line; rejections are counted under known reasons."""
    lines = history.lines
    assert list(lines.columns) == list(LINE_COLUMNS)
    assert set(history.rejected) <= REASONS and all(count > 0 for count in history.rejected.values())
    if lines.empty:
        return
    assert lines["order_id"].notna().all() and lines["product_id"].notna().all()
    assert (lines["product_id"] != "").all()
    assert str(lines["ordered_at"].dt.tz) == "UTC" and lines["ordered_at"].notna().all()
    assert lines["ordered_at"].is_monotonic_increasing
    assert (
        lines["quantity"].dtype == np.int64
        and ((lines["quantity"] > 0) & (lines["quantity"] <= MAX_LINE_QUANTITY)).all()
    )
    assert np.isfinite(lines["unit_price"]).all()
    assert ((lines["unit_price"] > 0) & (lines["unit_price"] <= MAX_UNIT_PRICE)).all()
    assert lines["is_return"].dtype == bool


def read(path: Path) -> PurchaseHistory | Exception:
    """Read `path`; the only exceptions allowed are the documented ones, with a message naming the problem."""
    try:
        history = read_purchase_history(path)
    except UnknownLayoutError as error:
        assert "layout" in str(error) or "unsupported file type" in str(error)
        return error
    except FileNotFoundError as error:
        assert str(path) in str(error)
        return error
    except ValueError as error:
        assert str(path) in str(error), f"the error should name the file: {error}"
        return error
    check_history(history)
    return history


@FUZZ
@given(csv_files())
def test_generated_csv_files_read_as_history_or_a_clear_error(file: tuple[bytes, str, bool]) -> None:
    data, suffix, well_formed = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"history{suffix}"
        path.write_bytes(data)
        outcome = read(path)
        if isinstance(outcome, PurchaseHistory) and well_formed:
            rows = len(pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]))
            assert outcome.source_rows == rows  # no row vanished uncounted


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([".csv", ".gz", ".txt", ".parquet", ".pq", ".xlsx", ""]))
def test_arbitrary_bytes_read_as_history_or_a_clear_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"history{suffix}"
        path.write_bytes(data)
        read(path)


def test_missing_file_is_file_not_found_naming_it(tmp_path: Path) -> None:
    outcome = read(tmp_path / "nowhere.csv")
    assert isinstance(outcome, FileNotFoundError)


def test_latin1_file_is_a_value_error_that_says_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        ("order_id,customer_id,product_id,quantity,unit_price,ordered_at\nO1,C\xe9,P1,2,3.5,2011-01-01\n").encode(
            "latin-1"
        )
    )
    outcome = read(path)
    assert isinstance(outcome, ValueError) and "UTF-8" in str(outcome)


def test_relative_and_overflowing_values_are_rejected_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "edge.csv"
    path.write_text(
        "order_id,customer_id,product_id,quantity,unit_price,ordered_at\n"
        "O1,C1,P1,2,3.5,now\nO2,C1,P1,1e30,3.5,2011-01-01\nO3,C1,P1,2,1e30,2011-01-01\n"
        "O4,C1,P1,2,3.5,2011-01-01\n"
    )
    history = read(path)
    assert isinstance(history, PurchaseHistory)
    assert history.rejected == {"bad_timestamp": 1, "bad_quantity": 1, "bad_price": 1}
    assert history.lines["order_id"].tolist() == ["O4"]


def test_uci_customer_id_infinity_is_anonymous_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "uci.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
        "536365,85123A,MUG,6,12/1/2010 8:26,2.55,inf\n"
    )
    history = read(path)
    assert isinstance(history, PurchaseHistory) and history.lines["customer_id"].isna().all()
