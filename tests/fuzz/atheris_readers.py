"""Coverage-guided fuzzing (atheris, libFuzzer) of `xsell.history.read_purchase_history` on CSV files.

    .venv/bin/python tests/fuzz/atheris_readers.py -atheris_runs=5000 [CORPUS_DIR]

The first input byte picks the file type and whether a canonical or UCI header is put in front (so
most inputs reach the row checks); the rest is the file body. Every input must give a
`PurchaseHistory` of valid order lines, or `UnknownLayoutError` / `ValueError` naming the file;
anything else is a crash that libFuzzer reports with its input. Prints the number of runs and exits
0 when nothing crashed. Not collected by pytest.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.atheris_runner import fuzz

with atheris.instrument_imports(include=["xsell.history"]):
    from xsell.events import MAX_LINE_QUANTITY
    from xsell.history import LINE_COLUMNS, UnknownLayoutError, read_purchase_history

HEADERS = [
    b"",
    b"order_id,customer_id,product_id,quantity,unit_price,ordered_at\n",
    b"order_id,customer_id,product_id,quantity,unit_price,ordered_at,product_name,marketing_consent,currency\n",
    b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n",
]
SUFFIXES = [".csv", ".txt", ".gz", ".parquet"]
SEEDS = [
    b"\x01O1,C1,P1,2,3.5,2011-01-01T10:00:00Z\nO2,,P2,-1,2.5,2011-01-02 10:00\n",
    b"\x02O1,C1,P1,2,3.5,2011-01-01,MUG,yes,EUR\nO1,C1,P1,1e30,nan,now,,,\n",
    b"\x03536365,85123A,MUG,6,12/1/2010 8:26,2.55,17850.0,UK\nC536379,D,Discount,-1,12/1/2010 9:41,27.5,inf,UK\n",
    b'\x01O1,C1,"P1,2,3.5,2011-01-01\n',
]
runs = 0
folder = Path(tempfile.mkdtemp(prefix="xsell-atheris-"))


def test_one_input(data: bytes) -> None:
    """One fuzz case: write the file, read it, check the outcome."""
    global runs
    runs += 1
    if not data:
        return
    path = folder / f"history{SUFFIXES[(data[0] >> 2) % len(SUFFIXES)]}"
    path.write_bytes(HEADERS[data[0] % len(HEADERS)] + data[1:])
    try:
        history = read_purchase_history(path)
    except UnknownLayoutError:
        return
    except ValueError as error:
        if str(path) not in str(error):
            raise AssertionError(f"error does not name the file: {error}") from error
        return
    lines = history.lines
    if list(lines.columns) != list(LINE_COLUMNS) or any(count <= 0 for count in history.rejected.values()):
        raise AssertionError(f"bad history shape: {list(lines.columns)} {history.rejected}")
    if not lines.empty and not (
        lines["ordered_at"].notna().all()
        and lines["order_id"].notna().all()
        and ((lines["quantity"] > 0) & (lines["quantity"] <= MAX_LINE_QUANTITY)).all()
        and (lines["unit_price"] > 0).all()
    ):
        raise AssertionError(f"invalid line kept: {lines.head(3).to_dict('records')}")


def main() -> None:
    """Seed a corpus folder if none is given, run libFuzzer, print the number of runs."""
    fuzz("readers", SEEDS, test_one_input, lambda seconds: f"atheris_readers: {runs} runs in {seconds:.1f} s, no crash")


if __name__ == "__main__":
    main()
