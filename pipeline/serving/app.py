"""The serving app: the champion answers ``POST /predict`` and learns from ``POST /feedback``.

The features are computed as training computed them (:mod:`pipeline.serving.features`); the
champion is kept current by a watcher thread (:mod:`pipeline.serving.watcher`); predictions and
feedback go to the feedback store (:mod:`pipeline.feedback.store`). A version in shadow (a
candidate, or the previous champion on probation) scores every request too; its score is logged
in the same row, and the answer is the champion's alone.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `Request` is imported inside create_app so that the web stack loads only when serving.
import logging
from collections.abc import Sequence
from typing import Any

from pipeline.feedback.records import (
    ConflictingFeedback,
    FeedbackError,
    UnknownPrediction,
    validate_feedback,
)
from pipeline.feedback.store import FeedbackStore
from pipeline.model.registry import ModelRegistry
from pipeline.serving.body import DEFAULT_MAX_STRING_BYTES, BodyError, parse_body, read_body
from pipeline.serving.features import RecordError
from pipeline.serving.guards import Guard
from pipeline.serving.offload import BatchProcesses, in_memory
from pipeline.serving.requests import MAX_BATCH, answer, record_loc, records_of
from pipeline.serving.scorer import Scorer, ScorerClosed, Shadow
from pipeline.serving.served import ServedModel
from pipeline.serving.watcher import ChampionWatcher

__all__ = ["MAX_BATCH", "create_app", "run"]
log = logging.getLogger(__name__)

# A body longer than this is parsed in a worker thread, so that the event loop, which reads and
# answers every request, is not held for the milliseconds a large batch takes to parse and check;
# with batch processes, a /predict body this long is answered by one of them.
LARGE_BODY_BYTES = 32_000


def create_app(
    registry: ModelRegistry,
    store: FeedbackStore,
    api_token: str | None = None,
    poll_seconds: float = 0.5,
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
    allowed_hosts: Sequence[str] | None = None,
    micro_batch: bool = True,
    engine: str = "numpy",
    freeze_gc: bool = False,
    batch_processes: int = 0,
):
    """The FastAPI app. The store's schema must already be upgraded (``flywheel serve`` does).

    Args:
        registry: where the champion is read from (and hot-swapped).
        store: where predictions and feedback are written.
        api_token: a bearer token every route but ``/health`` requires; None: no token.
        poll_seconds: how often ``champion.json`` is checked.
        max_string_bytes: the longest string (in UTF-8) a body may hold anywhere; longer is 422.
        allowed_hosts: the Host names answered (see :mod:`pipeline.serving.guards`); None: any.
        micro_batch: score and log through one :class:`~pipeline.serving.scorer.Scorer` thread
            (concurrent requests share forward passes and commits); False: each request in a
            worker thread of its own, with its own forward pass and commit (the old path, kept
            for benchmarks/serving.py).
        engine: ``numpy`` (the network exported to NumPy) or ``torch`` computes the forward
            pass; the scores agree to 1e-6 (:mod:`pipeline.serving.forward`).
        freeze_gc: once started (the champion loaded), move every object into the garbage
            collector's permanent generation (``gc.freeze``), so that its full collections no
            longer walk the libraries and the model: they took 100-900 ms under load, each a
            pause for every request in flight. For a process that only serves (``flywheel
            serve``); a test process would keep its garbage cycles for good.
        batch_processes: worker processes that answer ``/predict`` bodies over
            LARGE_BODY_BYTES (:mod:`pipeline.serving.offload`), so that single records do not
            wait behind batches; 0: every request in this process. They are ``spawn``ed: a
            script that serves this app itself must keep its work under ``if __name__ ==
            "__main__":``, as with any multiprocessing pool.
    """
    # Imported here so that importing the serving code does not load the web stack.
    import gc
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    watcher = ChampionWatcher(registry, poll_seconds, engine=engine)
    scorer = Scorer(store) if micro_batch else None
    offload = None
    if batch_processes > 0 and in_memory(store.url):
        log.warning("batch processes are off: another process cannot reach an in-memory store")
    elif batch_processes > 0:
        offload = BatchProcesses(
            registry.root, store.url, engine, max_string_bytes, processes=batch_processes
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store.require_schema()
        watcher.start()
        if scorer is not None:
            scorer.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
        yield
        if offload is not None:
            await run_in_threadpool(offload.close)
        if scorer is not None:  # uvicorn has let the requests in flight finish: drain the rest
            await run_in_threadpool(scorer.close)
        watcher.stop()

    app = FastAPI(title="Flywheel", lifespan=lifespan)
    app.state.watcher = watcher
    app.state.batch_processes = offload
    app.add_middleware(Guard, api_token=api_token, allowed_hosts=allowed_hosts)

    def error(status: int, loc: list[Any], msg: str) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": loc, "msg": msg}]}, status_code=status)

    async def read_json(
        request: Request, raw: bytes | None = None
    ) -> tuple[Any, JSONResponse | None]:
        try:
            if raw is None:
                raw = await read_body(request.headers.get("content-length"), request.stream())
            if len(raw) > LARGE_BODY_BYTES:  # ~5 ms for 1,000 records: not on the event loop
                return await run_in_threadpool(parse_body, raw, max_string_bytes), None
            return parse_body(raw, max_string_bytes), None
        except BodyError as err:
            return None, error(err.status, err.loc, err.message)

    @app.post("/predict")
    async def predict(request: Request):
        """Scores one record, or ``{"records": [...]}`` of up to 1,000, and logs each."""
        raw = None
        if offload is not None:
            try:
                raw = await read_body(request.headers.get("content-length"), request.stream())
            except BodyError as err:
                return error(err.status, err.loc, err.message)
            model = watcher.current
            if len(raw) > LARGE_BODY_BYTES and model is not None:
                shadow = _shadow_of(model, watcher)
                out = await offload.predict(raw, model.version, shadow and shadow.model.version)
                if out.shadow_failed:
                    watcher.shadow_failures += 1
                if out.status is not None:
                    return Response(out.body, out.status, media_type="application/json")
        body, failed = await read_json(request, raw)
        if failed is not None:
            return failed
        try:
            records, single = records_of(body)
        except BodyError as err:
            return error(err.status, err.loc, err.message)
        model = watcher.current
        if model is None:
            return JSONResponse({"detail": "no champion model has been deployed yet"}, 503)
        try:
            if scorer is None:
                result = await run_in_threadpool(_predict, model, watcher, store, records, single)
            else:
                scored = await scorer.score(model, records, _shadow_of(model, watcher))
                result = answer(model, scored.ids, scored.scores, single)
        except RecordError as err:
            loc = record_loc(err.index, err.field, single)
            return error(422, loc, err.message)
        except ScorerClosed:
            return JSONResponse({"detail": "the server is shutting down"}, 503)
        # A JSONResponse skips FastAPI's per-item encoder (tens of ms for 1,000 items).
        return JSONResponse(result)

    @app.post("/feedback")
    async def post_feedback(request: Request):
        """``{"prediction_id": ..., "label": 0|1, "source": ...}``; sending it twice is fine."""
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

    # /health and /model answer from memory on the event loop: a route that is a plain `def`
    # runs in the worker threads, which requests waiting on the database can all hold.
    @app.get("/health")
    async def health():
        """Which version serves, which one the registry names, and any load error."""
        out = watcher.health()
        if offload is not None:
            out["batch_processes"] = offload.health()
        return JSONResponse(out, status_code=503 if out["status"] == "no_model" else 200)

    @app.get("/model")
    async def model():
        """The serving champion: version, metrics on its holdout, when it was promoted."""
        current = watcher.current
        if current is None:
            return JSONResponse({"detail": "no champion model has been deployed yet"}, 503)
        return JSONResponse(current.info)

    return app


def _shadow_of(model: ServedModel, watcher: ChampionWatcher) -> Shadow | None:
    """The model to score in shadow beside ``model`` (None: nothing in shadow, or the shadow is
    the champion itself), with the watcher's count of its failures."""
    shadow = watcher.shadow
    if shadow is None or shadow.version == model.version:
        return None
    return Shadow(shadow, watcher)


def _shadow_scores(
    model: ServedModel, watcher: ChampionWatcher, records: list[dict[str, Any]]
) -> tuple[str | None, Any]:
    """The shadow's version and scores of ``records``, or ``(None, None)``: nothing in shadow,
    the shadow is the champion itself, or it failed (counted in ``/health``; the request is
    answered by the champion all the same)."""
    found = _shadow_of(model, watcher)
    return (None, None) if found is None else found.scores(records)


def _predict(
    model: ServedModel,
    watcher: ChampionWatcher,
    store: FeedbackStore,
    records: list[dict[str, Any]],
    single: bool,
) -> dict[str, Any]:
    scores = model.scores(records)
    shadow_version, shadow_scores = _shadow_scores(model, watcher, records)
    ids = store.log_predictions(
        model.version, records, scores, model.threshold, shadow_version, shadow_scores
    )
    return answer(model, ids, scores, single)


def run(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serves ``app`` with uvicorn (one process; the model is shared by its threads)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
