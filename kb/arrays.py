"""Sort-based unique/counts/inverse on integer key arrays.

``np.unique`` on large int64 arrays with many distinct keys is slow in recent numpy (its hash path);
sorting once is an order of magnitude faster and gives sorted results, which the code relies on.
"""

from __future__ import annotations

import numpy as np


def _starts(s: np.ndarray) -> np.ndarray:
    flag = np.empty(len(s), bool)
    if len(s):
        flag[0] = True
        np.not_equal(s[1:], s[:-1], out=flag[1:])
    return flag


def unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of ``x``."""
    s = np.sort(x, kind="stable")
    return s[_starts(s)]


def unique_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, how many times each occurs)."""
    s = np.sort(x, kind="stable")
    flag = _starts(s)
    return s[flag], np.diff(np.append(np.flatnonzero(flag), len(s)))


def unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values ``u``, ``inv`` with ``u[inv] == x``)."""
    order = np.argsort(x, kind="stable")
    s = x[order]
    flag = _starts(s)
    inv = np.empty(len(x), np.int64)
    inv[order] = np.cumsum(flag) - 1
    return s[flag], inv


def first_index(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, the index of the first occurrence of each in ``x``)."""
    order = np.argsort(x, kind="stable")
    s = x[order]
    flag = _starts(s)
    return s[flag], order[flag]
