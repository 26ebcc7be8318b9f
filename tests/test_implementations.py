"""How a compiled routine or its pure-Python twin is chosen (``asgisock.implementations``)."""

from __future__ import annotations

import pytest

from asgisock.implementations import choose


def compiled() -> str:
    return "compiled"


def python() -> str:
    return "python"


def test_auto_prefers_the_compiled_routine_where_it_is_built() -> None:
    assert choose("auto", compiled, python, "asgisock._x") == (compiled, "c")
    assert choose("auto", None, python, "asgisock._x") == (python, "python")


def test_python_is_chosen_whenever_asked_for() -> None:
    assert choose("python", compiled, python, "asgisock._x") == (python, "python")
    assert choose("python", None, python, "asgisock._x") == (python, "python")


def test_asking_for_c_where_it_is_not_built_names_the_extension() -> None:
    assert choose("c", compiled, python, "asgisock._x") == (compiled, "c")
    with pytest.raises(ImportError, match=r"asgisock\._x is not built"):
        choose("c", None, python, "asgisock._x")
