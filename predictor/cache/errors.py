"""The one error the cache raises: its message is the whole story for the operator."""


class CacheError(Exception):
    """A model could not be resolved, fetched or verified; the message says why."""
