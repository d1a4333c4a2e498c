"""The shadow pointer beside the champion pointer: the one version the serving app scores in
shadow, as a **candidate** (a challenger that passed the offline gate in ``shadow`` promotion,
waiting for live evidence) or on **probation** (the previous champion, kept scoring after a
promotion until the new champion has earned its place).

``candidate.json`` is replaced atomically, as ``champion.json`` is, and removed when the shadow
ends. There is at most one: a newer candidate replaces the old one (or ends a probation), and
the record says so. Every change is appended to ``promotions.jsonl`` after the pointer is
written, so the log never tells of a change the pointer does not hold (a crash in between leaves
the record missing, not wrong).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pipeline.model.pointers import append_line, write_pointer

CANDIDATE = "candidate"
PROBATION = "probation"


class CandidateError(RuntimeError):
    """candidate.json cannot be read or names nothing valid; the message names the file."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ShadowPointer:
    """Mixed into :class:`pipeline.model.registry.ModelRegistry` (``root``, ``log_file``)."""

    root: Path
    log_file: Path

    @property
    def candidate_file(self) -> Path:
        return self.root / "candidate.json"

    def append_history(self, record: dict[str, Any]) -> None:
        """One line of ``promotions.jsonl``."""
        append_line(self.log_file, json.dumps(record, default=str))

    def shadow_record(self) -> dict[str, Any] | None:
        """candidate.json's content (``version``, ``role``, ``champion``, ``since``, ``reason``),
        or None when nothing is in shadow."""
        try:
            record = json.loads(self.candidate_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise CandidateError(f"{self.candidate_file} cannot be read: {err}") from err
        if not isinstance(record, dict) or record.get("role") not in (CANDIDATE, PROBATION):
            raise CandidateError(f"{self.candidate_file} holds no candidate or probation record")
        return record

    def candidate(self) -> str | None:
        """The candidate's version (None: none, or the shadow is a probation)."""
        record = self.shadow_record()
        return record["version"] if record and record["role"] == CANDIDATE else None

    def _write_shadow(self, version: str, role: str, champion: str, reason: str, **extra: Any):
        self.verify(version)  # type: ignore[attr-defined]
        try:
            before = self.shadow_record()
        except CandidateError:  # a broken pointer is what a new one replaces
            before = None
        record = {"version": version, "role": role, "champion": champion, "since": now_iso(),
                  "reason": reason, **extra}  # fmt: skip
        if before and before["version"] != version:
            record["replaced"] = {k: before.get(k) for k in ("version", "role", "since")}
        write_pointer(self.candidate_file, record)
        self.append_history({"action": role, "at": record["since"], **record})
        return record

    def set_candidate(self, version: str, champion: str, reason: str) -> dict[str, Any]:
        """Makes ``version`` the candidate against ``champion``; replaces any shadow, and the
        record (``replaced``) and its reason say which."""
        before = self.shadow_record()
        if before and before["version"] != version:
            what = "candidate" if before["role"] == CANDIDATE else "probation of"
            reason = f"{reason}; replaces {what} {before['version']} (since {before['since']})"
        return self._write_shadow(version, CANDIDATE, champion, reason)

    def start_probation(self, champion: str, previous: str, labels: int) -> dict[str, Any]:
        """After ``champion`` replaced ``previous``: ``previous`` is scored in shadow until
        ``labels`` of the new champion's shadowed requests have feedback."""
        reason = (f"{champion} is on probation: {previous} is scored in shadow until {labels}"
                  f" of {champion}'s requests have feedback")  # fmt: skip
        return self._write_shadow(previous, PROBATION, champion, reason, labels=labels)

    def end_shadow(self, action: str, reason: str, **figures: Any) -> dict[str, Any] | None:
        """Removes candidate.json (a rejection, a promotion, a probation's end) and records it;
        None when nothing was in shadow."""
        try:
            before = self.shadow_record()
        except CandidateError:
            before = None
        self.candidate_file.unlink(missing_ok=True)
        if before is None:
            return None
        record = {"action": action, "version": before["version"], "role": before["role"],
                  "champion": before.get("champion"), "at": now_iso(), "reason": reason,
                  **figures}  # fmt: skip
        self.append_history(record)
        return record

    def end_probation(self, reason: str) -> dict[str, Any] | None:
        """Ends a probation (not a candidate), as a rollback by hand does; None: none."""
        try:
            on_probation = (self.shadow_record() or {}).get("role") == PROBATION
        except CandidateError:
            on_probation = False
        return self.end_shadow("probation_ended", reason) if on_probation else None
