"""Raw-bytes corpora of hostile input, shared by the sans-I/O and the end-to-end tests."""
