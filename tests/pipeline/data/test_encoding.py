"""Finding where a file stops being valid text."""

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.data.encoding import (
    bad_string_row,
    column_of,
    first_bad_bytes,
    header_names,
    is_text,
    is_utf8,
)


def test_first_bad_bytes_names_offset_line_and_the_text_before(tmp_path: Path):
    path = tmp_path / "a.csv"
    path.write_bytes("id,name\n1,Ann\n2,Jos\u00e9\n".encode("latin-1"))
    offset, line, before, why = first_bad_bytes(path, "utf-8")
    assert (offset, line, before) == (len(b"id,name\n1,Ann\n2,Jos"), 3, "2,Jos")
    assert "continuation byte" in why or "invalid" in why
    assert first_bad_bytes(path, "latin-1") is None


def test_header_names_drop_a_bom_and_column_of_counts_fields(tmp_path: Path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"\xef\xbb\xbfid,name,city\n1,a,b\n")
    names = header_names(path, "utf-8")
    assert names == ["id", "name", "city"]
    assert column_of("1,a,", names) == "city"
    assert column_of("1", names) == "id"
    assert column_of("1,a,b,c", names) is None  # more fields than the header


@pytest.mark.parametrize(
    ("type_", "text"),
    [(pa.string(), True), (pa.large_string(), True), (pa.dictionary(pa.int32(), pa.string()), True),
     (pa.int64(), False), (pa.binary(), False)],
)  # fmt: skip
def test_is_text(type_, text):
    assert is_text(type_) is text


def test_bad_string_row_and_is_utf8():
    good = pa.chunked_array([pa.array(["a", "b"])])
    assert bad_string_row(good) is None
    raw = pa.array([b"ok", b"Jos\xe9", b"ok"], type=pa.binary()).cast(pa.string(), safe=False)
    assert bad_string_row(pa.chunked_array([raw])) == 1
    assert is_utf8("Jos\u00e9".encode()) and not is_utf8(b"Jos\xe9")
