"""The feedback store's engine: SQLite files get their folder, WAL and foreign keys."""

from __future__ import annotations

import sqlalchemy as sa

from pipeline.feedback.schema import make_engine, new_prediction_ids, sqlite_url


def test_a_sqlite_store_gets_its_folder_wal_and_foreign_keys(tmp_path):
    path = tmp_path / "not" / "yet" / "feedback.db"
    url = sqlite_url(path)
    assert url == f"sqlite:///{path.resolve()}"
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    assert path.parent.is_dir()
    engine.dispose()


def test_prediction_ids_are_unique_hex_and_in_the_order_they_were_made():
    first = new_prediction_ids(500)
    later = new_prediction_ids(500)
    ids = first + later
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # New rows go to the end of the primary key's index (see new_prediction_ids).
    assert max(first) < min(later)
    assert len({i[16:] for i in first}) == len(first)  # the random half differs within a call
