"""Tests of --env-file parsing and loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.envfile import load_env_file, parse_env_file
from asgisock.exceptions import ConfigError


def test_the_formats_it_reads() -> None:
    text = """
# a comment
PLAIN=value
export EXPORTED = spaced
DOUBLE="quoted # not a comment"
SINGLE='single'
TRAILING=value # a comment
EMPTY=
not a line
BAD-KEY=x
1DIGIT_FIRST=x
_=underscore
"""
    assert parse_env_file(text) == {
        "PLAIN": "value", "EXPORTED": "spaced", "DOUBLE": "quoted # not a comment",
        "SINGLE": "single", "TRAILING": "value", "EMPTY": "", "_": "underscore",
    }


@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
                       st.from_regex(r"[A-Za-z0-9./:@-]{0,20}", fullmatch=True), max_size=8))
def test_plain_pairs_round_trip(values: dict[str, str]) -> None:
    assert parse_env_file("\n".join(f"{k}={v}" for k, v in values.items())) == values


def test_the_real_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / ".env"
    path.write_text("ASGISOCK_TEST_SET=from-file\nASGISOCK_TEST_NEW=new\n")
    monkeypatch.setenv("ASGISOCK_TEST_SET", "from-environment")
    monkeypatch.delenv("ASGISOCK_TEST_NEW", raising=False)
    load_env_file(str(path))
    assert os.environ["ASGISOCK_TEST_SET"] == "from-environment"
    assert os.environ["ASGISOCK_TEST_NEW"] == "new"
    monkeypatch.delenv("ASGISOCK_TEST_NEW")


def test_unreadable_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--env-file"):
        load_env_file(str(tmp_path / "missing.env"))
