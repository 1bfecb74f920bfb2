"""Optional dependencies of the ML tests: skipped where they are missing -- except under CI=true, where the
project installs them all, so a missing one is a broken install and fails the run instead of hiding it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(module: str) -> ModuleType:
    """``pytest.importorskip(module)``, but a failure under CI=true."""
    if not CI:
        return pytest.importorskip(module)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"CI=true and {module!r} cannot be imported ({e}): install the project with its [ml] extra",
                    pytrace=False)
