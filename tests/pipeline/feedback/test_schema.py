"""The feedback store's engine: SQLite files get their folder, WAL and foreign keys."""

from __future__ import annotations

import sqlalchemy as sa

from pipeline.feedback.schema import make_engine, sqlite_url


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
