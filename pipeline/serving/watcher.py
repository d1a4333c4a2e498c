"""The served champion and the watcher that swaps it.

A watcher thread polls the registry's ``champion.json``; a new champion is loaded and compiled
beside the old one, then swapped in by one reference assignment, so no request fails during the
swap. If the new version cannot be loaded the old one keeps serving and ``/health`` says so;
so it does when the watcher itself stops checking.

The same thread follows ``candidate.json``: the version it names (a candidate, or the previous
champion on probation) is loaded the same way into ``shadow``, scored beside the champion and
logged, never answered with. One that cannot be loaded leaves serving as it is and shows in
``/health``. A version already in memory (the shadow promoted, the champion kept on probation)
is reused, not loaded again.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.data.storage import is_local
from pipeline.model.candidate import CandidateError
from pipeline.model.pointers import pointer_tag
from pipeline.model.registry import ModelRegistry, ModelVersionError
from pipeline.serving.served import ServedModel, load_served, served_info

log = logging.getLogger(__name__)

# /health calls the watcher stalled when no check has started for this many poll intervals
# (at least MIN_STALE_SECONDS, so that loading a large version does not look like a hang).
STALE_POLLS = 5
MIN_STALE_SECONDS = 2.0
# The folders of an absolute path in an error's text (its file name is kept): /health is public.
_ABSOLUTE_DIRS = re.compile(r"(?<![\w.~:/])/(?:[^/\s'\"]+/)+")


class ChampionWatcher:
    """Keeps ``current`` on the registry's champion; polls ``champion.json`` in a thread.

    Nothing that goes wrong in a check ends the thread: a ``champion.json`` that cannot be read
    or a version that cannot be loaded is reported in ``load_error`` (the old champion keeps
    serving); any other exception is logged and counted. ``health()`` says ``degraded`` when
    the thread has died or has not started a check for ``stale_after`` seconds.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        poll_seconds: float = 0.5,
        stale_after: float | None = None,
        engine: str = "numpy",
    ):
        self.registry = registry
        self.engine = engine  # of the forward pass: numpy or torch (see load_served)
        self.poll_seconds = poll_seconds
        self.stale_after = (
            stale_after
            if stale_after is not None
            else max(STALE_POLLS * poll_seconds, MIN_STALE_SECONDS)
        )
        self.current: ServedModel | None = None
        self.pointer: dict[str, Any] | None = None  # the last champion.json acted on
        self.load_error: dict[str, Any] | None = None
        self.checked_at: float | None = None
        self.errors = 0  # checks that failed in a way nobody foresaw
        self.last_error: dict[str, Any] | None = None
        self._failing = False  # the latest check was one of those
        self._beat: float | None = None  # time.monotonic() at the latest check's start
        self._stat: tuple[Any, ...] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.shadow: ServedModel | None = None  # scored beside the champion, never answered with
        self.shadow_pointer: dict[str, Any] | None = None  # the last candidate.json acted on
        self.shadow_error: dict[str, Any] | None = None
        self.shadow_failures = 0  # requests whose shadow scoring failed (the answer did not)
        self._shadow_stat: tuple[int, int] | None = None
        self._replaced: ServedModel | None = None  # the champion before the current one

    def _in_memory(self, version: str) -> ServedModel | None:
        for served in (self.current, self.shadow, self._replaced):
            if served is not None and served.version == version:
                return served
        return None

    def check_shadow(self) -> None:
        """Follows candidate.json: loads the version it names into ``shadow`` (or clears it)."""
        stat = _pointer_stat(self.registry.candidate_file)
        if stat is None:
            self.shadow, self.shadow_pointer, self.shadow_error = None, None, None
            self._shadow_stat = None
            return
        if stat == self._shadow_stat:
            return
        self._shadow_stat = stat
        try:
            record = self.registry.shadow_record()
        except CandidateError as err:
            self.shadow_error = {"version": None, "error": self._public(err), "at": _now()}
            return
        if record is None or record == self.shadow_pointer:
            return
        self.shadow_pointer = record
        version = record["version"]
        try:
            served = self._in_memory(version) or load_served(self.registry, record, self.engine)
        except Exception as err:  # as for the champion: reported, and serving stays as it is
            self.shadow_error = {"version": version, "error": self._public(err), "at": _now()}
            log.warning("shadow %s cannot be scored: %s", version, err)
            return
        self.shadow, self.shadow_error = served, None

    def check(self) -> None:
        """Loads the champion if its pointer changed (on failure keeps the old one), then the
        version in shadow if candidate.json changed."""
        with self._lock:
            try:
                self._check_champion()
            finally:
                self.check_shadow()

    def _check_champion(self) -> None:
        self.checked_at, self._beat = time.time(), time.monotonic()
        stat = _pointer_stat(self.registry.champion_file)
        if stat is None or stat == self._stat:
            return
        try:
            record = self.registry.champion_record()
        except ModelVersionError as err:  # unreadable, not JSON, no valid version
            self._stat = stat  # reported once; read again when the file changes
            self._report(None, err)
            return
        self._stat = stat
        if record is None:
            return
        if record == self.pointer:  # the same pointer again, e.g. after a broken one
            if self.load_error is not None and self.load_error["version"] is None:
                self.load_error = None
            return
        self.pointer = record
        try:
            known = self._in_memory(record["version"])
            served = (
                replace(known, info=served_info(record, known.info))
                if known is not None
                else load_served(self.registry, record, self.engine)
            )
        except Exception as err:  # whatever stops a version loading is reported, not fatal
            self._report(record["version"], err)
            return
        self._replaced = self.current  # kept: it may come back as the shadow (probation)
        self.current = served  # one assignment: requests in flight keep their own model
        self.load_error = None

    def _report(self, version: str | None, err: Exception) -> None:
        """Records why the champion named by champion.json (``version``; None: the pointer
        itself) cannot serve."""
        self.load_error = {"version": version, "error": self._public(err), "at": _now()}
        log.warning("champion %s cannot serve: %s", version or "pointer", err)

    def _public(self, err: BaseException) -> str:
        """The error's text without absolute paths: the registry root reads ``models``."""
        text = str(err) or type(err).__name__
        for root in {str(self.registry.root.resolve()), str(self.registry.root)}:
            text = text.replace(root, "models")
        return _ABSOLUTE_DIRS.sub("", text)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception as err:  # the thread must outlive any one check
                self.errors += 1
                self.last_error = {"error": self._public(err), "at": _now()}
                self._failing = True
                log.exception("champion watcher: the check failed (%d so far)", self.errors)
            else:
                self._failing = False

    def start(self) -> None:
        try:
            self.check()
        except Exception as err:  # as in the loop: counted, reported, and tried again
            self.errors += 1
            self.last_error = {"error": self._public(err), "at": _now()}
            self._failing = True
            log.exception("champion watcher: the first check failed")
        self._thread = threading.Thread(target=self._loop, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def health(self) -> dict[str, Any]:
        """What ``/health`` answers, from memory alone (never the disk or the database)."""
        serving = self.current.version if self.current else None
        champion = self.pointer.get("version") if self.pointer else None
        alive = self._thread is not None and self._thread.is_alive()
        since = None if self._beat is None else time.monotonic() - self._beat
        stalled = self._thread is not None and (
            not alive or since is None or since > self.stale_after
        )
        if serving is None:
            status = "no_model"
        elif self._failing or stalled or (self.load_error or self.shadow_error) is not None:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "serving_version": serving,
            "champion_version": champion,
            "load_error": self.load_error,
            "checked_at": self.checked_at,
            "shadow": {
                "version": self.shadow.version if self.shadow else None,
                "role": (self.shadow_pointer or {}).get("role"),
                "named": (self.shadow_pointer or {}).get("version"),
                "load_error": self.shadow_error,
                "failed_requests": self.shadow_failures,
            },
            "watcher": {
                "alive": alive,
                "seconds_since_check": None if since is None else round(since, 3),
                "stale_after": self.stale_after,
                "errors": self.errors,
                "last_error": self.last_error,
            },
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _pointer_stat(file: Path) -> tuple[Any, ...] | None:
    """What changes when a pointer (champion.json, candidate.json) is replaced (None: there is
    none): its modification time and size on local disk, its tag (S3's ETag, one HEAD request)
    on object storage, where modification times have a resolution of one second."""
    if not is_local(file):
        tag = pointer_tag(file)
        return (tag,) if tag else None
    try:
        st = file.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)
