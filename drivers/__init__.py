"""Serial device drivers (sans-I/O framers, codecs and sessions), their runner and their simulators."""
