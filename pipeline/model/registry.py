"""The model registry: one folder per version, and a champion pointer replaced atomically.

Layout under the registry root::

    versions/<version>/weights.pt          state_dict, loaded with weights_only=True
    versions/<version>/preprocessing.json  vocabularies, means and scales
    versions/<version>/hparams.json        the network's and training's hyperparameters
    versions/<version>/training.json       training window, rows, epochs, threshold
    versions/<version>/serving.json        task spec and lagged-rate tables for serving (optional)
    versions/<version>/manifest.json       sha256 of each file above
    versions/<version>/evaluation.json     added by the evaluation (optional)
    champion.json                          the current champion (replaced atomically)
    candidate.json                         the version scored in shadow, if any
                                           (:mod:`pipeline.model.candidate`)
    promotions.jsonl                       every promotion and rollback, appended
    .promotion.lock                        held while a gate decides and promotes

A version is written into a hidden temporary folder and renamed into place, so a half-written
version is never visible; versions are never deleted, so any can be rolled back to. On object
storage (no rename) a version's files go up under its own prefix with ``manifest.json`` last, a
version without its manifest is not listed, never pointed at and never loaded, and the champion
pointer is one object written last in one conditional request (:mod:`pipeline.model.pointers`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import pickle
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data.storage import as_path, is_local, upload_folder, write_json_atomic
from pipeline.model.candidate import ShadowPointer
from pipeline.model.features import Preprocessor
from pipeline.model.pointers import (
    pointer_tag,
    read_pointer,
    valid_name,
    write_pointer,
)

if TYPE_CHECKING:  # torch and Lightning load only where a model is saved or loaded
    from pipeline.model.module import FlywheelModule

CORE_FILES = ("weights.pt", "preprocessing.json", "hparams.json", "training.json")


class ModelVersionError(RuntimeError):
    """A version that is missing or whose files are corrupt; the message names it."""


@dataclass
class LoadedModel:
    version: str
    module: FlywheelModule
    preprocessor: Preprocessor
    training: dict[str, Any]
    hparams: dict[str, Any]
    serving: dict[str, Any] | None = None  # serving.json, where the version has one

    @property
    def threshold(self) -> float:
        return float(self.training["threshold"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    write_json_atomic(path, data, indent=2, sort_keys=True, default=str)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ModelRegistry(ShadowPointer):
    def __init__(self, root: str | Path):
        self.root = as_path(root)
        self._pointer_tag: str | None = None  # on object storage: the champion's, while deciding
        self.versions_dir = self.root / "versions"
        self.champion_file = self.root / "champion.json"
        self.log_file = self.root / "promotions.jsonl"

    # -- versions ---------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        if not valid_name(version):
            raise ModelVersionError(f"model version {version!r} is not a valid version name")
        return self.versions_dir / version

    def versions(self) -> list[str]:
        """All complete versions, oldest first (names sort by creation time)."""
        if not is_local(self.root):  # one listing; a version is there once its manifest is
            return sorted(p.parent.name for p in self.versions_dir.glob("*/manifest.json")
                          if valid_name(p.parent.name))  # fmt: skip
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir()
                      if p.is_dir() and not p.name.startswith("."))  # fmt: skip

    def save_version(
        self,
        module: FlywheelModule,
        preprocessor: Preprocessor,
        training: dict[str, Any],
        documents: dict[str, Any] | None = None,
    ) -> str:
        """Writes a new version and returns its name; it is not promoted.

        ``documents`` maps extra JSON file names (such as ``serving.json``) to their content;
        they are written and checksummed in the manifest like the core files.
        """
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        version = f"{stamp}-{secrets.token_hex(3)}"
        if is_local(self.root):
            self._save_as(version, module, preprocessor, training, documents)
            return version
        with tempfile.TemporaryDirectory(prefix="flywheel-version-") as folder:  # built locally,
            built = ModelRegistry(folder)._save_as(version, module, preprocessor, training,
                                                   documents)  # fmt: skip
            upload_folder(built, self.versions_dir / version, last="manifest.json")
        return version

    def _save_as(self, version, module, preprocessor, training, documents) -> Path:
        """Writes version ``version`` into this (local) registry, renamed into place whole."""
        import torch

        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.versions_dir / f".tmp-{version}"
        tmp.mkdir()
        try:
            torch.save(module.state_dict(), tmp / "weights.pt")
            (tmp / "preprocessing.json").write_text(json.dumps(preprocessor.to_dict(), indent=2))
            (tmp / "hparams.json").write_text(json.dumps(dict(module.hparams), indent=2))
            (tmp / "training.json").write_text(
                json.dumps({**training, "version": version, "created_at": _now()}, indent=2,
                           default=str)
            )  # fmt: skip
            for name, doc in (documents or {}).items():
                if name in CORE_FILES or "/" in name or not name.endswith(".json"):
                    raise ModelVersionError(f"cannot save a document named {name!r}")
                (tmp / name).write_text(json.dumps(doc, indent=2, default=str))
            files = [*CORE_FILES, *(documents or {})]
            manifest = {"version": version, "files": {f: _sha256(tmp / f) for f in files}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            os.rename(tmp, self.versions_dir / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.versions_dir / version

    def manifest(self, version: str) -> dict[str, Any]:
        folder = self.path(version)
        if not folder.is_dir():
            raise ModelVersionError(f"model version {version!r} does not exist in {self.root}")
        try:
            return json.loads((folder / "manifest.json").read_text())
        except FileNotFoundError as err:
            raise ModelVersionError(f"model version {version!r}: manifest.json is missing") from err
        except json.JSONDecodeError as err:
            raise ModelVersionError(f"model version {version!r}: manifest.json is corrupt") from err

    def verify(self, version: str) -> None:
        """Raises ModelVersionError naming the version and file if anything is off."""
        manifest = self.manifest(version)
        folder = self.path(version)
        for name, digest in manifest.get("files", {}).items():
            file = folder / name
            if not file.is_file():
                raise ModelVersionError(f"model version {version!r}: file {name} is missing")
            if _sha256(file) != digest:
                raise ModelVersionError(
                    f"model version {version!r}: file {name} is corrupt (checksum mismatch)"
                )
        absent = [f for f in CORE_FILES if f not in manifest.get("files", {})]
        if absent:
            raise ModelVersionError(f"model version {version!r}: manifest lacks {absent[0]}")

    def read_json(self, version: str, name: str) -> dict[str, Any]:
        return json.loads((self.path(version) / name).read_text())

    def load(self, version: str) -> LoadedModel:
        """Loads a verified version; never unpickles anything but tensors."""
        import torch

        from pipeline.model.module import FlywheelModule

        self.verify(version)
        folder = self.path(version)
        try:
            hparams = self.read_json(version, "hparams.json")
            hparams.pop("pos_weight", None)  # saved by versions before it was dropped (unused)
            training = self.read_json(version, "training.json")
            prep = Preprocessor.from_dict(self.read_json(version, "preprocessing.json"))
            weights = io.BytesIO((folder / "weights.pt").read_bytes())  # local or object storage
            state = torch.load(weights, map_location="cpu", weights_only=True)
            module = FlywheelModule(**hparams)
            module.load_state_dict(state)
            listed = self.manifest(version).get("files", {})
            serving = self.read_json(version, "serving.json") if "serving.json" in listed else None
        except (
            ValueError, KeyError, TypeError, RuntimeError, OSError, pickle.UnpicklingError
        ) as err:  # fmt: skip
            raise ModelVersionError(f"model version {version!r} cannot be loaded: {err}") from err
        module.eval()
        return LoadedModel(version, module, prep, training, hparams, serving)

    def attach(self, version: str, name: str, data: dict[str, Any]) -> Path:
        """Adds a JSON document (such as the evaluation report) to a version."""
        path = self.path(version) / name
        if not path.parent.is_dir():
            raise ModelVersionError(f"model version {version!r} does not exist in {self.root}")
        _write_json_atomic(path, data)
        return path

    # -- champion ---------------------------------------------------------------------------
    def champion_record(self) -> dict[str, Any] | None:
        """champion.json's content, or None where there is no champion yet.

        Raises:
            ModelVersionError: the file cannot be read, is not JSON, or names no valid version;
                the message names the file and says which.
        """
        return read_pointer(self.champion_file, ModelVersionError)

    def champion(self) -> str | None:
        record = self.champion_record()
        return record["version"] if record else None

    def promote(self, version: str, reason: str, forced: bool = False, action: str = "promote",
                **extra: Any) -> dict[str, Any]:  # fmt: skip
        """Makes ``version`` the champion. The pointer is replaced in one atomic rename (one
        conditional PUT on object storage: :class:`~pipeline.model.pointers.PointerConflict`
        where another promotion replaced it since :meth:`promotion_lock` was entered), then the
        record (with ``extra``: figures) is appended to ``promotions.jsonl``."""
        self.verify(version)  # a version without a complete manifest is never pointed at
        tag = self._pointer_tag
        if tag is None:  # not inside promotion_lock: conditional on the pointer seen now
            tag = pointer_tag(self.champion_file)
        try:
            previous = self.champion()
        except ModelVersionError:  # a broken pointer is what a promotion replaces
            previous = None
        record = {
            "version": version,
            "previous": previous,
            "promoted_at": _now(),
            "reason": reason,
            "forced": forced,
            "action": action,
            **extra,
        }
        write_pointer(self.champion_file, record, if_match=tag)
        self.append_history(record)
        return record

    @contextlib.contextmanager
    def promotion_lock(self) -> Iterator[None]:
        """Held while one gate reads the champion, decides and promotes: no other process
        promotes in between (an exclusive ``flock`` on ``.promotion.lock``, local disk).

        Object storage has no lock: entering notes the champion pointer's tag, and the
        promotion's write is conditional on it (see :mod:`pipeline.model.pointers`)."""
        if not is_local(self.root):
            self._pointer_tag = pointer_tag(self.champion_file)
            try:
                yield
            finally:
                self._pointer_tag = None
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".promotion.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def history(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line]

    def rollback(self, version: str | None = None) -> dict[str, Any]:
        """Makes ``version`` (default: the champion before the current one) the champion,
        holding the promotion lock: a gate deciding at the same moment waits, then compares its
        challenger with the champion the rollback left."""
        with self.promotion_lock():
            return self._rollback(version)

    def _rollback(self, version: str | None) -> dict[str, Any]:
        try:
            current = self.champion_record()
        except ModelVersionError:
            if version is None:  # no pointer to find the previous champion in
                raise
            current = None  # a broken pointer is what a rollback to a named version replaces
        if version is None:
            if not current or not current.get("previous"):
                raise ModelVersionError("no earlier champion to roll back to")
            version = current["previous"]
        record = self.promote(version, reason=f"rollback from {current and current['version']}",
                              forced=True, action="rollback")  # fmt: skip
        self.end_probation(f"ended by the rollback to {version}")  # a rollback ends probation
        return record
