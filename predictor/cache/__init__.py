"""The model cache: fetch a model once onto a (shared) volume, verify it, reuse it.

``store.ModelCache`` is the entry point; ``cli.py`` is ``kzero cache``. The cache
knows URIs, files and digests, nothing about models or engines.
"""
