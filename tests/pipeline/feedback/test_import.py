"""``flywheel feedback import`` through the command's entry point (``pipeline.cli.main``):
row-level validation, one-line errors that name the file, and rejected rows that never
overwrite an earlier import's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline import cli
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome


@pytest.fixture
def logged(tmp_path: Path):
    """A store under ``tmp_path/home`` with four logged predictions; yields (home, ids, store)."""
    home = tmp_path / "home"
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)
    store.upgrade()
    ids = store.log_predictions("v1", [{"a": i} for i in range(4)], [0.9, 0.2, 0.6, 0.1], 0.5)
    yield home, ids, store
    store.close()


def _import(home: Path, file: Path, capsys) -> tuple[int, str, str]:
    code = cli.main(["--home", str(home), "feedback", "import", str(file)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_one_text_label_rejects_its_row_only(logged, tmp_path, capsys):
    home, ids, store = logged
    file = tmp_path / "labels.csv"
    file.write_text(
        "prediction_id,label,source\n"
        f"{ids[0]},1,crm\n{ids[1]},yes,crm\n{ids[2]},0,crm\n{ids[3]},1.0,crm\n"
    )
    code, out, _ = _import(home, file, capsys)
    assert code == 2
    assert "accepted 3, already stored 0, rejected 1" in out
    rejected = pd.read_csv(tmp_path / "labels.rejected.csv", dtype=str)
    assert rejected["prediction_id"].tolist() == [ids[1]]
    assert rejected["label"].tolist() == ["yes"]
    assert rejected["reason"].tolist() == ["label: must be 0 or 1"]
    assert store.labelled_examples()["feedback_label"].tolist() == [1, 0, 1]


def test_text_labels_in_parquet_are_validated_row_by_row(logged, tmp_path, capsys):
    home, ids, store = logged
    file = tmp_path / "labels.parquet"
    pd.DataFrame({"prediction_id": ids[:3], "label": ["1", "no", "0"]}).to_parquet(file)
    code, out, _ = _import(home, file, capsys)
    assert code == 2 and "accepted 2, already stored 0, rejected 1" in out
    assert store.counts()["feedback"] == 2


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("latin1.csv", "prediction_id,label\nabc,1\ncaf\u00e9,0\n".encode("latin-1"),
         "is not valid UTF-8 at byte 29 (line 3, column 4)"),
        ("empty.csv", b"", "is empty"),
        ("blank.csv", b"\n\n", "is empty"),
        ("columns.csv", b"id,value\nabc,1\n", "has no column 'prediction_id' (it has: id, value)"),
        ("broken.parquet", b"PAR1 not really", "cannot be read as Parquet"),
        ("labels.json", b"[]", "is neither .csv nor .parquet"),
    ],
    ids=["not-utf8", "empty", "blank", "no-columns", "bad-parquet", "suffix"],
)  # fmt: skip
def test_a_file_that_cannot_be_read_is_one_line_naming_it(
    logged, tmp_path, capsys, name, content, problem
):
    home, _, store = logged
    file = tmp_path / name
    file.write_bytes(content)
    code, _, err = _import(home, file, capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"flywheel: {file} ")
    assert problem in err
    assert store.counts()["feedback"] == 0
    assert not list(tmp_path.glob("*.rejected*"))


def test_a_missing_file_is_one_line_naming_it(logged, tmp_path, capsys):
    home, _, _ = logged
    code, _, err = _import(home, tmp_path / "nowhere.csv", capsys)
    assert code == 1
    assert err == f"flywheel: {tmp_path / 'nowhere.csv'} does not exist\n"


def test_rejected_rows_never_overwrite_an_earlier_file(logged, tmp_path, capsys):
    home, ids, _ = logged
    file = tmp_path / "labels.csv"
    earlier = tmp_path / "labels.rejected.csv"
    earlier.write_text("prediction_id,label,reason\nold,7,kept\n")
    names = []
    for bad in ("yes", "no"):
        file.write_text(f"prediction_id,label\n{ids[0]},1\n{ids[1]},{bad}\n")
        code, out, _ = _import(home, file, capsys)
        assert code == 2
        names.append(out.strip().splitlines()[-1].rsplit(" ", 1)[-1])
    assert names == [
        str(tmp_path / "labels.rejected.1.csv"),
        str(tmp_path / "labels.rejected.2.csv"),
    ]
    assert earlier.read_text() == "prediction_id,label,reason\nold,7,kept\n"
    assert pd.read_csv(tmp_path / "labels.rejected.1.csv")["label"].tolist() == ["yes"]
    assert pd.read_csv(tmp_path / "labels.rejected.2.csv")["label"].tolist() == ["no"]
