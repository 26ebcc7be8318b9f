"""The layers of asgisock, stated as data and checked against every import in the package.

transport/ (the only I/O) → asgi/ (ASGI message rules) → http11/ and ws/ (sans-I/O cores), plus
a few shared leaf modules. Every ``import`` counts, at module level, inside functions and under
``TYPE_CHECKING`` alike: an edge hidden in a function is still an edge of the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

import asgisock

PACKAGE: Final = Path(asgisock.__file__).parent

CORE_SHARED: Final = frozenset({"types", "exceptions", "implementations"})
"""Leaf modules the sans-I/O cores may use: they import nothing of asgisock's and do no I/O."""
SHARED: Final = CORE_SHARED | {"logging", "config"}
"""Leaf modules the I/O layers share; ``logging`` and ``config`` read the clock and the
environment, so they stay out of the cores."""

ALLOWED: Final[dict[str, frozenset[str]]] = {
    # The sans-I/O protocol cores.
    "http11": CORE_SHARED,
    # The opening handshake is an HTTP/1.1 exchange (RFC 6455 §4): its responses are built with
    # the HTTP/1.1 writer's header checks and default fields, not with a second copy of them.
    "ws": CORE_SHARED | {"http11"},
    # What a trusted proxy says about the client (forwarding headers, the PROXY protocol).
    "proxy": CORE_SHARED | {"http11"},
    # ASGI message rules, over either core.
    "asgi": SHARED | {"http11", "ws"},
    # The only layer that does I/O; it counts what happens on it for --metrics-port.
    "transport": SHARED | {"asgi", "http11", "ws", "proxy", "metrics"},
    # Shared leaves.
    "types": frozenset(),
    "implementations": frozenset(),
    "exceptions": frozenset(),
    "logging": frozenset(),
    # --metrics-port: the counters (plain arithmetic, a leaf every process can count with) and
    # their exposition in the Prometheus format, the one place that knows prometheus_client.
    "metrics": frozenset({"implementations"}),
    "exposition": frozenset({"exceptions", "metrics"}),
    # Settings take their limits and syntax rules from the cores, so each is defined once.
    "config": frozenset({"exceptions", "types", "http11", "ws", "proxy", "kinds"}),
    # How each kind of setting is checked and parsed, apart from the settings themselves.
    "kinds": frozenset({"exceptions"}),
    # Startup: these assemble the layers into a server.
    "extensions": frozenset({"ws", "http11", "metrics", "implementations"}),
    "envfile": frozenset({"exceptions"}),
    # Settings from a TOML file, checked against the settings' own definitions.
    "configfile": frozenset({"config", "exceptions"}),
    "importer": frozenset({"exceptions"}),
    "lifespan": frozenset({"logging", "types"}),
    "server": SHARED | {"transport", "envfile", "importer", "lifespan", "binding", "supervisor", "exposition",
                        "allocator"},
    # The C library's heap thresholds, set once by the process that serves.
    "allocator": frozenset(),
    # Processes: binding the listening sockets once, the supervisor and its link to each
    # worker. The supervisor stays clear of the server (and so of the app and the event loop):
    # only the worker, a fresh process, runs one.
    "binding": frozenset({"config", "exceptions"}),
    "link": frozenset(),
    # The supervisor serves --metrics-port for its workers, from the figures each sends it.
    "supervisor": SHARED | {"binding", "link", "reload", "metrics", "exposition"},
    # --reload's file watcher, a thread of the supervisor's.
    "reload": SHARED,
    "worker": SHARED | {"server", "binding", "link", "metrics"},
    # The gunicorn worker class: the ordinary server in a process of gunicorn's arbiter, which
    # binds the sockets and decides the workers' lives instead of the supervisor.
    "workers": SHARED | {"server", "binding"},
    "cli": frozenset({"asgisock", "config", "configfile", "exceptions", "server", "ws"}),
    "__main__": frozenset({"cli"}),
    "asgisock": frozenset({"extensions", "config", "exceptions", "server"}),
}
"""For each part of the package (a subpackage or a top-level module; ``asgisock`` is the
package's ``__init__``), the other parts it may import."""

NO_IO: Final = frozenset({
    "asyncio", "concurrent", "datetime", "multiprocessing", "os", "pathlib", "random", "secrets",
    "selectors", "signal", "socket", "ssl", "subprocess", "sys", "threading", "time", "uvloop",
})
"""What the cores never import: I/O, event loops, threads, the clock, the environment."""
CORES: Final = ("http11", "ws", "proxy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: Final = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> str:
    """``asgisock.ws.frames`` → ``ws``, ``asgisock.config`` → ``config``, ``asgisock`` → itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(module: str) -> Iterator[str]:
    """Every module named by an import statement anywhere in ``module``: asgisock's own modules
    resolved to the module (``from asgisock.ws import mask`` is ``asgisock.ws.mask``), others as
    given."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in MODULES else base


def own_edges() -> set[tuple[str, str]]:
    """(importer, imported) for every import of one asgisock module by another."""
    return {(module, target) for module in MODULES for target in imports(module)
            if target.split(".")[0] == "asgisock" and target in MODULES and target != module}


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One import cycle among ``edges`` as a path that ends where it starts, or None."""
    graph: dict[str, list[str]] = {}
    for source, target in edges:
        graph.setdefault(source, []).append(target)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            if cycle := visit(target, [*path, node]):
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        if cycle := visit(node, []):
            return cycle
    return None


def test_every_part_is_placed() -> None:
    parts = {part_of(module) for module in MODULES}
    assert parts == set(ALLOWED), "a new part of the package: give it a place in ALLOWED"
    assert all(allowed <= set(ALLOWED) for allowed in ALLOWED.values())


def test_the_cores_were_found() -> None:
    assert sum(part_of(module) in CORES for module in MODULES) >= 10


def test_only_allowed_edges() -> None:
    forbidden = sorted(f"{source} imports {target}" for source, target in own_edges()
                       if part_of(source) != part_of(target) and part_of(target) not in ALLOWED[part_of(source)])
    assert forbidden == []


def test_the_parts_form_no_cycle() -> None:
    parts = {(part_of(source), part_of(target)) for source, target in own_edges()}
    assert find_cycle({(source, target) for source, target in parts if source != target}) is None


def test_the_modules_form_no_cycle() -> None:
    assert find_cycle(own_edges()) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a")}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"), ("a", "c"), ("b", "c")}) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part_of(m) in CORES))
def test_no_io_in_the_cores(module: str) -> None:
    assert {target.split(".")[0] for target in imports(module)} & NO_IO == set()


WIRE_NEUTRAL: Final = frozenset({"asgisock.asgi.http_cycle"})
"""ASGI modules that any wire protocol reuses: they reach the wire through an interface, never
through a protocol core."""


@pytest.mark.parametrize("module", sorted(WIRE_NEUTRAL))
def test_the_asgi_rules_import_no_wire_protocol(module: str) -> None:
    assert {part_of(target) for target in imports(module) if target.startswith("asgisock.")} & set(CORES) == set()
