"""The shadow pointer beside the champion: a candidate, a probation, at most one, each change
written atomically and recorded after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.model.candidate import CANDIDATE, PROBATION, CandidateError
from pipeline.model.registry import ModelRegistry, ModelVersionError
from tests.helpers import save_tiny_version


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_a_newer_candidate_replaces_the_first_and_the_log_says_so(registry):
    champion, first, second = (save_tiny_version(registry, k) for k in range(3))
    registry.promote(champion, reason="first")
    assert registry.shadow_record() is None and registry.candidate() is None
    registry.set_candidate(first, champion, "passed the offline gate")
    assert registry.candidate() == first
    record = registry.set_candidate(second, champion, "passed the offline gate")
    assert registry.candidate() == second and registry.champion() == champion
    assert record["replaced"]["version"] == first
    assert f"replaces candidate {first}" in record["reason"]
    log = [r for r in registry.history() if r["action"] == CANDIDATE]
    assert [r["version"] for r in log] == [first, second]
    assert log[1]["replaced"]["version"] == first and first in log[1]["reason"]
    # no temporary file is left beside the pointer
    assert sorted(p.name for p in registry.root.iterdir() if p.name.startswith(".")) == []


def test_a_version_that_does_not_verify_never_becomes_the_candidate(registry):
    champion = save_tiny_version(registry)
    registry.promote(champion, reason="first")
    with pytest.raises(ModelVersionError):
        registry.set_candidate("20990101T000000000000Z-abcdef", champion, "x")
    assert registry.shadow_record() is None


def test_probation_ends_with_a_manual_rollback(registry):
    old, new = save_tiny_version(registry, 0), save_tiny_version(registry, 1)
    registry.promote(old, reason="first")
    registry.promote(new, reason="second")
    registry.start_probation(new, old, labels=200)
    record = registry.shadow_record()
    assert record["role"] == PROBATION and record["version"] == old
    assert record["champion"] == new and record["labels"] == 200
    assert registry.candidate() is None  # a probation is no candidate
    registry.rollback()
    assert registry.champion() == old and registry.shadow_record() is None
    assert registry.history()[-1]["action"] == "probation_ended"


def test_a_manual_rollback_leaves_a_candidate_alone(registry):
    old, new, cand = (save_tiny_version(registry, k) for k in range(3))
    registry.promote(old, reason="first")
    registry.promote(new, reason="second")
    registry.set_candidate(cand, new, "passed")
    registry.rollback()
    assert registry.candidate() == cand


def test_end_shadow_removes_the_pointer_and_records_the_figures(registry):
    champion, cand = save_tiny_version(registry, 0), save_tiny_version(registry, 1)
    registry.promote(champion, reason="first")
    registry.set_candidate(cand, champion, "passed")
    done = registry.end_shadow("shadow_reject", "worse", labels=300)
    assert not registry.candidate_file.exists()
    assert done["labels"] == 300 and registry.history()[-1] == done
    assert registry.end_shadow("shadow_reject", "again") is None  # nothing left to end


@pytest.mark.parametrize("text", ["{not json", '{"version": "x", "role": "boss"}', "[]"])
def test_a_broken_candidate_json_is_refused_naming_the_file(registry, text):
    registry.root.mkdir(parents=True)
    registry.candidate_file.write_text(text)
    with pytest.raises(CandidateError, match=r"candidate\.json"):
        registry.shadow_record()
