"""Free loopback ports for processes the tests start."""

from chat_shared.loopback import free_port

__all__ = ["free_port"]
