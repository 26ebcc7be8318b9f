"""Fuzz targets for the sans-I/O protocol cores; run them with scripts/fuzz.sh."""
