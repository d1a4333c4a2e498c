"""Daily partitions as Parquet files, replaced whole and atomically."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from pipeline.data import storage
from pipeline.data.storage import (
    CachedReader,
    PartitionStore,
    replace_atomically,
    write_json_atomic,
    write_parquet_atomic,
)

D = [dt.date(2025, 3, 1) + dt.timedelta(days=i) for i in range(6)]


def _frame(*values) -> pd.DataFrame:
    return pd.DataFrame({"x": list(values), "s": [f"v{v}" for v in values]})


def test_write_and_read_a_day(tmp_path):
    store = PartitionStore(tmp_path / "raw")
    store.write(D[0], _frame(1, 2))
    assert store.path(D[0]) == tmp_path / "raw" / "2025-03-01.parquet"
    assert store.exists(D[0]) and not store.exists(D[1])
    pd.testing.assert_frame_equal(store.read(D[0]), _frame(1, 2))
    assert not store.quarantine_path(D[0]).exists()  # none given: none written


def test_a_write_replaces_the_day_whole(tmp_path):
    store = PartitionStore(tmp_path)
    store.write(D[0], _frame(1, 2, 3))
    store.write(D[0], _frame(9))
    pd.testing.assert_frame_equal(store.read(D[0]), _frame(9))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2025-03-01.parquet"]


def test_the_quarantine_file_is_written_beside_even_when_empty(tmp_path):
    store = PartitionStore(tmp_path)
    bad = pd.DataFrame({"x": [5], "quarantine_reason": ["too big"]})
    store.write(D[0], _frame(1), bad)
    assert store.quarantine_path(D[0]) == tmp_path / "2025-03-01.quarantine.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(store.quarantine_path(D[0])), bad)
    store.write(D[0], _frame(1), bad.iloc[0:0])
    assert len(pd.read_parquet(store.quarantine_path(D[0]))) == 0
    assert store.days() == [D[0]]  # a quarantine file is not a day


def test_reading_a_missing_day_names_it(tmp_path):
    store = PartitionStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="partition 2025-03-02 has not been materialized"):
        store.read(D[1])


def test_days_are_sorted_and_ignore_other_files(tmp_path):
    store = PartitionStore(tmp_path / "raw")
    assert store.days() == []  # no folder yet
    for day in (D[3], D[0], D[2]):
        store.write(day, _frame(1))
    (tmp_path / "raw" / "unassigned.quarantine.parquet").write_bytes(b"")
    (tmp_path / "raw" / "notes.txt").write_text("")
    (tmp_path / "raw" / "2025-13-01.parquet").write_bytes(b"")
    assert store.days() == [D[0], D[2], D[3]]


def test_read_many_concatenates_existing_days_and_lists_the_missing(tmp_path):
    store = PartitionStore(tmp_path)
    store.write(D[0], _frame(1, 2))
    store.write(D[2], _frame(3))
    store.write(D[3], _frame(4).iloc[0:0])  # exists, but empty
    frame, missing = store.read_many(D[:5])
    pd.testing.assert_frame_equal(frame, _frame(1, 2, 3))
    assert missing == [D[1], D[4]]
    none, all_missing = store.read_many([D[5]])
    assert none.empty and all_missing == [D[5]]


class CountingStore(PartitionStore):
    def __init__(self, root):
        super().__init__(root)
        self.reads: list[dt.date] = []

    def read(self, day):
        self.reads.append(day)
        return super().read(day)


def test_cached_reader_reads_each_day_once(tmp_path):
    store = CountingStore(tmp_path)
    for day in D:
        store.write(day, _frame(D.index(day)))
    reader = CachedReader(store, keep_days=3)
    for day in D[2:]:  # as cleaned_features does: each day with its 2 days before
        reader.read(day)
        reader.read_many([day - dt.timedelta(days=2), day - dt.timedelta(days=1)])
    assert sorted(store.reads) == D
    frame, missing = reader.read_many([D[4], D[5]])
    assert frame["x"].tolist() == [4, 5] and missing == []
    assert sorted(store.reads) == D


def test_cached_reader_forgets_days_older_than_keep_days(tmp_path):
    store = CountingStore(tmp_path)
    for day in D:
        store.write(day, _frame(1))
    reader = CachedReader(store, keep_days=2)
    for day in (D[0], D[1], D[2]):
        reader.read(day)
    assert sorted(reader._frames) == [D[0], D[1], D[2]]  # D[0] is 2 days before D[2]: kept
    reader.read(D[3])
    assert sorted(reader._frames) == [D[1], D[2], D[3]]
    reader.read(D[1])  # still kept: not read again
    assert store.reads == [D[0], D[1], D[2], D[3]]


def test_cached_reader_reads_again_a_day_it_forgot(tmp_path):
    store = CountingStore(tmp_path)
    for day in D:
        store.write(day, _frame(D.index(day)))
    reader = CachedReader(store, keep_days=2)
    reader.read(D[3])
    assert reader.read(D[0])["x"].tolist() == [0]  # older than the window: read from the store
    assert store.reads == [D[3], D[0]]


def test_cached_reader_lists_missing_days(tmp_path):
    store = PartitionStore(tmp_path)
    store.write(D[1], _frame(7))
    frame, missing = CachedReader(store, keep_days=5).read_many(D[:3])
    assert frame["x"].tolist() == [7] and missing == [D[0], D[2]]


def test_replace_atomically_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "doc.txt"
    seen = []

    def write(tmp):
        seen.append(tmp)
        tmp.write_text("new")

    assert replace_atomically(path, write) == path
    assert path.read_text() == "new"
    assert seen[0].parent == path.parent and seen[0] != path
    assert [p.name for p in path.parent.iterdir()] == ["doc.txt"]


def test_replace_atomically_keeps_the_old_file_when_the_write_raises(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("old")

    def write(tmp):
        tmp.write_text("half of the ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        replace_atomically(path, write)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.txt"]


def test_a_failed_partition_write_keeps_the_old_partition(tmp_path, monkeypatch):
    store = PartitionStore(tmp_path)
    store.write(D[0], _frame(1, 2))

    def broken(table, where):
        open(where, "wb").write(b"PAR1 trunc")
        raise OSError("no space left")

    monkeypatch.setattr(storage.pq, "write_table", broken)
    with pytest.raises(OSError, match="no space left"):
        store.write(D[0], _frame(3))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.read(D[0]), _frame(1, 2))
    assert [p.name for p in tmp_path.iterdir()] == ["2025-03-01.parquet"]


def test_write_json_atomic(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_json_atomic(path, {"k": [1, 2]}, indent=2)
    assert json.loads(path.read_text()) == {"k": [1, 2]}
    assert path.read_text().startswith("{\n  ")  # the json.dumps options were used
    write_json_atomic(path, {"k": None})
    assert json.loads(path.read_text()) == {"k": None}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"k": object()})
    assert json.loads(path.read_text()) == {"k": None}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_write_parquet_atomic_drops_the_index(tmp_path):
    frame = _frame(1, 2).set_axis([10, 11])
    write_parquet_atomic(frame, tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert list(back.index) == [0, 1] and list(back.columns) == ["x", "s"]


def _written_by_pyarrow(frame: pd.DataFrame, path) -> bytes:
    """What ``pq.write_table`` of the frame, as pyarrow converts it, writes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path.read_bytes()


