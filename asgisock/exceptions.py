"""Exceptions the server raises to the app or to the embedding program."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the setting's command-line option."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"Invalid value for '{option}': {message}")
        self.option = option
        self.reason = message


class AppImportError(Exception):
    """The application string does not name an importable ASGI callable."""


class ClientDisconnected(OSError):
    """``send()`` was called after the client went away.

    The ASGI spec asks servers to raise a subclass of ``OSError`` here (HTTP and WebSocket
    specs, "Disconnected Client - send exception"), so apps can treat it as any I/O error.
    """


class LifespanFailure(Exception):
    """The app reported ``lifespan.startup.failed``; the server exits with code 3."""


class InvalidResponse(Exception):
    """The app asked for a response that cannot be put on the wire (a bad status or header)."""


class BrokenFraming(Exception):
    """The app's body does not match the framing its head announced (a Content-Length): the
    response cannot be completed, and the connection cannot carry another."""


EXIT_IMPORT_ERROR = 1
"""The process's exit code when the app cannot be imported or the socket cannot be bound."""
EXIT_STARTUP_FAILED = 3
"""The process's exit code when the app's lifespan startup failed or was interrupted."""
