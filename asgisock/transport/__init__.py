"""asyncio glue: the only layer that reads and writes sockets."""
