"""The optional C extensions: each is the fast twin of a pure-Python module that behaves the same.

Owns `load(name)`, the one place that decides whether an extension is used: it returns the
extension module, or None when it was not built (no C compiler when pgsentry was installed)
or when the environment variable ``PGSENTRY_NO_EXTENSIONS`` is set to a non-empty value (to
run, or test, the pure-Python twins). Must not import anything else from pgsentry.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType

DISABLE_VARIABLE = "PGSENTRY_NO_EXTENSIONS"

#: Every extension asked for so far -> whether it is in use (for the startup log line).
IN_USE: dict[str, bool] = {}


def load(name: str) -> ModuleType | None:
    """The C extension module `name` (dotted), or None when it is unavailable or disabled."""
    module = None
    if not os.environ.get(DISABLE_VARIABLE):
        with contextlib.suppress(ImportError):  # not built
            module = importlib.import_module(name)
    IN_USE[name] = module is not None
    return module


def summary() -> str:
    """One line for the log: which twins run in C and which in pure Python."""
    native = sorted(name for name, used in IN_USE.items() if used)
    python = sorted(name for name, used in IN_USE.items() if not used)
    line = f"C extensions in use: {', '.join(native) or 'none'}"
    if python:
        reason = f"{DISABLE_VARIABLE} is set" if os.environ.get(DISABLE_VARIABLE) else "not built"
        line += f"; pure Python ({reason}): {', '.join(python)}"
    return line
