"""numpy, imported when a report, a forecast or an anomaly check first needs it.

``pgperf serve`` loads the reports package when it starts (its routes, its scheduler), but
numpy with its BLAS holds about 18 MiB resident and starts a thread, which a process that
only samples and serves ``/metrics`` never needs. The modules of this package take ``np``
from here: numpy itself for the type checker and, at run time, a stand-in that imports
numpy at its first attribute access and from then on holds numpy's attributes as its own
(a plain attribute lookup, as fast as on the module).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

__all__ = ["np"]


class _OnFirstUse:
    """A module imported at the first attribute read. The import system's per-module
    lock makes concurrent first reads from several threads safe."""

    def __init__(self, name: str) -> None:
        self.__dict__["_OnFirstUse__name"] = name

    def __getattr__(self, attribute: str) -> Any:
        module: ModuleType = importlib.import_module(self.__dict__["_OnFirstUse__name"])
        self.__dict__.update(vars(module))
        return getattr(module, attribute)  # names the module itself serves lazily

    def __repr__(self) -> str:
        return f"<{self.__dict__['_OnFirstUse__name']}, imported at first use>"


if TYPE_CHECKING:
    import numpy as np
else:
    np = _OnFirstUse("numpy")
