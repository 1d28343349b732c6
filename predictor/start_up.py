"""Process-wide switches for a fast ``kzero serve`` start, and their undoing.

Cold start to ready is mostly Python imports (docs/architecture.md, Start-up),
and two costs in them are avoidable without changing what is imported for serving:

- **kserve/__init__.py.** ``import kserve.model_server`` first runs the package's
  ``__init__``, and KServe 0.21.0's imports, beside the model server, the
  Kubernetes client SDK (``kserve.api.kserve_client`` -> ``kubernetes``) and
  about a hundred generated CRD classes (``kserve.models``): 0.15-0.2 s of a
  0.65 s ``import kserve`` here, none of it used by a predictor. So the package
  module is put in ``sys.modules`` without running its ``__init__``; its
  submodules (``kserve.model_server``, ``kserve.model``, ``kserve.errors``...)
  import as usual, and the first use of a name only the ``__init__`` defines
  (``kserve.KServeClient``, ``from kserve import Model``) runs it then, so
  nothing that expects the whole package is left without it.
- **The cyclic garbage collector.** Start-up creates about 160,000 objects
  (modules, classes, functions, pydantic schemas) that live as long as the
  process; the collections they trigger find next to nothing to free and cost
  about a tenth of the import time. The collector is off from the entry point
  until the server is built; reference counting frees everything else as usual.
"""

from __future__ import annotations

import gc
import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any


def begin_start_up() -> None:
    """Called first by the serve entry points; idempotent."""
    gc.disable()
    defer_package_init("kserve")


def start_up_done() -> None:
    """The server is built: everything from here on is serving. Idempotent.

    The start-up objects go to the collector's permanent generation first. Left
    in the young generation, where a collector that never ran leaves them, the
    first collections after ``gc.enable`` would scan all of them (about 160,000,
    60 ms here) twice, just as the first requests arrive; a full collection
    there finds about a thousand unreachable objects, not worth a pause.
    """
    if gc.isenabled():
        return
    gc.freeze()
    gc.enable()


def defer_package_init(name: str) -> None:
    """Make ``import name.sub`` import the submodule without running ``name/__init__.py``.

    Does nothing when the package is imported already or is not installed (then
    the import fails later, where it would have).
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    # A module-level __getattr__ (PEP 562) lives in the module's namespace.
    package.__getattr__ = _PackageInit(package, spec)
    sys.modules[name] = package


class _PackageInit:
    """The package module's ``__getattr__`` (PEP 562): only called for a missing name.

    A missing submodule name is left to the import system: ``from kserve import
    errors`` and ``from . import logging`` ask ``hasattr(package, name)`` first
    and then import ``kserve.<name>``. Any other name is one the ``__init__``
    would have defined: run it, then answer.
    """

    def __init__(self, package: ModuleType, spec: importlib.machinery.ModuleSpec) -> None:
        self._package = package
        self._spec = spec
        # Reentrant: the __init__ may ask for one of its own names while it runs.
        self._lock = threading.RLock()

    def __call__(self, attribute: str) -> Any:
        package = self._package
        if importlib.machinery.PathFinder.find_spec(
            f"{package.__name__}.{attribute}", package.__path__
        ):
            raise AttributeError(attribute)
        with self._lock:
            if package.__dict__.get("__getattr__") is self:
                del package.__getattr__
                assert self._spec.loader is not None
                self._spec.loader.exec_module(package)
        return getattr(package, attribute)
