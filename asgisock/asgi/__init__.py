"""ASGI semantics, written once: scopes and the ordering rules of every message."""
