"""The WebSocket protocol (RFC 6455, RFC 7692), server side, without I/O."""

from asgisock.ws.mask import MASK_IMPLEMENTATION, apply_mask

__all__ = ["MASK_IMPLEMENTATION", "apply_mask"]
