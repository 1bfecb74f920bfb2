"""A missing ML dependency skips a test module locally and fails it under CI=true."""

from __future__ import annotations

import pytest

from tests import _deps


def test_a_missing_dependency_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deps, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true and 'attrgraph_no_such_module'"):
        _deps.need("attrgraph_no_such_module")
    assert _deps.need("json").dumps([1]) == "[1]"
    monkeypatch.setattr(_deps, "CI", False)
    with pytest.raises(pytest.skip.Exception):
        _deps.need("attrgraph_no_such_module")
