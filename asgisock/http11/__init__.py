"""HTTP/1.1, sans-I/O: request parsing and response encoding, with no event loop."""
