"""Errors of the local cluster tooling."""


class ClusterError(Exception):
    """A local cluster operation failed; the message says what to do."""
