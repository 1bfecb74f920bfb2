"""Verdicts on predictions, and audits of asserted facts, with the rules that fired and why."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog
from .context import BRAND_CODE, STATUS, Context, Rows
from .errors import KBError
from .predictions import Predictions
from .registry import Rule, RuleSet

ACCEPT, NEEDS_REVIEW, REJECT = STATUS


@dataclass(frozen=True)
class Reason:
    rule: str  # rule id
    type: str  # rule type
    severity: str  # reject | review
    message: str


@dataclass(frozen=True)
class Verdict:
    index: int  # row of the predictions
    product: str
    attribute: str
    value: str
    score: float
    rank: int
    verdict: str  # accept | needs_review | reject
    reasons: tuple[Reason, ...]


def _context(context: Context | Catalog, rules: RuleSet | Iterable[Rule] | None) -> Context:
    if isinstance(context, Context):
        if rules is not None:
            raise KBError("pass rules when building the Context, not with an already built one")
        return context
    if isinstance(context, Catalog):
        return Context(context, rules)
    raise KBError(f"context must be a kb.Context or a kb.Catalog, got {type(context).__name__}")


class _Judged:
    def __init__(self, ctx: Context, rows: Rows, status: np.ndarray, v_rows: np.ndarray, v_rules: np.ndarray):
        self.ctx, self.rows, self.status = ctx, rows, status
        self.v_rows, self.v_rules = v_rows, v_rules

    def reasons(self, i: int) -> tuple[Reason, ...]:
        lo, hi = np.searchsorted(self.v_rows, [i, i + 1])
        out = []
        for k in self.v_rules[lo:hi].tolist():
            c = self.ctx.compiled_rule(k)
            out.append(Reason(c.rule.id, c.rule.type, c.rule.severity, c.message(self.rows, i)))
        return tuple(out)

    def rule_counts(self) -> dict[str, int]:
        """Violations per rule id (every rule of the context, zeros included)."""
        counts = np.bincount(self.v_rules + 1, minlength=len(self.ctx.compiled) + 1)
        out = {self.ctx.builtin.rule.id: int(counts[0])} if counts[0] else {}
        out.update({c.rule.id: int(n) for c, n in zip(self.ctx.compiled, counts[1:].tolist())})
        return out


class Verdicts(_Judged):
    """One verdict per prediction row: ``status`` (N,) int8 (0 accept, 1 needs_review, 2 reject),
    ``labels`` as words; ``v[i]`` is a :class:`Verdict` with its reasons in plain words."""

    def __init__(self, ctx: Context, rows: Rows, predictions: Predictions, status: np.ndarray,
                 v_rows: np.ndarray, v_rules: np.ndarray):
        super().__init__(ctx, rows, status, v_rows, v_rules)
        self.predictions = predictions

    def __len__(self) -> int:
        return len(self.status)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(STATUS, dtype=object)[self.status]

    @property
    def accepted(self) -> np.ndarray:
        return self.status == 0

    @property
    def needs_review(self) -> np.ndarray:
        return self.status == 1

    @property
    def rejected(self) -> np.ndarray:
        return self.status == 2

    def counts(self) -> dict[str, int]:
        n = np.bincount(self.status, minlength=3)
        return {ACCEPT: int(n[0]), NEEDS_REVIEW: int(n[1]), REJECT: int(n[2])}

    def __getitem__(self, i: int) -> Verdict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        p = self.predictions
        value = p.display[i] if p.display is not None else p.value[i]
        return Verdict(i, str(p.product[i]), str(p.attribute[i]), str(value), float(p.score[i]), int(p.rank[i]),
                       STATUS[self.status[i]], self.reasons(i))

    def __iter__(self) -> Iterator[Verdict]:
        for i in range(len(self)):
            yield self[i]

    def best(self) -> np.ndarray:
        """Row index of the best accepted candidate of each (product, attribute) slot that has one
        (lowest rank, then highest score)."""
        acc = np.flatnonzero(self.accepted)
        if not len(acc):
            return acc
        slot = self.predictions.slot[acc]
        score = np.nan_to_num(self.predictions.score[acc].astype(np.float64), nan=-np.inf)
        order = np.lexsort((-score, self.predictions.rank[acc], slot))
        s = slot[order]
        first = np.ones(len(s), bool)
        first[1:] = s[1:] != s[:-1]
        return acc[order[first]]

    def to_dicts(self, rows: Sequence[int] | np.ndarray | None = None) -> list[dict[str, Any]]:
        idx = range(len(self)) if rows is None else rows
        return [_verdict_dict(self[int(i)]) for i in idx]


def _verdict_dict(v: Verdict) -> dict[str, Any]:
    d = asdict(v)
    d["reasons"] = [asdict(r) for r in v.reasons]
    return d


@dataclass(frozen=True)
class Violation:
    rule: str
    type: str
    severity: str
    product: str
    category: str
    attribute: str  # "brand" for a brand fact
    value: str
    message: str


GROUP_KEYS = ("rule", "type", "severity", "category", "attribute")


class AuditReport(_Judged):
    """Violations of the rules by the asserted facts (each judged against the rest of the catalog)."""

    def __len__(self) -> int:
        return len(self.v_rows)

    @property
    def facts_checked(self) -> int:
        return int((self.rows.attribute != BRAND_CODE).sum())

    @property
    def brands_checked(self) -> int:
        return int((self.rows.attribute == BRAND_CODE).sum())

    @property
    def facts_flagged(self) -> int:
        """Facts (and brand facts) with at least one violation."""
        return int((self.status > 0).sum())

    def _key_arrays(self, keys: Sequence[str]) -> list[np.ndarray]:
        rows, k = self.v_rows, self.v_rules
        out = []
        for key in keys:
            if key == "rule":
                out.append(k.astype(np.int64))
            elif key == "type":
                types = sorted({c.rule.type for c in [self.ctx.builtin, *self.ctx.compiled]})
                tmap = np.array([types.index(self.ctx.compiled_rule(j).rule.type)
                                 for j in range(-1, len(self.ctx.compiled))])
                out.append(tmap[k + 1])
            elif key == "severity":
                sev = np.array([0 if self.ctx.compiled_rule(j).rule.severity == "review" else 1
                                for j in range(-1, len(self.ctx.compiled))])
                out.append(sev[k + 1])
            elif key == "category":
                out.append(self.rows.category[rows].astype(np.int64))
            elif key == "attribute":
                out.append(self.rows.attribute[rows].astype(np.int64))
            else:
                raise KBError(f"cannot group violations by {key!r}; valid: {', '.join(GROUP_KEYS)}")
        return out

    def _label(self, key: str, code: int) -> str:
        if key == "rule":
            return self.ctx.compiled_rule(code).rule.id
        if key == "type":
            return sorted({c.rule.type for c in [self.ctx.builtin, *self.ctx.compiled]})[code]
        if key == "severity":
            return ("review", "reject")[code]
        if key == "category":
            return self.ctx.catalog.categories[code] if code >= 0 else "(no category)"
        return "brand" if code == BRAND_CODE else self.ctx.attributes[code]

    def count_by(self, *keys: str) -> list[tuple[tuple[str, ...], int]]:
        """Violations counted per combination of ``keys`` (rule, type, severity, category, attribute),
        most first: ``report.count_by("rule", "category")``."""
        keys = keys or ("rule",)
        if not len(self):
            return []
        cols = self._key_arrays(keys)
        stacked = np.stack(cols, axis=1)
        uniq, counts = np.unique(stacked, axis=0, return_counts=True)
        out = [(tuple(self._label(k, int(c)) for k, c in zip(keys, u)), int(n))
               for u, n in zip(uniq.tolist(), counts.tolist())]
        out.sort(key=lambda kv: (-kv[1], kv[0]))
        return out

    def violation(self, j: int) -> Violation:
        i, k = int(self.v_rows[j]), int(self.v_rules[j])
        c = self.ctx.compiled_rule(k)
        f = self.ctx.row_fields(self.rows, i)
        return Violation(c.rule.id, c.rule.type, c.rule.severity, str(f["product"]), f["category"],
                         f["attribute"], str(f["value"]), c.message(self.rows, i))

    def __iter__(self) -> Iterator[Violation]:
        for j in range(len(self)):
            yield self.violation(j)

    def write(self, path: str | Path) -> Path:
        """Every violation to ``.jsonl`` or ``.csv`` (by the file's suffix)."""
        p = Path(path)
        fields = list(Violation.__dataclass_fields__)
        if p.suffix.lower() == ".csv":
            with p.open("w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(fields)
                for v in self:
                    w.writerow([getattr(v, f) for f in fields])
        elif p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            with p.open("w", encoding="utf-8") as fh:
                for v in self:
                    fh.write(json.dumps(asdict(v), ensure_ascii=False) + "\n")
        else:
            raise KBError(f"{p}: cannot tell the format from the suffix {p.suffix!r}; use .jsonl or .csv")
        return p


def validate(predictions: Predictions | Sequence[Mapping[str, Any]], context: Context | Catalog, *,
             rules: RuleSet | Iterable[Rule] | None = None) -> Verdicts:
    """Judge every prediction row: accept, needs_review or reject, with the rules that fired.

    ``context``: a :class:`Context` (a catalog with compiled rules; build it once for many batches) or
    a :class:`Catalog` (compiled here with ``rules``, default the shipped general rules). A row that
    breaks a ``reject`` rule is rejected; else one that breaks a ``review`` rule needs review. A
    prediction that contradicts an asserted fact (another value of a functional attribute, a value an
    asserted fact excludes, or that an asserted fact's implication forbids) breaks a rule, so it is
    never accepted.
    """
    if not isinstance(predictions, Predictions):
        predictions = Predictions.from_dicts(predictions)
    ctx = _context(context, rules)
    rows = ctx.rows_for(predictions)
    status, v_rows, v_rules = ctx.judge(rows)
    return Verdicts(ctx, rows, predictions, status, v_rows, v_rules)


def audit(context: Context | Catalog, *, rules: RuleSet | Iterable[Rule] | None = None,
          brands: bool = True) -> AuditReport:
    """Judge every asserted fact (and, with ``brands``, every product's brand) like a prediction of it,
    against the rest of the catalog."""
    ctx = _context(context, rules)
    rows = ctx.audit_rows(brands=brands)
    status, v_rows, v_rules = ctx.judge(rows)
    return AuditReport(ctx, rows, status, v_rows, v_rules)
