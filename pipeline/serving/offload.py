"""Large ``/predict`` requests answered in a process of their own, so that single records do not
wait behind them.

A 1,000-record batch costs the serving process about 30 ms of Python (parsing and checking the
body, the features, the records' JSON, the answer); two clients sending batches back to back keep
one process busy, and a single record then waits on the GIL behind that work, whatever the
scorer thread does. With :class:`BatchProcesses`, the app hands the raw bytes of each large body
to a worker process (``spawn``ed, its own interpreter and GIL) that does everything the app would:
the same checks (:func:`pipeline.serving.body.parse_body`, :func:`records_of`), the same model
version (the one the app's watcher serves, loaded by version and kept), the features, the forward
pass, the shadow's scores, one transaction into the same feedback store, and the answer's JSON.
The app's process only moves bytes. Nothing is answered before it is stored, as in-process.

The workers start on the first large body (that one, and any that come while they load, are
answered in-process), so a server that never sees a batch never pays for them. A worker that
dies, or cannot load the version asked for, costs nothing but time: that request is answered
in-process and a new pool starts on the next one. If a worker died after its commit and before
its answer, its rows stay in the store without an answer (a prediction logged twice, under two
ids); nothing acknowledged is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.serving.body import BodyError, parse_body
from pipeline.serving.requests import answer, error_body, record_loc, records_of, render

log = logging.getLogger(__name__)

KEPT_VERSIONS = 3  # model versions a worker keeps loaded (the champion, the shadow, the last)


@dataclass(frozen=True)
class Offloaded:
    """A worker's answer: the HTTP status and JSON body to send, and whether the shadow failed
    (the app counts that in ``/health``). ``status`` None: answer this request in-process (the
    worker could not load the version, or the pool broke)."""

    status: int | None
    body: bytes = b""
    shadow_failed: bool = False


class BatchProcesses:
    """A pool of ``processes`` worker processes for large ``/predict`` bodies (see the module's
    doc). ``predict`` returns an :class:`Offloaded`; ``close`` waits for the requests handed
    out."""

    def __init__(
        self,
        registry_root: str | Path,
        store_url: str,
        engine: str = "numpy",
        max_string_bytes: int = 1024,
        processes: int = 1,
    ):
        self.args = (registry_root, store_url, engine, max_string_bytes)
        self.processes = processes
        self.requests = 0  # answered by a worker
        self.fallbacks = 0  # handed back to the app's process (loading, a broken pool)
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Future | None = None
        self._lock = threading.Lock()
        self._closed = False

    def state(self) -> str:
        if self._ready is None:
            return "idle"  # no large body yet
        if not self._ready.done():
            return "starting"
        return "ready" if self._ready.exception() is None else "failed"

    def health(self) -> dict[str, Any]:
        return {"processes": self.processes, "state": self.state(), "requests": self.requests,
                "answered_in_process": self.fallbacks}  # fmt: skip

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # the app's threads must not be forked
        self._pool = ProcessPoolExecutor(
            self.processes, mp_context=context, initializer=_init, initargs=self.args
        )
        self._ready = self._pool.submit(_ping)

    def _ready_pool(self) -> ProcessPoolExecutor | None:
        """The pool, when its workers have started; else starts it (once) and returns None."""
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                self._start()
            ready = self._ready
            if ready is None or not ready.done():
                return None
            if ready.exception() is not None:  # could not start: try again on a later request
                log.warning("batch processes did not start: %s", ready.exception())
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                return None
            return self._pool

    async def predict(self, raw: bytes, version: str, shadow: str | None) -> Offloaded:
        """The answer to ``POST /predict`` with body ``raw``, scored by model ``version`` (and
        ``shadow``, logged only), from a worker; or ``Offloaded(None)``."""
        pool = self._ready_pool()
        if pool is None:
            self.fallbacks += 1
            return Offloaded(None)
        try:
            out = await asyncio.wrap_future(pool.submit(_predict, raw, version, shadow))
        except BrokenProcessPool as err:  # a worker died: a new pool on the next request
            log.warning("a batch process died (%s); answering in-process", err)
            with self._lock:
                if self._pool is pool:
                    self._pool, self._ready = None, None
            pool.shutdown(wait=False, cancel_futures=True)
            out = Offloaded(None)
        if out.status is None:
            self.fallbacks += 1
        else:
            self.requests += 1
        return out

    def close(self) -> None:
        """Waits for the requests handed to the workers, then stops them."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def in_memory(store_url: str) -> bool:
    """Whether the store at ``store_url`` lives in one process only (SQLite ``:memory:``), where
    a batch process could not reach it."""
    from sqlalchemy.engine import make_url

    url = make_url(store_url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


# -- the worker process ----------------------------------------------------------------------
class _Worker:
    def __init__(self, registry_root: Any, store_url: str, engine: str, max_string_bytes: int):
        from pipeline.feedback.store import FeedbackStore
        from pipeline.model.registry import ModelRegistry

        self.registry = ModelRegistry(registry_root)
        self.store = FeedbackStore(store_url)
        self.engine = engine
        self.max_string_bytes = max_string_bytes
        self.models: OrderedDict[str, Any] = OrderedDict()

    def model(self, version: str) -> Any:
        from pipeline.serving.served import ServedModel

        if version not in self.models:
            loaded = self.registry.load(version)
            self.models[version] = ServedModel.from_loaded(loaded, {}, self.engine)
            while len(self.models) > KEPT_VERSIONS:
                self.models.popitem(last=False)
        self.models.move_to_end(version)
        return self.models[version]

    def predict(self, raw: bytes, version: str, shadow_version: str | None) -> Offloaded:
        from pipeline.serving.features import RecordError

        try:
            body = parse_body(raw, self.max_string_bytes)
            records, single = records_of(body)
        except BodyError as err:
            return Offloaded(err.status, error_body(err.loc, err.message))
        try:
            return self._score(records, single, version, shadow_version)
        except RecordError as err:
            loc = record_loc(err.index, err.field, single)
            return Offloaded(422, error_body(loc, err.message))
        except Exception as err:  # loading, a broken model, the insert: the app answers as usual
            log.warning("batch process: handing a request back (%s: %s)", type(err).__name__, err)
            return Offloaded(None)

    def _score(
        self, records: list[dict[str, Any]], single: bool, version: str, shadow: str | None
    ) -> Offloaded:
        model = self.model(version)
        scores = model.scores(records)
        shadow_scores, shadow_failed = None, False
        if shadow is not None:
            try:
                shadow_scores = self.model(shadow).scores(records)
            except Exception as err:  # never fails a request the champion answers
                log.warning("batch process: shadow %s failed: %s", shadow, err)
                shadow_failed, shadow = True, None
        ids = self.store.log_predictions(
            model.version, records, scores, model.threshold, shadow, shadow_scores
        )
        return Offloaded(200, render(answer(model, ids, scores, single)), shadow_failed)


_worker: _Worker | None = None


def _init(registry_root: Any, store_url: str, engine: str, max_string_bytes: int) -> None:
    import signal

    import torch
    from threadpoolctl import threadpool_limits

    global _worker
    # Ctrl-C reaches the whole process group: the server stops its workers itself, after the
    # requests in flight (see BatchProcesses.close), so a worker must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # as the app's process: small products are fastest on one thread
    threadpool_limits(1, user_api="blas")
    _worker = _Worker(registry_root, store_url, engine, max_string_bytes)


def _ping() -> bool:
    return _worker is not None


def _predict(raw: bytes, version: str, shadow: str | None) -> Offloaded:
    assert _worker is not None, "the batch process was not initialised"
    return _worker.predict(raw, version, shadow)
