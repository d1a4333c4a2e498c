import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.data.sources import FilesSource, SourceError
from pipeline.task import load_task
from tests.helpers import CHURN_TASK, make_churn_frame


def _files_spec(tmp_path: Path):
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(CHURN_TASK))
    (tmp_path / "data").mkdir(exist_ok=True)
    return load_task(path)


def test_files_source_reads_only_the_day_from_parquet_and_csv(tmp_path: Path):
    spec = _files_spec(tmp_path)
    frame = make_churn_frame(days=4, rows_per_day=50)
    frame.iloc[:100].to_parquet(tmp_path / "data" / "a.parquet", index=False)
    csv = frame.iloc[100:].copy()
    csv["event_time"] = csv["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    (tmp_path / "data" / "nested").mkdir()
    csv.to_csv(tmp_path / "data" / "nested" / "b.csv", index=False)
    source = FilesSource(spec, spec.source.path)
    for offset in range(4):
        day = dt.date(2025, 3, 1) + dt.timedelta(days=offset)
        got = source.read_day(day)
        assert len(got) == 50, day
        assert sorted(got["customer_id"]) == list(range(50 * offset, 50 * offset + 50))
    assert len(source.read_day(dt.date(2025, 4, 1))) == 0


def test_files_source_names_partition_file_and_missing_column(tmp_path: Path):
    spec = _files_spec(tmp_path)
    # Only the timestamp column is needed to read a day; other missing columns are kept as they
    # come and reported by the raw_data checks (issue 3).
    frame = make_churn_frame(days=1).drop(columns=["event_time"])
    frame.to_parquet(tmp_path / "data" / "x.parquet")
    with pytest.raises(SourceError) as err:
        FilesSource(spec, spec.source.path).read_day(dt.date(2025, 3, 1))
    assert "partition 2025-03-01" in str(err.value)
    assert "x.parquet" in str(err.value) and "'event_time'" in str(err.value)


def test_files_source_names_unparseable_timestamp(tmp_path: Path):
    spec = _files_spec(tmp_path)
    frame = make_churn_frame(days=1, rows_per_day=5)
    frame["event_time"] = frame["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.loc[2, "event_time"] = "yesterday-ish"
    frame.to_csv(tmp_path / "data" / "bad.csv", index=False)
    # The row belongs to no day: kept aside with its file and reason, never dropped (issue 3).
    source = FilesSource(spec, spec.source.path)
    assert len(source.read_day(dt.date(2025, 3, 1))) == 4
    (kept,) = source.read_unassigned().to_dict("records")
    assert kept["event_time"] == "yesterday-ish" and kept["source_file"].endswith("bad.csv")
    assert "'event_time'" in kept["quarantine_reason"]


def test_files_source_missing_folder(tmp_path: Path):
    spec = _files_spec(tmp_path)
    with pytest.raises(SourceError, match="does not exist"):
        FilesSource(spec, tmp_path / "nowhere").read_day(dt.date(2025, 3, 1))


def _encoded_spec(tmp_path: Path, **source_keys):
    task = {**CHURN_TASK, "source": {**CHURN_TASK["source"], **source_keys}}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    (tmp_path / "data").mkdir(exist_ok=True)
    return load_task(tmp_path / "task.yaml")


def _text_frame(rows_per_day: int = 5) -> pd.DataFrame:
    frame = make_churn_frame(days=2, rows_per_day=rows_per_day)
    frame["event_time"] = frame["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return frame


# 5 rows: the bad byte is in pyarrow's first block (it infers the column as binary, no error);
# 12000 rows (> 1 MiB): it is further on (pyarrow fails with "CSV conversion error to string").
@pytest.mark.parametrize("rows_per_day", [5, 12000])
def test_latin1_csv_read_as_utf8_fails_naming_day_file_and_column(tmp_path: Path, rows_per_day):
    spec = _encoded_spec(tmp_path)
    frame = _text_frame(rows_per_day)
    bad_row = len(frame) - 2  # on the second day
    frame.loc[bad_row, "region"] = "Jos\u00e9"
    frame.to_csv(tmp_path / "data" / "latin.csv", index=False, encoding="latin-1")
    source = FilesSource(spec, spec.source.path)
    with pytest.raises(SourceError) as err:
        source.read_day(dt.date(2025, 3, 1))
    message = str(err.value)
    assert message.startswith("partition 2025-03-01: ")
    assert str(tmp_path / "data" / "latin.csv") in message
    assert "is not valid utf-8" in message and "column 'region'" in message
    assert f"line {bad_row + 2}," in message  # the header is line 1
    assert "'source.encoding'" in message
    with pytest.raises(SourceError, match=r"latin\.csv is not valid utf-8.*column 'region'"):
        source.read_unassigned()


def test_latin1_csv_reads_with_its_declared_encoding(tmp_path: Path):
    spec = _encoded_spec(tmp_path, encoding="latin-1")
    assert spec.source.encoding == "iso8859-1"
    frame = _text_frame()
    frame.loc[1, "region"] = "Jos\u00e9"
    frame.loc[7, "event_time"] = "d\u00e9but"  # no day: kept aside, decoded as well
    frame.to_csv(tmp_path / "data" / "latin.csv", index=False, encoding="latin-1")
    source = FilesSource(spec, spec.source.path)
    got = source.read_day(dt.date(2025, 3, 1))
    assert got["region"].tolist()[1] == "Jos\u00e9"
    assert got["region"].tolist() == frame["region"].tolist()[:5]
    (kept,) = source.read_unassigned().to_dict("records")
    assert kept["event_time"] == "d\u00e9but"


def test_utf8_bom_csv_reads_with_its_real_first_column(tmp_path: Path):
    spec = _encoded_spec(tmp_path)
    frame = _text_frame()
    frame.loc[0, "region"] = "Jos\u00e9"
    frame.to_csv(tmp_path / "data" / "bom.csv", index=False, encoding="utf-8-sig")
    assert (tmp_path / "data" / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    got = FilesSource(spec, spec.source.path).read_day(dt.date(2025, 3, 1))
    assert list(got.columns) == list(frame.columns)  # "event_time", not "\ufeffevent_time"
    assert len(got) == 5 and got["region"].iloc[0] == "Jos\u00e9"


def test_utf16_csv_with_declared_encoding(tmp_path: Path):
    spec = _encoded_spec(tmp_path, encoding="utf-16")
    frame = _text_frame()
    frame.loc[2, "plan"] = "\u00fcber"
    frame.to_csv(tmp_path / "data" / "wide.csv", index=False, encoding="utf-16")
    got = FilesSource(spec, spec.source.path).read_day(dt.date(2025, 3, 1))
    assert list(got.columns) == list(frame.columns) and got["plan"].iloc[2] == "\u00fcber"


def test_csv_not_in_declared_encoding_names_column_line_and_offset(tmp_path: Path):
    spec = _encoded_spec(tmp_path, encoding="ascii")
    frame = _text_frame()
    frame.loc[3, "plan"] = "caf\u00e9"
    (tmp_path / "data" / "a.csv").write_bytes(frame.to_csv(index=False).encode("latin-1"))
    offset = (tmp_path / "data" / "a.csv").read_bytes().index(b"\xe9")
    with pytest.raises(SourceError) as err:
        FilesSource(spec, spec.source.path).read_day(dt.date(2025, 3, 2))
    message = str(err.value)
    assert message.startswith("partition 2025-03-02: ") and "a.csv is not valid ascii" in message
    assert f"column 'plan', line 5, byte offset {offset}" in message


def test_csv_header_not_utf8_is_named(tmp_path: Path):
    spec = _encoded_spec(tmp_path)
    frame = _text_frame().rename(columns={"tenure": "dur\u00e9e"})
    frame.to_csv(tmp_path / "data" / "h.csv", index=False, encoding="latin-1")
    with pytest.raises(SourceError, match=r"h\.csv is not valid utf-8 .*: its header line"):
        FilesSource(spec, spec.source.path).read_day(dt.date(2025, 3, 1))


def test_parquet_string_not_utf8_names_file_column_and_row(tmp_path: Path):
    """pyarrow reads a Parquet string column without checking its UTF-8 (to_pandas fails later
    with "Wrapping ... failed"): the day whose rows have the bad value fails, named."""
    spec = _encoded_spec(tmp_path)
    table = pa.Table.from_pandas(make_churn_frame(days=2, rows_per_day=5), preserve_index=False)
    values = [v.encode() for v in table.column("region").to_pylist()]
    values[7] = b"Jos\xe9"  # the 3rd row of the second day
    column = pa.array(values, pa.binary()).view(pa.string())
    table = table.set_column(table.schema.get_field_index("region"), "region", column)
    pq.write_table(table, tmp_path / "data" / "bad.parquet")
    source = FilesSource(spec, spec.source.path)
    assert len(source.read_day(dt.date(2025, 3, 1))) == 5
    with pytest.raises(SourceError) as err:
        source.read_day(dt.date(2025, 3, 2))
    message = str(err.value)
    assert message.startswith("partition 2025-03-02: ") and "bad.parquet" in message
    assert "column 'region' is not valid UTF-8" in message and "row 3 of its rows" in message


@pytest.mark.parametrize("index_type", [pa.int32(), pa.int64()])
def test_parquet_dictionary_strings_not_utf8_name_the_column(tmp_path: Path, index_type):
    """Dictionary-encoded (pandas category) strings: pyarrow either reads them unchecked or
    (int64 indices here) fails with "Invalid UTF8 payload", naming no column: it is named."""
    spec = _encoded_spec(tmp_path)
    table = pa.Table.from_pandas(make_churn_frame(days=1, rows_per_day=5), preserve_index=False)
    words = pa.array([b"north", b"Jos\xe9"], pa.binary()).view(pa.string())
    column = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, 0, 0], index_type), words)
    table = table.set_column(table.schema.get_field_index("region"), "region", column)
    pq.write_table(table, tmp_path / "data" / "dict.parquet")
    with pytest.raises(SourceError) as err:
        FilesSource(spec, spec.source.path).read_day(dt.date(2025, 3, 1))
    assert str(err.value).startswith("partition 2025-03-01: file ")
    assert "dict.parquet column 'region' is not valid UTF-8" in str(err.value)
