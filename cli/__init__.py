"""The ``netreduce`` command line: local library commands and a client for a running API."""
