"""``select_in``: long id lists are looked up a chunk at a time, and every match comes back once; a
`SelectIn` built once answers each run for its own values;
``add_missing_columns``: a table stored before a column existed gets it, once (real SQLite database);
``execute_many`` stores on SQLite, through the driver, what SQLAlchemy's own executemany stores,
and on PostgreSQL sends an ``ON CONFLICT`` insert of many rows as a few multi-row statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from services.inbox.store import InboxStore, inbox_offers
from services.preferences import PreferenceStore
from xsell.chunks import QUERY_CHUNK
from xsell.database import (
    SelectIn,
    add_missing_columns,
    create_tables,
    engine_for,
    execute_many,
    hold_rows,
    select_in,
)


def _items(tmp_path: Path, numbers: range) -> tuple[Engine, Table]:
    """A SQLite table of items ``i<n>`` with their number ``n``, for each of ``numbers``."""
    engine = engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    metadata = MetaData()
    items = Table("items", metadata, Column("item_id", String, primary_key=True), Column("n", Integer))
    create_tables(metadata, engine)
    with engine.begin() as db:
        db.execute(insert(items), [{"item_id": f"i{n}", "n": n} for n in numbers])
    return engine, items


def test_a_long_list_is_one_query_per_chunk_and_finds_every_row(tmp_path: Path) -> None:
    engine, items = _items(tmp_path, range(0, 3 * QUERY_CHUNK, 2))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    wanted = [f"i{n}" for n in range(3 * QUERY_CHUNK)] + ["i0", "i2"]  # repeats are looked up once
    with engine.connect() as db:
        found = list(select_in(db, select(items), items.c.item_id, wanted))
    assert sorted(row["n"] for row in found) == list(range(0, 3 * QUERY_CHUNK, 2))
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3


def test_a_select_in_built_once_answers_each_run_for_its_own_values(tmp_path: Path) -> None:
    engine, items = _items(tmp_path, range(10))
    query = SelectIn(select(items.c.n), items.c.item_id)
    with engine.connect() as db:
        runs = [sorted(row["n"] for row in query.rows(db, ids)) for ids in (["i1", "i2"], ["i7"], [], ["i3", "x"])]
    assert runs == [[1, 2], [7], [], [3]]


def test_unsubscribed_answers_for_more_customers_than_one_chunk(tmp_path: Path) -> None:
    store = PreferenceStore(f"sqlite:///{tmp_path / 'x.db'}")
    gone = {f"C{n}" for n in range(0, 2 * QUERY_CHUNK + 7, 3)}
    for customer in gone:
        store.unsubscribe(customer)
    assert store.unsubscribed(f"C{n}" for n in range(2 * QUERY_CHUNK + 7)) == gone


def test_a_store_created_before_a_column_gets_it_when_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = engine_for(url)
    before = MetaData()  # the in-app offers as stored before bundles
    columns = [c for c in inbox_offers.columns if not c.name.startswith("bundle_")]
    old = Table("inbox_offers", before, *(Column(c.name, c.type, primary_key=c.primary_key) for c in columns))
    create_tables(before, engine)
    row = {
        "offer_id": "O1",
        "decision_id": "D1",
        "customer_id": "C1",
        "product_id": "P1",
        "offer_type": "cross_sell",
        "rank": 1,
        "score": 0.5,
        "reason": "test",
        "decided_at": datetime(2011, 1, 1, tzinfo=UTC),
        "status": "active",
    }
    with engine.begin() as db:
        db.execute(insert(old), [row])

    store = InboxStore(url)
    assert {"bundle_id", "bundle_price"} <= {c["name"] for c in inspect(store.engine).get_columns("inbox_offers")}
    [offer] = store.offers_for("C1")
    assert (offer.offer_id, offer.bundle_id, offer.bundle_price) == ("O1", None, None)
    add_missing_columns(inbox_offers, store.engine)  # nothing is missing any more: nothing to do
    store.close()
    engine.dispose()


def _typed_table(metadata: MetaData, name: str) -> Table:
    """A table with a column of each type the stores insert: text, time with zone, number, flag."""
    return Table(
        name,
        metadata,
        Column("key", String, primary_key=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("amount", Float),
        Column("count", Integer),
        Column("flag", Boolean),
        Column("note", String),
    )


def test_rows_inserted_through_the_driver_read_back_as_sqlalchemys_own_inserts_do(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    metadata = MetaData()
    ours, theirs = _typed_table(metadata, "ours"), _typed_table(metadata, "theirs")
    create_tables(metadata, engine)
    rows = [
        {
            "key": "a",
            "at": datetime(2011, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            "amount": 1.25,
            "count": 3,
            "flag": True,
            "note": "£ ünï",
        },
        {
            "key": "b",
            "at": datetime(2011, 12, 9, 12, 50, tzinfo=UTC),
            "amount": None,
            "count": None,
            "flag": False,
            "note": None,
        },
        {
            "key": "c",
            "at": datetime(2011, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            "amount": 2.0,
            "count": 1,
            "flag": None,
            "note": "x",
        },
        # the instant of "a" in another zone: SQLite's text keeps the wall time given, so it is no repeat of a's
        {"key": "d", "at": datetime(2011, 1, 2, 4, 4, 5, 6, tzinfo=timezone(timedelta(hours=1))), "note": ""},
    ]
    rows[3] |= {"amount": 0.5, "count": 0, "flag": True}
    with engine.begin() as db:
        execute_many(db, sqlite.insert(ours).on_conflict_do_nothing(), [*rows, {**rows[0], "note": "dropped"}])
        db.execute(insert(theirs), rows)
    with engine.connect() as db:
        stored = [db.execute(select(table).order_by(table.c.key)).all() for table in (ours, theirs)]
        raw = [db.exec_driver_sql("SELECT * FROM ours ORDER BY key").all()]
        raw.append(db.exec_driver_sql("SELECT * FROM theirs ORDER BY key").all())
    assert stored[0] == stored[1] and raw[0] == raw[1]  # the same values, and the same text in the file
    assert [row.note for row in stored[0]] == ["£ ünï", None, "x", ""]  # the conflicting last row changed nothing
    assert raw[0][0].at != raw[0][3].at


def test_no_rows_is_no_statement(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    metadata = MetaData()
    table = _typed_table(metadata, "t")
    create_tables(metadata, engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.begin() as db:
        execute_many(db, insert(table), [])
    assert not [s for s in statements if s.startswith("INSERT")]


def test_on_postgresql_conflicting_inserts_of_many_rows_go_in_a_few_statements(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    metadata = MetaData()
    table = _typed_table(metadata, "t")
    create_tables(metadata, engine)
    at = datetime(2011, 1, 2, tzinfo=UTC)
    rows = [
        {"key": f"k{n}", "at": at, "amount": n / 2, "count": n, "flag": n % 2 == 0, "note": "first"}
        for n in range(3000)
    ]
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    with engine.begin() as db:
        execute_many(db, postgresql.insert(table).on_conflict_do_nothing(), rows[:2000])
        execute_many(db, postgresql.insert(table).on_conflict_do_nothing(), [{**row, "note": "again"} for row in rows])
        upsert = postgresql.insert(table)
        execute_many(
            db,
            upsert.on_conflict_do_update(index_elements=["key"], set_={"note": upsert.excluded.note}),
            [{**rows[0], "note": "updated"}],
        )
    rows_sent = [statement.count("), (") + 1 for statement in sent if statement.startswith("INSERT")]
    assert rows_sent == [1000, 1000, 1000, 1000, 1000, 1]  # rows in multi-row VALUES, not 5,001 round trips
    with engine.connect() as db:
        notes = dict(db.execute(select(table.c.key, table.c.note)).all())
    assert len(notes) == 3000 and notes["k0"] == "updated" and notes["k1"] == "first" and notes["k2999"] == "again"
    engine.dispose()


def test_on_postgresql_held_rows_are_one_statement_each_key_once(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    metadata = MetaData()
    locks = Table(
        "locks", metadata, Column("name", String, primary_key=True), Column("touched_at", Float, nullable=False)
    )
    create_tables(metadata, engine)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    with engine.begin() as db:
        hold_rows(db, locks, ["a", "b", "b", "c"])
        hold_rows(db, locks, ["b", "d"])  # a held row again, and a new one
    assert [statement.count("), (") + 1 for statement in sent if statement.startswith("INSERT")] == [3, 2]
    with engine.connect() as db:
        assert sorted(db.scalars(select(locks.c.name))) == ["a", "b", "c", "d"]
    engine.dispose()