EMPTY_LAYOUTS = {
    "numbers": pd.DataFrame({"i": pd.Series(dtype="int64"), "f": pd.Series(dtype="float64")}),
    "reasons": pd.DataFrame({"x": pd.Series(dtype="int64"), "why": pd.Series(dtype=object)}),
    "strings": pd.DataFrame({"s": pd.Series(dtype="str"), "b": pd.Series(dtype=bool)}),
    "utc": pd.DataFrame(
        {"t": pd.Series(dtype="datetime64[us, UTC]"), "n": pd.Series(dtype="int8")}
    ),
    "no columns": pd.DataFrame(),
}


@pytest.mark.parametrize("name", list(EMPTY_LAYOUTS))
def test_an_empty_frame_is_written_as_pyarrow_writes_it(tmp_path, name):
    # Frames without rows reuse the file made once per layout: byte for byte pyarrow's file,
    # every time, and it reads back as pyarrow's does.
    frame = EMPTY_LAYOUTS[name]
    expected = _written_by_pyarrow(frame, tmp_path / "expected.parquet")
    for i in range(2):
        write_parquet_atomic(frame, tmp_path / f"{i}.parquet")
        assert (tmp_path / f"{i}.parquet").read_bytes() == expected
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / f"{i}.parquet"),
            pd.read_parquet(tmp_path / "expected.parquet"),
        )


