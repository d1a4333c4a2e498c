"""One thread between the requests and the model: micro-batched scoring and group commits.

``POST /predict`` hands its records to the :class:`Scorer` and waits for the answer. The
scorer's thread works in rounds. A round takes what has queued since the last one: every small
request (up to ``max_rows`` rows in all) and the next chunk of ``chunk_rows`` records of at most
one large request. It computes each request's features on its own (a bad record fails its own
request only, with the record's index in that request), scores the round's rows in one forward
pass per model version, and stores the rows of every request it has finished in **one
transaction**. A request is answered after that commit, so nothing is acknowledged that is not
stored; an insert that fails fails every request of its transaction (a
:class:`PredictionLogError`, which the app answers as a 500), and none of their rows stay.

Why one thread and not a queue drained behind the answers: the issue demands every prediction
logged, and a client holding a prediction id must be able to send feedback for it at once (the
feedback's insert checks that the prediction exists). Waiting for the group's commit costs a
request one round (about a millisecond), and the grouping is what makes the log cheap: one
commit per round instead of one per request. Why rounds and chunks: 1,000-record batches are
scored 128 records at a time between the rounds of single records, so a single record waits for
one chunk, not for whole batches.

Stopping (:meth:`Scorer.close`, at the app's shutdown, after uvicorn has let the requests in
flight finish) scores and stores everything already queued before the thread ends; a request
that comes later is refused (:class:`ScorerClosed`), never dropped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.feedback.store import FeedbackStore
from pipeline.serving.features import RecordError
from pipeline.serving.served import ServedModel

log = logging.getLogger(__name__)

MAX_ROWS = 512  # rows of small requests per round
CHUNK_ROWS = 128  # a request with more records than this is scored in chunks this long


class PredictionLogError(RuntimeError):
    """The predictions of a round could not be stored; none of the round's rows were."""


class ScorerClosed(RuntimeError):
    """The scorer has stopped (the server is shutting down)."""


@dataclass(frozen=True)
class Scored:
    """One request's answer: its prediction ids (stored) and scores, in its records' order."""

    ids: list[str]
    scores: np.ndarray  # (records,) float64


class Shadow:
    """The model scored in shadow beside the champion (shadow promotion): its scores go into the
    prediction rows, never into the answer. A failure to score is counted on ``counter`` (the
    watcher, for ``/health``) and logged; the request is answered all the same."""

    def __init__(self, model: ServedModel, counter: Any):
        self.model = model
        self.counter = counter

    def scores(self, records: list[dict[str, Any]]) -> tuple[str | None, Any]:
        """``(version, scores)`` of ``records``, or ``(None, None)`` when the shadow failed."""
        try:
            return self.model.version, self.model.scores(records)
        except Exception as err:  # the shadow must never fail a request the champion answers
            self.counter.shadow_failures += 1
            log.warning("shadow %s could not score a request: %s", self.model.version, err)
            return None, None


@dataclass(eq=False)
class _Job:
    model: ServedModel
    records: list[dict[str, Any]]
    future: Future
    shadow: Shadow | None = None
    done: int = 0  # records scored so far (chunks go in order)
    ids: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    failed: bool = False

    def fail(self, err: BaseException) -> None:
        self.failed = True
        if not self.future.done():
            self.future.set_exception(err)


