"""NumPy's OpenBLAS thread count, changed for a diagnostic measurement only.

NumPy's wheels bundle OpenBLAS (``numpy.libs/libscipy_openblas*.so``); its
``*_set_num_threads*`` function is reached with ctypes, so no extra package is needed.
When the library or the function is not found, :func:`openblas_threads` yields None and
changes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Iterator
from typing import Any


def _library() -> tuple[Any, Any] | None:
    import numpy as np

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*.so*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            setter = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None) or getattr(
                lib, f"openblas_set_num_threads{suffix}", None
            )
            getter = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None) or getattr(
                lib, f"openblas_get_num_threads{suffix}", None
            )
            if setter is not None and getter is not None:
                return setter, getter
    return None


@contextlib.contextmanager
def openblas_threads(n: int) -> Iterator[int | None]:
    """Run the block with OpenBLAS limited to ``n`` threads; yields the previous count
    (None when it could not be changed)."""
    found = _library()
    if found is None:
        yield None
        return
    setter, getter = found
    before = int(getter())
    setter(int(n))
    try:
        yield before
    finally:
        setter(before)
