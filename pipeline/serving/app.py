"""The serving app: the champion answers ``POST /predict`` and learns from ``POST /feedback``.

Serving computes exactly the features training computed, from the model version alone. The
version's ``serving.json`` holds the task spec and the lagged-rate tables (rates per group as of
the day after the newest data the version was trained and evaluated on); its
``preprocessing.json`` holds the vocabularies, means and scales. At load time these become plain
dict lookups and NumPy vectors (:class:`CompiledFeatures`), so no pandas runs per request; a test
proves on real rows that this fast path equals ``clean_day`` plus ``Preprocessor.transform``.

A watcher thread polls the registry's ``champion.json``; a new champion is loaded and compiled
beside the old one, then swapped in by one reference assignment, so no request fails during the
swap. If the new version cannot be loaded the old one keeps serving and ``/health`` says so.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `Request` is imported inside create_app so that the web stack loads only when serving.
import datetime as dt
import hmac
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.data.cleaning import lagged_rates
from pipeline.model.features import OOV_INDEX, Preprocessor
from pipeline.feedback.store import (
    ConflictingFeedback,
    FeedbackError,
    FeedbackStore,
    UnknownPrediction,
    validate_feedback,
)
from pipeline.model.registry import LoadedModel, ModelRegistry, ModelVersionError
from pipeline.data.storage import PartitionStore
from pipeline.task import TaskSpec, parse_task

MAX_BATCH = 1000
MAX_BODY_BYTES = 1_000_000
UTC = dt.UTC


class RecordError(ValueError):
    """A record that cannot be scored; ``index`` and ``field`` say where."""

    def __init__(self, index: int, field: str, message: str):
        super().__init__(f"record {index}: {field}: {message}")
        self.index, self.field, self.message = index, field, message


# -- what a version carries for serving --------------------------------------------------------
def task_mapping(spec: TaskSpec) -> dict[str, Any]:
    """The task spec as the mapping a task file holds (``parse_task`` reads it back)."""
    label: dict[str, Any] = {"column": spec.label.column}
    if spec.label.greater_than is not None:
        label["greater_than"] = spec.label.greater_than
    else:
        label["positive_values"] = list(spec.label.positive_values or ())
    label["missing_is_positive"] = spec.label.missing_is_positive
    source: dict[str, Any] = {"kind": spec.source.kind}
    if spec.source.path is not None:
        source["path"] = str(spec.source.path)
    return {
        "name": spec.name,
        "source": source,
        "timestamp": spec.timestamp,
        "label": label,
        "features": {
            "categorical": list(spec.categorical),
            "numeric": list(spec.numeric),
            "calendar": list(spec.calendar),
            "lagged_rates": [{"by": list(r.by), "days": r.days} for r in spec.lagged_rates],
        },
        "exclude": list(spec.exclude),
    }


def serving_document(spec: TaskSpec, raw: PartitionStore, as_of: dt.date) -> dict[str, Any]:
    """``serving.json``: the task and, per lagged rate, its table as of ``as_of``.

    The tables come from :func:`pipeline.cleaning.lagged_rates`, the very function that
    ``cleaned_features`` uses, over the raw days before ``as_of``.
    """
    days = [as_of - dt.timedelta(days=k) for k in range(spec.max_lag_days, 0, -1)]
    history, missing = raw.read_many(days)
    tables = []
    for rule in spec.lagged_rates:
        rates = lagged_rates(as_of, history, spec, rule)
        tables.append(
            {
                "feature": rule.feature_name,
                "by": list(rule.by),
                "days": rule.days,
                "rows": [[*map(str, r[:-1]), float(r[-1])] for r in rates.itertuples(False)],
            }
        )
    return {
        "task": task_mapping(spec),
        "lagged_rates_as_of": as_of.isoformat(),
        "history_days_missing": [d.isoformat() for d in missing],
        "lagged_rates": tables,
    }


# -- the compiled fast path --------------------------------------------------------------------
def parse_timestamp(value: Any) -> dt.datetime | None:
    """An ISO-8601 string as a UTC datetime (naive values are UTC), or None if it is not one."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _number(value: Any) -> float | None:
    """A float (NaN for a missing value), or None for a value that is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


_CALENDAR = {
    "hour": lambda ts: ts.hour,
    "day_of_week": lambda ts: ts.weekday(),
    "month": lambda ts: ts.month,
}


@dataclass
class CompiledFeatures:
    """A version's preprocessing as dict lookups and NumPy vectors: raw records in, tensors out.

    Mirrors ``clean_day`` (types, calendar features, lagged rates) followed by
    ``Preprocessor.transform``; ``tests/pipeline/test_serving.py`` proves they agree.
    """

    spec: TaskSpec
    categorical: list[tuple[str, dict[str, int]]]  # (raw column, value -> embedding index)
    calendar: list[tuple[str, dict[str, int]]]  # (calendar part, value -> index)
    numeric: list[str]
    lags: list[tuple[tuple[str, ...], dict[tuple[str, ...], float]]]
    means: np.ndarray  # (n_numeric,) float64, model order: numeric columns then lagged rates
    scales: np.ndarray
    required: tuple[str, ...] = field(default=())

    @classmethod
    def compile(
        cls, spec: TaskSpec, prep: Preprocessor, serving: dict[str, Any]
    ) -> "CompiledFeatures":
        def lookup(col: str) -> dict[str, int]:
            return {v: i + 1 for i, v in enumerate(prep.vocabularies[col])}

        tables = {t["feature"]: t for t in serving.get("lagged_rates", [])}
        lags = []
        for rule in spec.lagged_rates:
            if rule.feature_name not in tables:
                raise ModelVersionError(f"serving.json has no table for {rule.feature_name}")
            n = len(rule.by)
            rows = tables[rule.feature_name]["rows"]
            lags.append((rule.by, {tuple(r[:n]): float(r[n]) for r in rows}))
        if list(prep.categorical) != list(spec.model_categorical) or list(prep.numeric) != list(
            spec.model_numeric
        ):
            raise ModelVersionError("preprocessing.json does not match the version's task spec")
        return cls(
            spec=spec,
            categorical=[(c, lookup(c)) for c in spec.categorical],
            calendar=[
                (name, lookup(feat))
                for name, feat in zip(spec.calendar, spec.calendar_features, strict=True)
            ],
            numeric=list(spec.numeric),
            lags=lags,
            means=np.array([prep.means[c] for c in prep.numeric], dtype=np.float64),
            scales=np.array([prep.scales[c] for c in prep.numeric], dtype=np.float64),
            required=tuple(c for c in spec.raw_columns if c != spec.label.column),
        )

    def transform(self, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """``(categorical, numeric)``: ``(rows, n_cat)`` int64 and ``(rows, 2*n_num)`` float32.

        Raises:
            RecordError: naming the record and the field that is missing or not usable.
        """
        n, ts_col = len(records), self.spec.timestamp
        cat = np.zeros((n, len(self.categorical) + len(self.calendar)), dtype=np.int64)
        raw = np.empty((n, len(self.numeric) + len(self.lags)), dtype=np.float64)
        k_cal, k_lag = len(self.categorical), len(self.numeric)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise RecordError(i, "record", "must be an object")
            for col in self.required:
                if col not in rec:
                    raise RecordError(i, col, "field required")
            ts = parse_timestamp(rec[ts_col])
            if ts is None:
                raise RecordError(i, ts_col, "must be an ISO-8601 timestamp")
            row = cat[i]
            for j, (col, vocab) in enumerate(self.categorical):
                value = rec[col]
                row[j] = OOV_INDEX if value is None else vocab.get(str(value), OOV_INDEX)
            for j, (part, vocab) in enumerate(self.calendar, k_cal):
                row[j] = vocab.get(str(_CALENDAR[part](ts)), OOV_INDEX)
            values = raw[i]
            for j, col in enumerate(self.numeric):
                number = _number(rec[col])
                if number is None:
                    raise RecordError(i, col, "is not a number")
                if math.isinf(number):
                    raise RecordError(i, col, "is infinite")
                values[j] = number
            for j, (by, table) in enumerate(self.lags, k_lag):
                values[j] = table.get(tuple(str(rec[c]) for c in by), math.nan)
        missing = ~np.isfinite(raw)
        num = np.zeros((n, 2 * raw.shape[1]), dtype=np.float32)
        num[:, 0::2] = np.where(missing, 0.0, (raw - self.means) / self.scales)
        num[:, 1::2] = missing
        return cat, num


def records_for_api(frame: pd.DataFrame, spec: TaskSpec) -> list[dict[str, Any]]:
    """Raw rows as the JSON records ``/predict`` takes: the raw schema minus the label."""
    cols = [c for c in spec.raw_columns if c != spec.label.column]
    part = frame[cols].astype(object).where(frame[cols].notna(), None)
    ts = frame[spec.timestamp]
    out = part.to_dict("records")
    for rec, value in zip(out, ts, strict=True):
        rec[spec.timestamp] = pd.Timestamp(value).isoformat() if pd.notna(value) else None
    return out


# -- a loaded champion, and the watcher that swaps it ------------------------------------------
@dataclass
class ServedModel:
    """One version, ready to score: the network in eval mode and its compiled features."""

    version: str
    module: torch.nn.Module
    features: CompiledFeatures
    threshold: float
    info: dict[str, Any]

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, info: dict[str, Any]) -> "ServedModel":
        if loaded.serving is None:
            raise ModelVersionError(
                f"model version {loaded.version!r} has no serving.json (the lagged-rate tables);"
                " it was trained before serving existed: retrain it"
            )
        spec = parse_task(loaded.serving["task"], origin=f"model version {loaded.version}")
        features = CompiledFeatures.compile(spec, loaded.preprocessor, loaded.serving)
        return cls(loaded.version, loaded.module, features, loaded.threshold, info)

    @torch.inference_mode()
    def scores(self, records: list[dict[str, Any]]) -> np.ndarray:
        cat, num = self.features.transform(records)
        logits = self.module(torch.from_numpy(cat), torch.from_numpy(num))  # (rows,)
        return torch.sigmoid(logits).numpy().astype(np.float64)


def load_served(registry: ModelRegistry, record: dict[str, Any]) -> "ServedModel":
    """Loads the champion that ``record`` (champion.json's content) names."""
    version = record["version"]
    loaded = registry.load(version)
    report = registry.path(version) / "evaluation.json"
    metrics = json.loads(report.read_text())["challenger"] if report.is_file() else None
    info = {
        "version": version,
        "promoted_at": record.get("promoted_at"),
        "reason": record.get("reason"),
        "threshold": loaded.threshold,
        "window": loaded.training.get("window"),
        "metrics": metrics,
        "lagged_rates_as_of": (loaded.serving or {}).get("lagged_rates_as_of"),
    }
    return ServedModel.from_loaded(loaded, info)


class ChampionWatcher:
    """Keeps ``current`` on the registry's champion; polls ``champion.json`` in a thread."""

    def __init__(self, registry: ModelRegistry, poll_seconds: float = 0.5):
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.current: ServedModel | None = None
        self.pointer: dict[str, Any] | None = None  # the last champion.json acted on
        self.load_error: dict[str, Any] | None = None
        self.checked_at: float | None = None
        self._stat: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Loads the champion if the pointer changed; on failure keeps the old one."""
        with self._lock:
            self.checked_at = time.time()
            try:
                st = self.registry.champion_file.stat()
            except FileNotFoundError:
                return
            stat = (st.st_mtime_ns, st.st_size)
            if stat == self._stat:
                return
            record = self.registry.champion_record()
            self._stat = stat
            if record is None or record == self.pointer:
                return
            self.pointer = record
            try:
                served = load_served(self.registry, record)
            except (ModelVersionError, OSError, ValueError, KeyError) as err:
                self.load_error = {
                    "version": record.get("version"),
                    "error": str(err),
                    "at": dt.datetime.now(UTC).isoformat(timespec="seconds"),
                }
                return
            self.current = served  # one assignment: requests in flight keep their own model
            self.load_error = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._loop, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def health(self) -> dict[str, Any]:
        serving = self.current.version if self.current else None
        champion = self.pointer.get("version") if self.pointer else None
        if serving is None:
            status = "no_model"
        elif self.load_error is not None:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "serving_version": serving,
            "champion_version": champion,
            "load_error": self.load_error,
            "checked_at": self.checked_at,
        }


# -- the HTTP app -------------------------------------------------------------------------------
def create_app(
    registry: ModelRegistry,
    store: FeedbackStore,
    api_token: str | None = None,
    poll_seconds: float = 0.5,
):
    """The FastAPI app. The store's schema must already be upgraded (``flywheel serve`` does)."""
    # Imported here so that Dagster runs, which build serving documents, skip the web stack.
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    watcher = ChampionWatcher(registry, poll_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store.require_schema()
        watcher.start()
        yield
        watcher.stop()

    app = FastAPI(title="Flywheel", lifespan=lifespan)
    app.state.watcher = watcher

    def error(status: int, loc: list[Any], msg: str) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": loc, "msg": msg}]}, status_code=status)

    def unauthorized(request: Request) -> JSONResponse | None:
        if not api_token:
            return None
        given = request.headers.get("authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:], api_token):
            return None
        return JSONResponse(
            {"detail": "a valid bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def read_json(request: Request) -> tuple[Any, JSONResponse | None]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return None, error(413, ["body"], f"body over {MAX_BODY_BYTES} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None, error(413, ["body"], f"body over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks)), None
        except ValueError as err:
            return None, error(422, ["body"], f"not valid JSON: {err}")

    @app.post("/predict")
    async def predict(request: Request):
        """Scores one record, or ``{"records": [...]}`` of up to 1,000, and logs each."""
        if (denied := unauthorized(request)) is not None:
            return denied
        body, failed = await read_json(request)
        if failed is not None:
            return failed
        single = not (isinstance(body, dict) and "records" in body)
        records = [body] if single else body["records"]
        if not isinstance(records, list) or not records:
            return error(422, ["body", "records"], "must be a non-empty list of records")
        if len(records) > MAX_BATCH:
            return error(422, ["body", "records"], f"at most {MAX_BATCH} records per request")
        model = watcher.current
        if model is None:
            return JSONResponse({"detail": "no champion model has been deployed yet"}, 503)
        try:
            # A JSONResponse skips FastAPI's per-item encoder (tens of ms for 1,000 items).
            return JSONResponse(await run_in_threadpool(_predict, model, store, records, single))
        except RecordError as err:
            loc = ["body", err.field] if single else ["body", "records", err.index, err.field]
            return error(422, loc, err.message)

    @app.post("/feedback")
    async def post_feedback(request: Request):
        """``{"prediction_id": ..., "label": 0|1, "source": ...}``; sending it twice is fine."""
        if (denied := unauthorized(request)) is not None:
            return denied
        body, failed = await read_json(request)
        if failed is not None:
            return failed
        try:
            stored = await run_in_threadpool(store.add_feedback, *validate_feedback(body))
        except UnknownPrediction as err:
            return error(404, ["body", err.field], err.message)
        except ConflictingFeedback as err:
            return error(409, ["body", err.field], err.message)
        except FeedbackError as err:
            return error(422, ["body", err.field], err.message)
        return JSONResponse(
            {
                "feedback_id": stored.id,
                "prediction_id": stored.prediction_id,
                "label": stored.label,
                "source": stored.source,
                "duplicate": not stored.created,
            },
            status_code=201 if stored.created else 200,
        )

    @app.get("/health")
    def health():
        """Which version serves, which one the registry names, and any load error."""
        out = watcher.health()
        return JSONResponse(out, status_code=503 if out["status"] == "no_model" else 200)

    @app.get("/model")
    def model():
        """The serving champion: version, metrics on its holdout, when it was promoted."""
        current = watcher.current
        if current is None:
            return JSONResponse({"detail": "no champion model has been deployed yet"}, 503)
        return JSONResponse(current.info)

    return app


def _predict(
    model: ServedModel, store: FeedbackStore, records: list[dict[str, Any]], single: bool
) -> dict[str, Any]:
    scores = model.scores(records)
    ids = store.log_predictions(model.version, records, scores, model.threshold)
    out = [
        {"prediction_id": pid, "score": float(s), "decision": int(s >= model.threshold)}
        for pid, s in zip(ids, scores, strict=True)
    ]
    result: dict[str, Any] = {"model_version": model.version, "threshold": model.threshold}
    if single:
        result.update(out[0])
    else:
        result["predictions"] = out
    return result


def run(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serves ``app`` with uvicorn (one process; the model is shared by its threads)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
