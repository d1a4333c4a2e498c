"""The feedback store: every served prediction, and what really happened, in a real database.

SQLAlchemy Core over any URL: a SQLite file under ``FLYWHEEL_HOME`` by default (WAL mode, so the
serving app writes while Dagster reads), or PostgreSQL for several machines. The tables
(``predictions`` and ``feedback``) and the engine are in :mod:`pipeline.feedback.schema`.

What one piece of feedback must be, and the errors, are in :mod:`pipeline.feedback.records`.
The schema is created or upgraded explicitly (:meth:`FeedbackStore.upgrade`); every query is
parameterized. Feedback ids are handed out in commit order (SQLite has one writer; on
PostgreSQL an insert locks the table for its short transaction), so a reader that has seen id
N never later meets a new row below N: the feedback sensor's cursor relies on this.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pipeline.feedback.records import (
    ConflictingFeedback,
    FeedbackError,
    FeedbackSummary,
    SchemaError,
    StoredFeedback,
    UnknownPrediction,
    validate_feedback,
)
from pipeline.feedback.schema import (
    SCHEMA_VERSION,
    UPGRADES,
    feedback,
    make_engine,
    metadata,
    new_prediction_ids,
    predictions,
    schema_info,
)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; they were written as UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


class FeedbackStore:
    """Predictions and feedback in one database, reached through ``url``."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name

    def __repr__(self) -> str:
        return f"FeedbackStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------------
    def schema_version(self) -> int | None:
        """The schema's version, or None for a database without Flywheel's tables."""
        with self.engine.connect() as conn:
            return _schema_version(conn)

    def upgrade(self) -> int:
        """Creates the tables, or upgrades them to ``SCHEMA_VERSION``; safe to call again, and
        from several processes at once (serving replicas starting together): on PostgreSQL the
        whole upgrade holds an advisory lock, so they upgrade one after the other."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
            current = _schema_version(conn)
            if current is not None and current > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self!r} has schema version {current}; this Flywheel knows {SCHEMA_VERSION}"
                )
            if current == SCHEMA_VERSION:
                return current
            if current is None:  # a new database: the whole schema at once
                metadata.create_all(conn, checkfirst=True)
            else:  # an existing one: the steps after its version, in order
                for v in range(current + 1, SCHEMA_VERSION + 1):
                    for sql in UPGRADES[v]:
                        conn.exec_driver_sql(sql)
            conn.execute(schema_info.insert().values(version=SCHEMA_VERSION, upgraded_at=_now()))
        return SCHEMA_VERSION

    def require_schema(self, oldest: int = SCHEMA_VERSION) -> None:
        """Raises SchemaError unless the schema is between ``oldest`` and ``SCHEMA_VERSION``
        (readers that need no newer column pass the oldest version they can read)."""
        current = self.schema_version()
        if current is None or not oldest <= current <= SCHEMA_VERSION:
            found = "no Flywheel tables" if current is None else f"schema version {current}"
            raise SchemaError(
                f"{self!r} has {found}; run the upgrade first (`flywheel feedback upgrade`,"
                " or start `flywheel serve`, which upgrades)"
            )

    # -- writes -----------------------------------------------------------------------------
    def log_predictions(
        self,
        model_version: str,
        records: Sequence[dict[str, Any]],
        scores: Sequence[float],
        threshold: float,
        shadow_version: str | None = None,
        shadow_scores: Sequence[float] | None = None,
    ) -> list[str]:
        """Stores one row per prediction (one transaction) and returns their new ids;
        ``shadow_scores`` are the scores of ``shadow_version``, the model scored in shadow beside
        the answering one."""
        ids, rows = self.prediction_rows(
            model_version, records, scores, threshold, shadow_version, shadow_scores
        )
        self.insert_prediction_rows(rows)
        return ids

    def prediction_rows(
        self,
        model_version: str,
        records: Sequence[dict[str, Any]],
        scores: Sequence[float],
        threshold: float,
        shadow_version: str | None = None,
        shadow_scores: Sequence[float] | None = None,
    ) -> tuple[list[str], list[tuple]]:
        """New ids, and the rows :meth:`insert_prediction_rows` stores, of these predictions."""
        ids = new_prediction_ids(len(records))
        # Straight to the driver's executemany: SQLAlchemy's per-row parameter processing cost
        # about as much as the rest of a 1,000-record request. The timestamp is converted once,
        # by the column type itself, so rows read back through SQLAlchemy as usual.
        to_db = predictions.c.created_at.type.bind_processor(self.engine.dialect)
        created: Any = to_db(_now()) if to_db else _now()
        if self.dialect == "sqlite" and isinstance(created, dt.datetime):
            created = created.isoformat(" ")  # what sqlite3's adapter makes of it, once
        encode = _RECORD_ENCODER.encode
        shadow = [None] * len(ids) if shadow_scores is None else [float(s) for s in shadow_scores]
        if shadow_scores is None:
            shadow_version = None
        rows = [
            (pid, model_version, created, encode(rec), float(score), float(threshold),
             int(score >= threshold), shadow_version, other)
            for pid, rec, score, other in zip(ids, records, scores, shadow, strict=True)
        ]  # fmt: skip
        return ids, rows

    def insert_prediction_rows(self, rows: Sequence[tuple]) -> None:
        """Stores rows of :meth:`prediction_rows` (of any number of requests) in one
        transaction: all of them, or none."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self._insert_predictions.replace("?", mark), list(rows))

    _insert_predictions = (
        "INSERT INTO predictions (id, model_version, created_at, record, score, threshold,"
        " decision, shadow_version, shadow_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def _insert_ignoring_duplicates(self, row: dict[str, Any]) -> sa.Executable:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            raise SchemaError(f"feedback store: the {self.dialect} dialect is not supported")
        return insert(feedback).values(**row).on_conflict_do_nothing()

    def add_feedback(self, prediction_id: str, label: int, source: str = "api") -> StoredFeedback:
        """Stores one piece of feedback; sending it again returns the stored row unchanged.

        Raises:
            UnknownPrediction: no prediction has this id.
            ConflictingFeedback: this source already gave the other label.
        """
        pid, label, source = validate_feedback(
            {"prediction_id": prediction_id, "label": label, "source": source}
        )
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Ids are then committed in the order they are handed out (see module doc).
                conn.execute(sa.text("LOCK TABLE feedback IN EXCLUSIVE MODE"))
            known = conn.execute(sa.select(predictions.c.id).where(predictions.c.id == pid)).first()
            if known is None:
                raise UnknownPrediction("prediction_id", f"no prediction has id {pid!r}")
            row = {"prediction_id": pid, "label": label, "source": source, "created_at": _now()}
            result = conn.execute(self._insert_ignoring_duplicates(row))
            created = result.rowcount == 1
            stored = conn.execute(
                sa.select(feedback.c.id, feedback.c.label).where(
                    feedback.c.prediction_id == pid, feedback.c.source == source
                )
            ).one()
        if stored.label != label:
            raise ConflictingFeedback(
                "label",
                f"source {source!r} already reported label {stored.label} for prediction {pid}",
            )
        return StoredFeedback(stored.id, pid, label, source, created)

    def import_feedback(self, rows: Iterable[dict[str, Any]]) -> tuple[int, int, list[dict]]:
        """Stores many rows with the same validation as the API.

        Returns:
            (accepted, duplicates, rejected): rejected rows carry a ``reason``.
        """
        accepted = duplicates = 0
        rejected = []
        for row in rows:
            try:
                pid, label, source = validate_feedback(row)
                stored = self.add_feedback(pid, label, source)
            except FeedbackError as err:
                rejected.append({**row, "reason": str(err)})
                continue
            accepted += stored.created
            duplicates += not stored.created
        return accepted, duplicates, rejected

    # -- reads ------------------------------------------------------------------------------
    def prediction(self, prediction_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(predictions).where(predictions.c.id == prediction_id)
            ).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["record"] = json.loads(out["record"])
        out["created_at"] = _utc(out["created_at"])
        return out

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            n_pred = conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar()
            n_fb = conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar()
        return {"predictions": int(n_pred or 0), "feedback": int(n_fb or 0)}

    def newest_feedback_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(feedback.c.id))).scalar() or 0)

    def summary_after(self, after_id: int) -> FeedbackSummary:
        """The feedback rows with an id above ``after_id``: count, newest id, oldest time."""
        query = sa.select(
            sa.func.count(), sa.func.max(feedback.c.id), sa.func.min(feedback.c.created_at)
        ).where(feedback.c.id > after_id)
        with self.engine.connect() as conn:
            count, newest, oldest = conn.execute(query).one()
        return FeedbackSummary(int(count or 0), newest, _utc(oldest))

    def labelled_examples(self, upto_id: int | None = None) -> pd.DataFrame:
        """Every piece of feedback joined to its prediction's input record, in feedback id
        order: one row per prediction and source (each source has one vote; what the votes
        make of a prediction is decided by :func:`pipeline.feedback.examples.clean_feedback`).

        Columns: the record's fields, then ``feedback_id``, ``feedback_label``,
        ``feedback_source``, ``prediction_id``, ``model_version``.
        """
        query = (
            sa.select(
                feedback.c.id,
                feedback.c.label,
                feedback.c.source,
                predictions.c.id.label("prediction_id"),
                predictions.c.model_version,
                predictions.c.record,
            )
            .join(predictions, feedback.c.prediction_id == predictions.c.id)
            .order_by(feedback.c.id)
        )
        if upto_id is not None:
            query = query.where(feedback.c.id <= upto_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        records = [
            {
                **json.loads(row.record),
                "feedback_id": row.id,
                "feedback_label": row.label,
                "feedback_source": row.source,
                "prediction_id": row.prediction_id,
                "model_version": row.model_version,
            }
            for row in rows
        ]
        return _frame(records)


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The records as a frame. A string that UTF-8 cannot encode (a lone surrogate, logged
    before the serving app refused them) makes pandas' string columns fail: its column then
    holds plain Python objects, so that ``clean_feedback`` quarantines the row, not the run."""
    try:
        return pd.DataFrame.from_records(records)
    except UnicodeEncodeError:
        pass
    columns: dict[str, pd.Series] = {}
    for name in dict.fromkeys(key for record in records for key in record):
        values = [record.get(name) for record in records]
        try:
            columns[name] = pd.Series(values)
        except UnicodeEncodeError:
            columns[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


_UPGRADE_LOCK = 0x466C7977  # the advisory lock's key on PostgreSQL ("Flyw")


def _schema_version(conn: sa.Connection) -> int | None:
    if not sa.inspect(conn).has_table(schema_info.name):
        return None
    return conn.execute(sa.select(sa.func.max(schema_info.c.version))).scalar()


_RECORD_ENCODER = json.JSONEncoder(default=str)  # one encoder for every logged record


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