class Scorer:
    """Scores and logs the records of concurrent requests in shared rounds (see the module's
    doc). ``start()`` before use; ``close()`` drains and stops."""

    def __init__(
        self, store: FeedbackStore, max_rows: int = MAX_ROWS, chunk_rows: int = CHUNK_ROWS
    ):
        self.store = store
        self.max_rows = max_rows
        self.chunk_rows = chunk_rows
        self.rounds = 0  # rounds run so far (tests read it; so may a metric)
        self._small: collections.deque[_Job] = collections.deque()
        self._large: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scorer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Scores and stores everything queued, then stops the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(
        self, model: ServedModel, records: list[dict[str, Any]], shadow: Shadow | None = None
    ) -> Future:
        """Queues ``records`` to be scored by ``model`` (and by ``shadow``, logged only); the
        future holds a :class:`Scored`, or raises RecordError (a record that cannot be scored),
        PredictionLogError or ScorerClosed."""
        job = _Job(model, records, Future(), shadow)
        with self._cond:
            if self._closing:
                raise ScorerClosed("the server is shutting down")
            (self._small if len(records) <= self.chunk_rows else self._large).append(job)
            self._cond.notify()
        return job.future

    async def score(
        self, model: ServedModel, records: list[dict[str, Any]], shadow: Shadow | None = None
    ) -> Scored:
        """:meth:`submit`, awaited on the event loop."""
        return await asyncio.wrap_future(self.submit(model, records, shadow))

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._small or self._large or self._closing):
                    self._cond.wait()
                if not (self._small or self._large):
                    return  # closing, and nothing is left
                small, rows = [], 0
                while self._small and (not small or rows + len(self._small[0].records)
                                       <= self.max_rows):  # fmt: skip
                    job = self._small.popleft()
                    rows += len(job.records)
                    if job.future.set_running_or_notify_cancel():  # False: its client left
                        small.append(job)
                large = self._large[0] if self._large else None
                if large is not None and large.done == 0 and not large.future.running():
                    if not large.future.set_running_or_notify_cancel():
                        self._large.popleft()
                        continue
            pieces = [(job, 0, len(job.records)) for job in small]
            if large is not None:
                pieces.append((large, large.done, min(large.done + self.chunk_rows,
                                                      len(large.records))))  # fmt: skip
            try:
                self._round(pieces)
            except BaseException as err:  # a bug here must not leave requests waiting forever
                log.exception("scorer: a round failed")
                for job, _, _ in pieces:
                    job.fail(err)
            self.rounds += 1
            if large is not None and (large.failed or large.done == len(large.records)):
                with self._cond:
                    self._large.popleft()

    def _round(self, pieces: list[tuple[_Job, int, int]]) -> None:
        # Features request by request: a bad record fails its own request only.
        ready: dict[int, list[tuple[_Job, int, int, np.ndarray, np.ndarray]]] = {}
        for job, start, end in pieces:
            try:
                cat, num = job.model.features.transform(job.records[start:end])
            except RecordError as err:
                job.fail(RecordError(err.index + start, err.field, err.message))
                continue
            except Exception as err:
                job.fail(err)
                continue
            ready.setdefault(id(job.model), []).append((job, start, end, cat, num))
        finished: list[_Job] = []
        for items in ready.values():  # one forward pass per model version
            model = items[0][0].model
            try:
                scores = model.forward(
                    np.concatenate([item[3] for item in items]),
                    np.concatenate([item[4] for item in items]),
                )  # (round's rows of this model,)
            except Exception as err:
                for item in items:
                    item[0].fail(err)
                continue
            at = 0
            for job, start, end, _, _ in items:
                part, at = scores[at : at + end - start], at + end - start
                if not np.isfinite(part).all():  # inputs are bounded: the model is broken
                    bad = start + int(np.flatnonzero(~np.isfinite(part))[0])
                    job.fail(ValueError(f"model version {model.version} gave no finite score"
                                        f" for record {bad}"))  # fmt: skip
                    continue
                shadow_version, shadow_part = (
                    job.shadow.scores(job.records[start:end]) if job.shadow else (None, None)
                )
                ids, rows = self.store.prediction_rows(
                    model.version, job.records[start:end], part, model.threshold,
                    shadow_version, shadow_part,
                )  # fmt: skip
                job.ids += ids
                job.rows += rows
                job.scores.append(part)
                job.done = end
                if end == len(job.records):
                    finished.append(job)
        if not finished:
            return
        try:  # one transaction for every request finished in this round
            self.store.insert_prediction_rows([row for job in finished for row in job.rows])
        except Exception as err:
            log.exception("scorer: %d predictions could not be stored", sum(
                len(job.records) for job in finished))  # fmt: skip
            for job in finished:
                failure = PredictionLogError(f"the predictions could not be stored: {err}")
                failure.__cause__ = err
                job.fail(failure)
            return
        for job in finished:
            if not job.future.done():
                job.future.set_result(Scored(job.ids, np.concatenate(job.scores)))
