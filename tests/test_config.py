"""Settings: validation naming the option, and every generated surface agreeing with the definitions."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import click
import pytest

import asgisock
from asgisock.cli import command
from asgisock.config import (
    SETTINGS,
    Config,
    Setting,
    default_of,
    env_var,
    environ_settings,
    settings_table,
)
from asgisock.exceptions import ConfigError
from tests.apps import hello

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference" / "settings.md"


def info_of(name: str) -> Setting:
    return SETTINGS[name]


_WRONG_TYPES: dict[str, list[Any]] = {
    "int": ["8000", 1.5, True, None],
    "float": ["5", True, float("nan"), float("inf"), None],
    "bool": ["false", 1, None],
    "str": [1, b"bytes", None],
    "choice": ["bogus", "", None],
    "path": [1, b"/tmp", None],
    "file": [1, "no/such/file.conf"],
    "list": ["X-A: 1", [1], None],  # a lone string is the usual mistake for a list
}


def invalid_values() -> list[Any]:
    """Every setting with values of the wrong type and just outside its range."""
    cases = []
    for name in SETTINGS:
        info = info_of(name)
        for value in _WRONG_TYPES[info.kind]:
            if value is None and info.optional:
                continue
            cases.append(pytest.param(name, value, id=f"{name}={value!r}"))
        if info.minimum is not None:
            below = info.minimum - 1 if info.kind == "int" else (info.minimum / 2 if info.minimum > 0 else -1.0)
            cases.append(pytest.param(name, int(below) if info.kind == "int" else below, id=f"{name}<min"))
        if info.maximum is not None:
            above = info.maximum + 1
            cases.append(pytest.param(name, int(above) if info.kind == "int" else above, id=f"{name}>max"))
    return cases


@pytest.mark.parametrize(("name", "value"), invalid_values())
def test_invalid_value_names_the_option(name: str, value: Any) -> None:
    flag = info_of(name).flag
    with pytest.raises(ConfigError) as caught:
        Config(hello, **{name: value})
    assert caught.value.option == flag
    assert str(caught.value).startswith(f"Invalid value for '{flag}': ")
    assert isinstance(caught.value, ValueError)


def test_defaults_and_range_limits_are_valid(tmp_path: Path) -> None:
    existing = tmp_path / "existing.conf"
    existing.write_text("")
    config = Config(hello)
    for name, item in SETTINGS.items():
        assert getattr(config, name) == default_of(item.source)
        info = info_of(name)
        valid: list[Any] = [item.default]
        valid += [v for v in (info.minimum, info.maximum) if v is not None]
        valid += [None] if info.optional else []
        valid += [str(existing)] if info.kind == "file" else []
        valid += list(info.choices)
        for value in valid:
            if info.kind == "int" and isinstance(value, float):
                value = int(value)
            assert getattr(Config(hello, **{name: value}, **_requirements(name, existing)), name) == value, \
                (name, value)


def _requirements(name: str, file: Path) -> dict[str, Any]:
    """Values for the settings ``name`` needs (``--ssl-keyfile`` needs ``--ssl-certfile``), transitively."""
    needed: dict[str, Any] = {}
    required = SETTINGS[name].declared.requires
    while required is not None:
        kind = SETTINGS[required].kind
        needed[required] = (str(file) if kind == "file" else 1 if kind in ("int", "float")
                            else True if kind == "bool" else "x")
        required = SETTINGS[required].declared.requires
    return needed


def test_a_setting_without_the_one_it_needs_is_an_error(tmp_path: Path) -> None:
    existing = tmp_path / "key.pem"
    existing.write_text("")
    with pytest.raises(ConfigError, match=r"--ssl-keyfile.*needs --ssl-certfile"):
        Config(hello, ssl_keyfile=str(existing))
    with pytest.raises(ConfigError, match=r"--ssl-cert-reqs.*needs --ssl-ca-certs"):
        Config(hello, ssl_certfile=str(existing), ssl_cert_reqs=2)
    assert Config(hello, ssl_certfile=str(existing), ssl_cert_reqs=0).ssl_cert_reqs == 0
    with pytest.raises(ConfigError, match=r"--limit-max-requests.*needs --workers"):
        Config(hello, limit_max_requests=100)  # one process has no one to take over from it
    with pytest.raises(ConfigError, match=r"--reload-dir.*needs --reload"):
        Config(hello, reload_dirs=["src"])
    with pytest.raises(ConfigError, match=r"--reuse-port.*not --fd or --uds"):
        Config(hello, workers=2, reuse_port=True, uds="/tmp/x.sock")


def test_list_default_is_not_shared() -> None:
    first = Config(hello)
    first.headers.append("X-A: 1")
    assert Config(hello).headers == []


def test_headers_are_parsed() -> None:
    config = Config(hello, headers=["X-Frame-Options: DENY", "x-empty:", "X-Colons: a:b:c"])
    assert config.header_pairs == [(b"x-frame-options", b"DENY"), (b"x-empty", b""), (b"x-colons", b"a:b:c")]


@pytest.mark.parametrize("header", ["nocolon", ": value", "bad name: x", "x-a: 1\r\nInjected: yes", "x-a: \0",
                                    "caf\u00e9: x", "\u0101: x", "x-a: \u0101"])
def test_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(ConfigError, match=r"is not NAME:VALUE"):
        Config(hello, headers=[header])


def test_malformed_header_names_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        Config(hello, headers=["nocolon"])
    assert caught.value.option == info_of("headers").flag


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"host": "::1", "port": 0}, "http://[::1]:0"),
        ({"uds": "/run/app.sock"}, "unix:/run/app.sock"),
        ({"fd": 3}, "fd://3"),
    ],
)
def test_bind_description(settings: dict[str, Any], where: str) -> None:
    assert Config(hello, **settings).bind_description == where


# -- the environment: read by the command and run(), never by Config -------------------------

ENVIRONMENT = {
    "ASGISOCK_PORT": "9000",
    "ASGISOCK_ACCESS_LOG": "no",
    "ASGISOCK_WS_PING_INTERVAL": "2.5",
    "ASGISOCK_LOOP": "asyncio",
    "ASGISOCK_HEADER": "X-A: 1\nX-B: two words",
    "ASGISOCK_ROOT_PATH": "",  # empty is unset, as on the command line
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS.values():
        monkeypatch.delenv(name.env_var, raising=False)
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)


@pytest.mark.usefixtures("environment")
def test_environment_is_parsed_as_the_command_line_parses_it() -> None:
    parsed = command.make_context("asgisock", ["app"]).params
    from_environ = environ_settings()
    assert from_environ == {"port": 9000, "access_log": False, "ws_ping_interval": 2.5, "loop": "asyncio",
                            "headers": ["X-A: 1", "X-B: two words"]}
    assert {name: parsed[name] for name in from_environ} == {**from_environ, "headers": ("X-A: 1", "X-B: two words")}


@pytest.mark.usefixtures("environment")
def test_given_settings_are_not_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGISOCK_BACKLOG", "not a number")
    assert "backlog" not in environ_settings(given={"backlog"})
    rest = environ_settings(given=["port", "backlog"])
    assert rest.keys() == {"access_log", "ws_ping_interval", "loop", "headers"}


def test_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGISOCK_PORT", "eighty")
    with pytest.raises(ConfigError) as caught:
        environ_settings()
    assert caught.value.option == "ASGISOCK_PORT"
    with pytest.raises(ConfigError, match="ASGISOCK_PORT"):
        asgisock.run(hello, backlog=0)  # were the environment ignored, --backlog would fail instead


@pytest.mark.usefixtures("environment")
def test_config_ignores_the_environment() -> None:
    config = Config(hello)
    assert (config.port, config.access_log, config.headers) == (8000, True, [])


# -- one definition, every surface ---------------------------------------------------------------


def test_docs_settings_table_is_up_to_date() -> None:
    text = DOCS.read_text(encoding="utf-8")
    intro, sep, table = text.partition("\n| Option |")
    assert sep, "no settings table in docs/reference/settings.md"
    assert intro.startswith("# Settings\n")
    assert "| Option |" + table == settings_table(), (
        "docs/reference/settings.md is out of date: replace its table with asgisock.config.settings_table()"
    )


def test_table_lists_every_setting_once() -> None:
    rows = settings_table().splitlines()[2:]
    assert len(rows) == len(SETTINGS)
    for row, (name, item) in zip(rows, SETTINGS.items(), strict=True):
        assert f"`{env_var(name)}`" in row
        assert all(f"`{variable}`" in row for variable in item.env_vars)
        assert f"`{item.default_text}`" in row
        assert item.default_text == (oct(default_of(item.source)) if item.octal else repr(default_of(item.source)))


def test_config_keywords_are_the_settings() -> None:
    parameters = inspect.signature(Config).parameters
    assert list(parameters) == ["app", *SETTINGS]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters.values())
    assert [f.name for f in dataclasses.fields(Config) if f.init] == ["app", *SETTINGS]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_run_takes_every_setting_as_a_keyword(name: str) -> None:
    """``run`` hands each keyword to the setting of that name (seen by its validation failing)."""
    info = info_of(name)
    bad = "bogus" if info.kind == "choice" else object()
    with pytest.raises(ConfigError) as caught:
        asgisock.run(hello, **{name: bad})
    assert caught.value.option == info.flag


def test_run_rejects_unknown_keywords() -> None:
    with pytest.raises(TypeError, match="prot"):
        asgisock.run(hello, prot=9000)


def test_cli_options_are_the_settings() -> None:
    options = {p.name: p for p in command.params
               if isinstance(p, click.Option) and p.expose_value and p.name != "print_config"}
    assert list(options) == list(SETTINGS)
    for name, option in options.items():
        info = info_of(name)
        assert option.opts == [info.flag, *info.aliases]
        alias = info.declared.env_alias
        uvicorn = [f"UVICORN_{info.uvicorn_name.upper()}"] if info.uvicorn_name else []
        assert option.envvar == [env_var(name), *uvicorn, *([alias] if alias else [])] == info.env_vars
        assert option.help == info.help
        if info.kind == "bool":
            assert option.secondary_opts == [f"--no-{info.flag[2:]}"]
        if info.kind == "choice":
            assert isinstance(option.type, click.Choice)
            assert tuple(option.type.choices) == info.choices + tuple(info.declared.refused)
        if info.kind == "list":
            assert option.multiple
        elif info.kind != "bool":
            assert option.default == default_of(SETTINGS[name].source)


def test_every_setting_has_help_and_a_known_kind() -> None:
    for name in SETTINGS:
        info = info_of(name)
        assert info.help.endswith((".", ")")), name
        assert (info.kind == "choice") == bool(info.choices), name
