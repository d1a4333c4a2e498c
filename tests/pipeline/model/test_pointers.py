"""Pointer files and the promotion log, on local disk and on object storage (memory://)."""

from __future__ import annotations

import json
import threading

import pytest

from pipeline.model.pointers import (
    ABSENT,
    PointerConflict,
    PointerError,
    append_line,
    pointer_tag,
    read_pointer,
    write_pointer,
)


@pytest.fixture(params=["local", "memory"])
def folder(request, tmp_path, memory_root):
    return tmp_path if request.param == "local" else memory_root


def test_a_pointer_is_written_whole_and_read_back(folder):
    path = folder / "models" / "champion.json"
    assert read_pointer(path) is None
    write_pointer(path, {"version": "v1", "reason": "first"})
    write_pointer(path, {"version": "v2"})
    assert read_pointer(path) == {"version": "v2"}
    assert [p.name for p in path.parent.iterdir()] == ["champion.json"]  # no temporary left


@pytest.mark.parametrize(
    "text, why",
    [("{", "not valid JSON"), ("[]", "JSON object"), ('{"version": "../x"}', "no valid version")],
)
def test_a_broken_pointer_is_refused_with_its_name(folder, text, why):
    path = folder / "champion.json"
    path.write_text(text)
    with pytest.raises(PointerError, match=why) as err:
        read_pointer(path)
    assert str(path) in str(err.value)


def test_a_write_on_a_stale_tag_is_refused_on_object_storage(memory_root):
    path = memory_root / "champion.json"
    assert pointer_tag(path) == ABSENT
    write_pointer(path, {"version": "v1"}, if_match=ABSENT)
    seen = pointer_tag(path)
    with pytest.raises(PointerConflict):  # "no pointer yet" is stale now
        write_pointer(path, {"version": "v0"}, if_match=ABSENT)
    write_pointer(path, {"version": "v2"}, if_match=seen)
    with pytest.raises(PointerConflict):
        write_pointer(path, {"version": "v3"}, if_match=seen)
    assert read_pointer(path) == {"version": "v2"}


def test_the_tag_is_none_on_local_disk(tmp_path):
    assert pointer_tag(tmp_path / "champion.json") is None


def test_appends_lose_no_line(folder):
    path = folder / "promotions.jsonl"
    for i in range(3):
        append_line(path, json.dumps({"n": i}))
    assert path.read_text().splitlines() == ['{"n": 0}', '{"n": 1}', '{"n": 2}']


def test_appends_from_several_threads_lose_no_line(tmp_path):
    """Locally the file is opened for appending (memory:// has no atomic conditional write; the
    S3 server's test covers racing writers there: tests/integration/test_object_storage.py)."""
    path = tmp_path / "promotions.jsonl"
    threads = [
        threading.Thread(target=lambda i=i: append_line(path, json.dumps({"n": i})))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["n"] for r in lines) == list(range(8))
