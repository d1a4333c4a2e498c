"""The checks in front of every route, as plain functions (over HTTP: test_access.py)."""

from __future__ import annotations

import pytest

from pipeline.serving.guards import host_allowed, host_name, token_matches


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "::1"), ("LocalHost.", "localhost"),
     ("example.com", "example.com"), ("::1", "::1")],
)  # fmt: skip
def test_the_name_in_a_host_header(header, name):
    assert host_name(header) == name


def test_allowed_hosts_match_names_and_wildcards():
    allowed = ["127.0.0.1", "*.example.com"]
    assert host_allowed("127.0.0.1", allowed)
    assert host_allowed("api.example.com", allowed)
    assert not host_allowed("example.com.evil.net", allowed)
    assert not host_allowed("evil.net", allowed)
    assert host_allowed("anything", ["*"])


def test_the_token_is_compared_as_bytes_and_needs_bearer():
    assert token_matches("Bearer s3cret", "s3cret")
    assert not token_matches("Bearer s3cre", "s3cret")
    assert not token_matches("s3cret", "s3cret")
    assert not token_matches("Bearer \u00e9t\u00e9", "s3cret")  # non-ASCII: no error, no match
