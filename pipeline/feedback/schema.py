"""The feedback store's tables and how to reach a database: one owner of the schema.

``predictions``: id, model version, time, the input record (JSON), score, threshold, decision,
and the model scored in shadow beside it (``shadow_version``, ``shadow_score``; NULL when none).
``feedback``: an increasing id, the prediction's id, label 0 or 1, source, time; the pair
(prediction id, source) is unique, so the same feedback sent twice is stored once.
``flywheel_schema``: the versions the schema was upgraded to (:meth:`FeedbackStore.upgrade`).

Schema versions: 1, the first; 2 adds ``predictions.shadow_version`` and ``shadow_score``
(:data:`UPGRADES`, nullable columns added in place, so rows logged before keep their meaning).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.feedback.records import MAX_SOURCE_LENGTH

SCHEMA_VERSION = 2


def new_prediction_ids(n: int) -> list[str]:
    """``n`` new prediction ids: 32 hex digits, the clock's nanoseconds then 64 random bits.

    Time first, so that new rows land at the end of the primary key's index instead of on
    random pages of it (as uuid4 ids did): a commit of a few predictions then writes a few
    pages, not one per row, and SQLite's WAL reaches its checkpoint several times less often.
    Each checkpoint stalled the commit that ran it (and the requests waiting on that commit) for
    5-15 ms. The random half keeps an id unguessable: it is what a client sends feedback with.
    """
    prefix = f"{time.time_ns():016x}"
    return [prefix + secrets.token_hex(8) for _ in range(n)]


metadata = sa.MetaData()
schema_info = sa.Table(
    "flywheel_schema",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("upgraded_at", sa.DateTime(timezone=True), nullable=False),
)
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("decision", sa.SmallInteger, nullable=False),
    sa.Column("shadow_version", sa.String(64), nullable=True),
    sa.Column("shadow_score", sa.Float, nullable=True),
)
sa.Index("ix_predictions_shadow_version", predictions.c.shadow_version)

# The steps from each version to the next, as SQL that SQLite and PostgreSQL both take.
UPGRADES: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE predictions ADD COLUMN shadow_version VARCHAR(64)",
        "ALTER TABLE predictions ADD COLUMN shadow_score FLOAT",
        "CREATE INDEX ix_predictions_shadow_version ON predictions (shadow_version)",
    ),
}
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(32), sa.ForeignKey("predictions.id"), nullable=False),
    sa.Column("label", sa.SmallInteger, nullable=False),
    sa.Column("source", sa.String(MAX_SOURCE_LENGTH), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("prediction_id", "source", name="uq_feedback_prediction_source"),
    sa.CheckConstraint("label IN (0, 1)", name="ck_feedback_label"),
)
sa.Index("ix_feedback_created_at", feedback.c.created_at)


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file (the default store: ``FlywheelHome.feedback_url``)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and their folder created."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine
