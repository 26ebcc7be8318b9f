"""A chat room that scales past one process: a Starlette app with rooms, presence and typing.

Serve it with ``asgisock examples.chat:app`` from the repository's root, after
``pip install ".[examples]"``. With ``REDIS_URL`` set (``redis://localhost:6379/0``), rooms go
through Redis pub/sub, so people connected to different workers or machines see each other;
``docs/howto/scale-out.md`` explains how.
"""

from .app import app, create_app

__all__ = ["app", "create_app"]
