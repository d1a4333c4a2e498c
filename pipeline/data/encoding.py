"""Where a source file stops being valid text: the byte, the line and the column.

pyarrow reports a decoding failure without its place, or not at all (a CSV column with invalid
UTF-8 in its first block is read as ``binary``); these helpers find it, so that the error names
the file, the column and the line or row.
"""

from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

# pyarrow (26) reads UTF-8 CSV without transcoding and, by default, checks that strings are valid
# UTF-8: a column whose *first block* has invalid bytes is inferred as ``binary`` (no error), and
# invalid bytes further on fail the read with this message (its row counts the header as row 1).
CSV_BAD_UTF8 = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to string: invalid UTF8 data"
)
BAD_STRING_INDEX = re.compile(r"Invalid UTF8 sequence at string index (\d+)")
NATIVE_UTF8 = {"utf-8", "utf-8-sig"}  # read by pyarrow itself (it drops a UTF-8 BOM)
_CHUNK = 1 << 20


def first_bad_bytes(file: Path, encoding: str) -> tuple[int, int, str, str] | None:
    """Where ``file`` first fails to decode in ``encoding``: (byte offset, line number, the text
    of that line before it, the decoder's reason); None if the whole file decodes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines, tail = 0, 1, ""
    with open(file, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            state = decoder.getstate()
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeError as err:
                start = getattr(err, "start", 0)  # relative to the bytes it held back + chunk
                pending = len(state[0]) if isinstance(state[0], bytes) else 0
                decoder.setstate(state)
                try:  # the good text before the bad bytes, for the line and the column
                    text = decoder.decode(chunk[: max(0, start - pending)])
                except UnicodeError:
                    text = ""
                lines, tail = lines + text.count("\n"), (tail + text).rsplit("\n", 1)[-1]
                reason = getattr(err, "reason", str(err))
                bad = getattr(err, "object", b"")[start : start + 4]
                reason = f"{reason} ({bad!r}...)" if bad else reason
                return offset - pending + start, lines, tail, reason
            lines += text.count("\n")
            tail = (tail + text).rsplit("\n", 1)[-1][-_CHUNK:]
            offset += len(chunk)
            if not chunk:
                return None


def header_names(file: Path, encoding: str) -> list[str]:
    """The column names of a CSV file's first line, bad bytes replaced (for messages only)."""
    with open(file, "rb") as fh:
        head = fh.read(1 << 16)
    first = codecs.decode(head, encoding, errors="replace").split("\n", 1)[0]
    names = next(csv.reader([first.rstrip("\r")]), [])
    return [names[0].removeprefix("\ufeff"), *names[1:]] if names else []


def column_of(line_prefix: str, names: list[str]) -> str | None:
    """The CSV column that the text ``line_prefix`` (the start of a line) ends in, if known."""
    fields = next(csv.reader([line_prefix]), [""]) if line_prefix else [""]
    return names[len(fields) - 1] if len(fields) <= len(names) else None


def is_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        return is_text(type_.value_type)
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def bad_string_row(column: pa.ChunkedArray) -> int | None:
    """The index of the first value of a string (or dictionary of strings) column that is not
    valid UTF-8, if any."""
    seen = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            words = chunk.dictionary
            if bad_string_row(pa.chunked_array([words])) is not None:
                bad = [i for i, w in enumerate(words.cast(pa.binary()).to_pylist())
                       if w is not None and not is_utf8(w)]  # fmt: skip
                hits = pc.is_in(chunk.indices, value_set=pa.array(bad, chunk.indices.type))
                first = pc.index(hits, True).as_py()
                if first >= 0:
                    return seen + first
        else:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid as err:
                found = BAD_STRING_INDEX.search(str(err))
                return seen + int(found.group(1)) if found else seen
        seen += len(chunk)
    return None


def is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
