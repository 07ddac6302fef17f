"""``select_in``: long id lists are looked up a chunk at a time, and every match comes back once
(real SQLite database)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select

from services.preferences import PreferenceStore
from xsell.chunks import QUERY_CHUNK
from xsell.database import create_tables, engine_for, select_in


def test_a_long_list_is_one_query_per_chunk_and_finds_every_row(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    metadata = MetaData()
    items = Table("items", metadata, Column("item_id", String, primary_key=True), Column("n", Integer))
    create_tables(metadata, engine)
    with engine.begin() as db:
        db.execute(insert(items), [{"item_id": f"i{n}", "n": n} for n in range(0, 3 * QUERY_CHUNK, 2)])
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    wanted = [f"i{n}" for n in range(3 * QUERY_CHUNK)] + ["i0", "i2"]  # repeats are looked up once
    with engine.connect() as db:
        found = list(select_in(db, select(items), items.c.item_id, wanted))
    assert sorted(row["n"] for row in found) == list(range(0, 3 * QUERY_CHUNK, 2))
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3


def test_unsubscribed_answers_for_more_customers_than_one_chunk(tmp_path: Path) -> None:
    store = PreferenceStore(f"sqlite:///{tmp_path / 'x.db'}")
    gone = {f"C{n}" for n in range(0, 2 * QUERY_CHUNK + 7, 3)}
    for customer in gone:
        store.unsubscribe(customer)
    assert store.unsubscribed(f"C{n}" for n in range(2 * QUERY_CHUNK + 7)) == gone
