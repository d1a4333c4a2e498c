"""Reads of the feedback store for live performance and shadow evaluation: predictions with their
agreed feedback label, the shadowed ones, and the predictions that new feedback touched."""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from pipeline.feedback.schema import feedback, predictions
from pipeline.feedback.store import FeedbackStore


def _agreed_labels():
    """Each labelled prediction's label where its sources agree, NULL where they disagree
    (one vote per source, as training counts them: :mod:`pipeline.feedback.examples`)."""
    low, high = sa.func.min(feedback.c.label), sa.func.max(feedback.c.label)
    return (
        sa.select(
            feedback.c.prediction_id,
            sa.case((low == high, low), else_=sa.null()).label("label"),
        )
        .group_by(feedback.c.prediction_id)
        .subquery()
    )


def scored_predictions(store: FeedbackStore) -> pd.DataFrame:
    """Every prediction: ``prediction_id``, ``model_version``, ``score``, ``record`` (the logged
    inputs, a dict), and its ``feedback_label``: NaN without feedback, or where the sources that
    labelled it disagree."""
    latest = _agreed_labels()
    query = sa.select(
        predictions.c.id.label("prediction_id"),
        predictions.c.model_version,
        predictions.c.score,
        predictions.c.record,
        latest.c.label.label("feedback_label"),
    ).outerjoin(latest, latest.c.prediction_id == predictions.c.id)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(
        rows, columns=["prediction_id", "model_version", "score", "record", "feedback_label"]
    )
    frame["record"] = [json.loads(r) for r in frame["record"]]
    frame["feedback_label"] = pd.to_numeric(frame["feedback_label"]).astype("float64")
    return frame


def records_with_feedback_between(store: FeedbackStore, after_id: int, upto_id: int) -> list[dict]:
    """The logged inputs of the predictions that feedback ids ``after_id + 1 .. upto_id``
    labelled (the days those touch are the live_performance partitions to refresh)."""
    query = (
        sa.select(predictions.c.record)
        .join(feedback, feedback.c.prediction_id == predictions.c.id)
        .where(feedback.c.id > after_id, feedback.c.id <= upto_id)
    )
    with store.engine.connect() as conn:
        return [json.loads(r) for (r,) in conn.execute(query).all()]


def shadowed_labels(store: FeedbackStore, champion: str, shadow: str) -> pd.DataFrame:
    """The requests ``champion`` answered while ``shadow`` was scored beside it, that have an
    agreed feedback label: ``prediction_id``, ``score``, ``shadow_score``, ``label``."""
    latest = _agreed_labels()
    query = (
        sa.select(
            predictions.c.id.label("prediction_id"),
            predictions.c.score,
            predictions.c.shadow_score,
            latest.c.label,
        )
        .join(latest, latest.c.prediction_id == predictions.c.id)
        .where(
            predictions.c.model_version == champion,
            predictions.c.shadow_version == shadow,
            predictions.c.shadow_score.is_not(None),
            latest.c.label.is_not(None),
        )
        .order_by(predictions.c.created_at, predictions.c.id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["prediction_id", "score", "shadow_score", "label"])
    return frame.astype({"score": "float64", "shadow_score": "float64", "label": "float64"})


def shadowed_feedback_between(store: FeedbackStore, after_id: int, upto_id: int) -> int:
    """How many of feedback ids ``after_id + 1 .. upto_id`` labelled a shadowed prediction."""
    query = (
        sa.select(sa.func.count())
        .select_from(feedback)
        .join(predictions, feedback.c.prediction_id == predictions.c.id)
        .where(
            feedback.c.id > after_id,
            feedback.c.id <= upto_id,
            predictions.c.shadow_version.is_not(None),
        )
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)