def test_empty_frames_of_other_layouts_get_their_own_file(tmp_path):
    write_parquet_atomic(pd.DataFrame({"x": pd.Series(dtype="int64")}), tmp_path / "a.parquet")
    write_parquet_atomic(pd.DataFrame({"x": pd.Series(dtype="float64")}), tmp_path / "b.parquet")
    write_parquet_atomic(pd.DataFrame({"y": pd.Series(dtype="float64")}), tmp_path / "c.parquet")
    assert str(pd.read_parquet(tmp_path / "a.parquet")["x"].dtype) == "int64"
    assert str(pd.read_parquet(tmp_path / "b.parquet")["x"].dtype) == "float64"
    assert list(pd.read_parquet(tmp_path / "c.parquet").columns) == ["y"]


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"c": pd.Series(dtype="category")}),  # categories in the file's metadata
        pd.DataFrame({1: pd.Series(dtype="int64")}),  # a column name that is not a string
        pd.DataFrame({"x": pd.Series(dtype="int64")}).rename_axis(columns="named"),
    ],
    ids=["categorical", "int name", "named columns"],
)
def test_other_empty_frames_are_converted_as_before(tmp_path, frame):
    write_parquet_atomic(frame, tmp_path / "f.parquet")
    assert (tmp_path / "f.parquet").read_bytes() == _written_by_pyarrow(
        frame, tmp_path / "expected.parquet"
    )


def test_an_empty_quarantine_file_after_a_full_one_is_empty(tmp_path):
    store = PartitionStore(tmp_path)
    bad = pd.DataFrame({"x": [5, 6], "quarantine_reason": ["too big", "too big"]})
    store.write(D[0], _frame(1), bad)
    store.write(D[1], _frame(1), bad.iloc[0:0])
    store.write(D[0], _frame(1), bad.iloc[0:0])
    for day in D[:2]:
        back = pd.read_parquet(store.quarantine_path(day))
        assert len(back) == 0 and list(back.columns) == ["x", "quarantine_reason"]


def test_a_partition_store_on_object_storage(memory_root):
    store = PartitionStore(str(memory_root / "raw"))
    assert not storage.is_local(store.root) and store.days() == []
    store.write(D[1], _frame(1, 2), quarantine=_frame())
    store.write(D[0], _frame(1))
    store.write(D[1], _frame(1, 2, 3))  # replaced whole
    assert store.days() == [D[0], D[1]] and store.exists(D[1]) and not store.exists(D[2])
    assert len(store.read(D[1])) == 3
    frame, missing = store.read_many(D[:3])
    assert len(frame) == 4 and missing == [D[2]]
    with pytest.raises(FileNotFoundError, match="partition 2025-03-03 has not been materialized"):
        store.read(D[2])
    assert sorted(p.name for p in (memory_root / "raw").iterdir()) == [
        "2025-03-01.parquet", "2025-03-02.parquet", "2025-03-02.quarantine.parquet",
    ]  # fmt: skip


def test_a_failed_write_on_object_storage_leaves_the_old_object(memory_root):
    path = memory_root / "x.json"
    write_json_atomic(path, {"a": 1})

    def half_written(tmp):
        tmp.write_text('{"a": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(path, half_written)
    assert json.loads(path.read_text()) == {"a": 1}
