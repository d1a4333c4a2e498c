"""Pointer files (the champion, the candidate) and the promotion log, on local disk and on
object storage.

A pointer is a small JSON object naming a model version, replaced whole in one step:

- on local disk, written to a temporary file and renamed over the old one
  (:func:`pipeline.data.storage.replace_atomically`); writers take turns under the registry's
  file lock;
- on object storage, where there is no rename and no lock, one PUT of the whole object, made
  conditional on the tag (S3's ETag) of the pointer its writer read: ``If-Match`` on that ETag,
  ``If-None-Match: *`` where there was no pointer. The server refuses the PUT when another writer
  replaced the pointer in between, and the loser gets :class:`PointerConflict`. Stores without
  conditional writes (``memory://``, used by unit tests in one process) compare the tag just
  before the write instead.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.data.storage import is_local, replace_atomically

ABSENT = ""  # the tag of a pointer that does not exist yet
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_APPEND_TRIES = 50


class PointerError(RuntimeError):
    """A pointer that cannot be read, is not JSON, or names no valid version."""


class PointerConflict(RuntimeError):
    """Another writer replaced the object since its tag was read: read it again, decide again."""


def valid_name(version: Any) -> bool:
    """A version name is a plain folder name: a non-empty string, no slash, no leading dot."""
    return (
        isinstance(version, str)
        and bool(version)
        and "/" not in version
        and "\\" not in version
        and not version.startswith(".")
    )


def read_pointer(path: Path, error: type[Exception] = PointerError) -> dict[str, Any] | None:
    """The pointer's record, or None where there is none yet.

    Raises:
        ``error``: the object cannot be read, is not JSON, or names no valid version; the
            message names it and says which.
    """
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{where} cannot be read: {err}") from err
    try:
        record = json.loads(text)
    except ValueError as err:  # half-written, or not JSON at all
        raise error(f"{where} is not valid JSON: {err}") from err
    if not isinstance(record, dict):
        raise error(f"{where} must hold a JSON object, not {type(record).__name__}")
    if not valid_name(record.get("version")):
        raise error(f"{where} names no valid version: 'version' is {record.get('version')!r}")
    return record


def _s3(path: Path) -> bool:
    return getattr(path, "protocol", "") in ("s3", "s3a")


def pointer_tag(path: Path) -> str | None:
    """The tag a conditional write of ``path`` is made on: S3's ETag (one HEAD request), a
    digest of the content on other object stores, :data:`ABSENT` where there is no object;
    None on local disk (the file lock serializes writers there)."""
    if is_local(path):
        return None
    try:
        if _s3(path):
            return str(path.fs.info(path.path)["ETag"])
        return hashlib.md5(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ABSENT


def _conflicted(err: BaseException) -> bool:
    """Whether ``err`` (s3fs's translation, or botocore's own) is a refused condition."""
    for e in (err, err.__cause__, err.__context__):
        code = getattr(e, "response", {}).get("Error", {}).get("Code") if e is not None else None
        if code in _CONFLICT_CODES:
            return True
    return False


def _put(path: Path, data: bytes, if_match: str | None) -> None:
    """One request that writes the whole object, refused (PointerConflict) where the object's
    tag is no longer ``if_match``; unconditional where ``if_match`` is None."""
    condition: dict[str, str] = {}
    if if_match is not None and _s3(path):
        condition = {"IfNoneMatch": "*"} if if_match == ABSENT else {"IfMatch": if_match}
    elif if_match is not None and pointer_tag(path) != if_match:
        raise PointerConflict(f"{path} changed since it was read")
    try:
        path.fs.pipe_file(path.path, data, **condition)
    except (OSError, RuntimeError) as err:
        if _conflicted(err):
            raise PointerConflict(f"{path} changed since it was read") from err
        raise


def write_pointer(path: Path, record: dict[str, Any], if_match: str | None = None) -> None:
    """Replaces the pointer at ``path`` with ``record``, whole, in one step: a rename on local
    disk, one PUT on object storage, refused with :class:`PointerConflict` there when ``if_match``
    (the :func:`pointer_tag` its writer read) is no longer the pointer's tag."""
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    if is_local(path):
        replace_atomically(path, lambda tmp: tmp.write_text(text))
    else:
        _put(path, text.encode(), if_match)


def append_line(path: Path, line: str) -> None:
    """Appends ``line`` (and a newline) to a log such as ``promotions.jsonl``. Object storage has
    no append: the whole object is read and written back on its tag, again until no other
    writer came in between, so that no line is lost."""
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(line + "\n")
        return
    for _ in range(_APPEND_TRIES):
        tag = pointer_tag(path)
        try:  # the tag before the content: content newer than the tag only fails the write
            old = b"" if tag == ABSENT else path.read_bytes()
        except FileNotFoundError:
            continue
        try:
            _put(path, old + line.encode() + b"\n", tag)
            return
        except PointerConflict:
            continue
    raise PointerConflict(f"{path}: {_APPEND_TRIES} writers came in between; the line is not added")
