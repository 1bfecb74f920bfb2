"""The CRF extractor: one linear-chain CRF (python-crfsuite) per attribute, trained by distant supervision,
with a span-level calibrator fitted on validation products.

Per attribute, products whose asserted value is found in their text are B/I/O-tagged (at most
``max_sentences``, taken in one seeded product order shared by all attributes so that few documents are
ever tokenised), plus a share of products whose value is not found, all O (they teach "no span here").
An attribute gets a CRF only when at least ``min_located`` of its training values, and a share
``min_located_rate`` of those tried, are found: the choice is recorded in ``meta.json``.

Features per token: the token and its neighbours (case-folded), shapes, bigrams, prefixes and suffixes,
position in the title, whitespace before it, jieba word / part of speech / position in the word for CJK
text, measure mentions, and a dictionary match against the attribute's values *from training facts only*,
computed across two folds of products during training (``gazetteer_folds``) so the CRF learns to read
unseen values and not only to copy the dictionary.

Candidates per (product, attribute): the Viterbi spans and the spans that start at the most probable B
positions; their features (marginal of B, lowest I marginal, probability that the span stops, Viterbi or
not, resolves to a known value, in the title, the attribute's located rate) go to a logistic-regression
calibrator fitted on the validation products' asserted values (never test): ``Span.confidence``.

Saved as a directory (0700): ``meta.json`` (config, attributes, the training values per attribute, the
calibrator's coefficients, the choices made) and ``crf/<n>.crfsuite`` (the CRFsuite model files): no pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kb.units import norm_key

from .api import Span
from .resolve import Resolver, span_norm
from .supervision import BRAND, Doc, Example, Gazetteer, base_features, bio, locate, make_doc
from .text import is_cjk_char

FORMAT = 1


class ExtractError(Exception):
    """Root error of the extraction package: a bad model directory, bad input, a missing extra."""


def _crfsuite():
    try:
        import pycrfsuite
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ExtractError("extraction needs python-crfsuite: pip install 'attrgraph[ml]'") from e
    return pycrfsuite


@dataclass
class ExtractConfig:
    max_desc_tokens: int = 60  # description tokens read after the title
    min_located: int = 20  # training values found in text needed to train an attribute's CRF
    min_located_rate: float = 0.05  # ... and this share of the values tried
    max_sentences: int = 3000  # located training sentences per attribute (cost bound)
    negatives: float = 0.25  # not-located sentences (all O) added, relative to the located ones
    max_attributes: int = 400  # at most this many attributes get a CRF (the most located first)
    max_valid: int = 400  # validation products per attribute for the calibrator
    c1: float = 0.05
    c2: float = 0.01
    max_iterations: int = 200
    gazetteer: bool = True
    gazetteer_folds: str = "product"  # "product" | "value": how training hides a product's own value from it
    candidates: int = 4  # extra candidates from the most probable B positions
    seed: int = 0


@dataclass
class Candidate:
    doc: Doc
    attribute: str
    i: int
    j: int
    feats: list[float]


def _order(ids: Sequence[str], seed: int) -> list[int]:
    """A seeded order of products that does not depend on their position in the input."""
    h = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids]
    return sorted(range(len(ids)), key=lambda k: h[k])


def _fold(pid: str) -> int:
    return int(hashlib.sha256(pid.encode()).hexdigest()[:8], 16) % 2


class CrfExtractor:
    """Extracts attribute values from product texts. Build with :func:`train`, reload with :func:`load`."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.config = ExtractConfig(**meta["config"])
        self.attributes: list[str] = [a["name"] for a in meta["attributes"]]
        self._files = {a["name"]: a["file"] for a in meta["attributes"]}
        self._rate = {a["name"]: a["located_rate"] for a in meta["attributes"]}
        self.known: dict[str, list[str]] = meta["known"]
        self.model_id = meta["model_id"]
        self.calibrator = meta.get("calibrator")
        if self.calibrator and len(self.calibrator["coef"]) != N_FEATURES:
            raise ExtractError(f"{path}: the calibrator has {len(self.calibrator['coef'])} inputs, this version "
                               f"computes {N_FEATURES}: train the extractor again")
        self._taggers: dict[str, Any] = {}
        self._gaz: dict[str, Gazetteer] = {}
        self._res: dict[str, Resolver] = {}

    # -- pieces ---------------------------------------------------------------------------------------------
    def tagger(self, attribute: str) -> Any:
        t = self._taggers.get(attribute)
        if t is None:
            t = _crfsuite().Tagger()
            t.open(str(self.path / self._files[attribute]))
            self._taggers[attribute] = t
        return t

    def gazetteer(self, attribute: str) -> Gazetteer:
        if attribute not in self._gaz:
            self._gaz[attribute] = Gazetteer(self.known.get(attribute, ()))
        return self._gaz[attribute]

    def resolver(self, attribute: str) -> Resolver:
        if attribute not in self._res:
            self._res[attribute] = Resolver(self.known.get(attribute, ()))
        return self._res[attribute]

    def add_known(self, known: Mapping[str, Iterable[str]]) -> None:
        """Add values the graph holds now (display spellings per attribute): they resolve spans and feed
        the dictionary feature."""
        for a, vals in known.items():
            g, r = self.gazetteer(a), self.resolver(a)
            for v in vals:
                g.add(v)
                r.add(v)

    def doc(self, p: Any) -> Doc:
        return make_doc(str(p.id), getattr(p, "title", "") or "", getattr(p, "description", "") or "",
                        max_desc_tokens=self.config.max_desc_tokens)

    # -- prediction -----------------------------------------------------------------------------------------
    def candidates(self, doc: Doc, base: list[list[str]], attribute: str, gaz: Gazetteer | None = None) -> list[Candidate]:
        n = len(doc.tokens)
        if n == 0:
            return []
        g = (gaz or self.gazetteer(attribute)).features(doc) if self.config.gazetteer else None
        x = [b + g[k] for k, b in enumerate(base)] if g is not None else base
        t = self.tagger(attribute)
        t.set(x)
        vit = t.tag()
        labels = set(t.labels())  # a model whose values were all one token has no "I"
        pb = [t.marginal("B", k) for k in range(n)] if "B" in labels else [0.0] * n
        pi = [t.marginal("I", k) for k in range(n)] if "I" in labels else [0.0] * n
        spans: dict[tuple[int, int], bool] = {}
        k = 0
        while k < n:
            if vit[k] == "B" or (vit[k] == "I" and (k == 0 or vit[k - 1] == "O")):
                e = k + 1
                while e < n and vit[e] == "I" and doc.tokens[e].field == doc.tokens[k].field:
                    e += 1
                spans[(k, e)] = True
                k = e
            else:
                k += 1
        for s in sorted(range(n), key=lambda q: -pb[q])[: self.config.candidates]:
            if pb[s] < 0.01:
                break
            e = s + 1
            while e < n and pi[e] > 0.5 and doc.tokens[e].field == doc.tokens[s].field and e - s < 12:
                e += 1
            spans.setdefault((s, e), False)
        res = self.resolver(attribute)
        rate = self._rate.get(attribute, 0.0)
        out = []
        for (s, e), v in spans.items():
            pi_min = min(pi[s + 1:e], default=1.0)
            p_stop = 1.0 - (pi[e] if e < n else 0.0)
            score = pb[s] * pi_min * p_stop
            text = doc.span_text(s, e)[0]
            known = res.resolve(text)[0] is not None
            out.append(Candidate(doc, attribute, s, e, [
                _logit(score), _logit(pb[s]), _logit(pi_min), _logit(p_stop), float(v), float(known),
                float(doc.tokens[s].field == "title"), _logit(rate), math.log(e - s), float(known) * _logit(score),
                *_shape_features(doc, base, s, e)]))
        return out

    def _confidence(self, feats: np.ndarray) -> np.ndarray:
        c = self.calibrator
        if not c or len(feats) == 0:
            return 1 / (1 + np.exp(-feats[:, 0])) if len(feats) else np.zeros(0)
        z = feats @ np.asarray(c["coef"]) + c["intercept"]
        return 1 / (1 + np.exp(-z))

    def predict(self, products: Sequence[Any], attributes: Sequence[str] | None = None, top_k: int = 1,
                known: Mapping[str, Iterable[str]] | None = None) -> list[Span]:
        """Up to ``top_k`` spans per (product, attribute), best first; ``attributes`` default: all it can
        extract (others are ignored). ``known``: the graph's current values, added before predicting."""
        attrs = list(self.attributes if attributes is None else [a for a in attributes if a in self._files])
        return self.predict_slots(products, {str(p.id): attrs for p in products}, top_k=top_k, known=known)

    def predict_slots(self, products: Sequence[Any], slots: Mapping[str, Sequence[str]], top_k: int = 1,
                      known: Mapping[str, Iterable[str]] | None = None) -> list[Span]:
        """Like :meth:`predict` with the attributes to read chosen per product id (e.g. its missing slots)."""
        if known:  # for this call only: the model's own dictionaries stay as trained (add_known changes them)
            saved = self._gaz, self._res
            self._gaz, self._res = {}, {}
            try:
                self.add_known(known)
                return self.predict_slots(products, slots, top_k=top_k)
            finally:
                self._gaz, self._res = saved
        spans: list[Span] = []
        for p in products:
            attrs = [a for a in slots.get(str(p.id), ()) if a in self._files]
            if not attrs:
                continue
            doc = self.doc(p)
            if not doc.tokens:
                continue
            base = base_features(doc)
            for a in attrs:
                spans.extend(self._spans(doc, self.candidates(doc, base, a), top_k))
        support = Counter((s.attribute, s.norm) for s in spans)
        return [Span(**{**s.__dict__, "support": support[(s.attribute, s.norm)]}) for s in spans]

    def _spans(self, doc: Doc, cands: list[Candidate], top_k: int) -> list[Span]:
        if not cands:
            return []
        conf = self._confidence(np.array([c.feats for c in cands], dtype=np.float64))
        out: list[Span] = []
        seen: set[str] = set()
        for k in np.argsort(-conf, kind="stable"):
            c = cands[int(k)]
            text, fld, start, end = doc.span_text(c.i, c.j)
            norm, q, unit = span_norm(text)
            if not norm or norm in seen:
                continue
            seen.add(norm)
            value, alias = self.resolver(c.attribute).resolve(text)
            out.append(Span(doc.id, c.attribute, text, fld, start, end, float(conf[k]), norm, value, alias, q, unit,
                            self.model_id))
            if len(out) >= top_k:
                break
        return out

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Copy the model to ``path`` (a 0700 directory)."""
        import shutil

        from graph.settings import private_dir

        out = private_dir(path)
        if out.resolve() != self.path.resolve():
            private_dir(out / "crf")
            for f in self._files.values():
                shutil.copyfile(self.path / f, out / f)
            _write_meta(out, self.meta)
        return out


N_FEATURES = 16  # candidate features (the calibrator's inputs)


def _shape_features(doc: Doc, base: list[list[str]], s: int, e: int) -> list[float]:
    """Where and what the span is: at the title's start, its position, its length in characters, all CJK or
    all Latin, and whether its ends fall on jieba word boundaries (CJK; words are always aligned)."""
    toks = doc.tokens
    text = doc.span_text(s, e)[0]
    cjk = [t.text for t in toks[s:e] if is_cjk_char(t.text)]
    start_ok = "jb=M" not in base[s] and "jb=E" not in base[s]
    end_ok = "jb=M" not in base[e - 1] and "jb=B" not in base[e - 1]
    return [float(s == 0), math.log1p(s), math.log(len(text) + 1), float(len(cjk) == e - s),
            float(not cjk and text.isascii()), float(start_ok and end_ok)]


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _write_meta(out: Path, meta: dict[str, Any]) -> None:
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, out / "meta.json")


def load(path: str | Path) -> CrfExtractor:
    """A saved extractor (a directory written by :func:`train` or :meth:`CrfExtractor.save`)."""
    p = Path(path)
    mf = p / "meta.json"
    if not mf.exists():
        raise ExtractError(f"{p}: not an extractor (no meta.json); train one with `attrgraph extract train`")
    try:
        meta = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ExtractError(f"{mf}: not valid JSON (line {e.lineno}): {e.msg}") from None
    if meta.get("format") != FORMAT:
        raise ExtractError(f"{mf}: extractor format {meta.get('format')!r} is not supported (expected {FORMAT})")
    for a in meta["attributes"]:
        f = p / a["file"]
        if not f.is_file() or Path(a["file"]).is_absolute() or ".." in Path(a["file"]).parts:
            raise ExtractError(f"{mf}: attribute {a['name']!r}: model file {a['file']!r} is missing or outside the model")
        if hashlib.sha256(f.read_bytes()).hexdigest() != a["sha256"]:
            raise ExtractError(f"{f}: checksum differs from meta.json (changed or truncated)")
    return CrfExtractor(p, meta)


# -- training -----------------------------------------------------------------------------------------------------
def train(examples: Sequence[Example], out_dir: str | Path, *, valid: Sequence[Example] | None = None,
          config: ExtractConfig | None = None, attributes: Sequence[str] | None = None,
          progress: Callable[[str], None] | None = None) -> CrfExtractor:
    """Train an extractor on ``examples`` (their asserted facts) and calibrate it on ``valid`` (default: a
    seeded 10% of the examples' products, taken out of training). Writes ``out_dir`` and returns the model."""
    from graph.settings import private_dir

    cfg = config or ExtractConfig()
    if cfg.gazetteer_folds not in ("product", "value"):
        raise ExtractError(f"gazetteer_folds must be 'product' or 'value', got {cfg.gazetteer_folds!r}")
    say = progress or (lambda s: None)
    crf = _crfsuite()
    examples = list(examples)
    if valid is None:
        order = _order([e.id for e in examples], cfg.seed + 1)
        cut = max(1, len(examples) // 10) if len(examples) >= 20 else 0
        vset = set(order[:cut])
        valid = [examples[k] for k in sorted(vset)]
        examples = [examples[k] for k in range(len(examples)) if k not in vset]
    out = private_dir(out_dir)
    private_dir(out / "crf")
    t0 = time.perf_counter()
    names = sorted({a for e in examples for a in e.facts if e.facts[a]})
    if attributes is not None:
        names = [a for a in names if a in set(attributes)]
    order = _order([e.id for e in examples], cfg.seed)
    docs: dict[int, Doc] = {}
    feats: dict[int, list[list[str]]] = {}

    def doc_of(k: int) -> Doc:
        d = docs.get(k)
        if d is None:
            e = examples[k]
            d = docs[k] = make_doc(e.id, e.title, e.description, max_desc_tokens=cfg.max_desc_tokens)
        return d

    def feats_of(k: int) -> list[list[str]]:
        f = feats.get(k)
        if f is None:
            f = feats[k] = base_features(doc_of(k))
        return f

    known: dict[str, list[str]] = {}
    for e in examples:
        for a, vals in e.facts.items():
            known.setdefault(a, [])
            known[a].extend(vals)
    known = {a: list(dict.fromkeys(v)) for a, v in known.items()}

    # pass 1: locate values per attribute in the shared product order
    plans: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for a in names:
        located: list[tuple[int, list[tuple[int, int]]]] = []
        missed: list[int] = []
        tried = 0
        for k in order:
            vals = examples[k].facts.get(a)
            if not vals:
                continue
            tried += 1
            r = locate(doc_of(k), vals)
            if r:
                located.append((k, r))
            else:
                missed.append(k)
            if len(located) >= cfg.max_sentences or tried >= 4 * cfg.max_sentences:
                break
        rate = len(located) / max(tried, 1)
        if len(located) < cfg.min_located or rate < cfg.min_located_rate:
            skipped[a] = f"{len(located)} of {tried} values found in text"
            continue
        plans.append({"name": a, "located": located, "missed": missed, "rate": rate, "tried": tried})
    plans.sort(key=lambda p: -len(p["located"]))
    for p in plans[cfg.max_attributes:]:
        skipped[p["name"]] = f"beyond max_attributes={cfg.max_attributes}"
    plans = plans[: cfg.max_attributes]
    say(f"{len(plans)} attributes to train, {len(skipped)} skipped ({time.perf_counter() - t0:.1f} s)")

    # pass 2: one CRF per attribute
    rng = np.random.default_rng(cfg.seed)
    attrs_meta: list[dict[str, Any]] = []
    for n, p in enumerate(plans):
        a = p["name"]
        t1 = time.perf_counter()
        sents = [(k, bio(len(doc_of(k).tokens), r)) for k, r in p["located"]]
        n_neg = min(len(p["missed"]), int(round(cfg.negatives * len(sents))))
        if n_neg:
            for k in rng.choice(p["missed"], size=n_neg, replace=False).tolist():
                sents.append((k, ["O"] * len(doc_of(k).tokens)))
        gaz = None
        by_value = cfg.gazetteer_folds == "value"

        def fold_of(k: int) -> int:
            return _fold(norm_key(examples[k].facts[a][0])) if by_value else _fold(examples[k].id)

        if cfg.gazetteer:
            # two folds: a product sees the dictionary of the other fold's located values. By product (default):
            # a value shared by products of both folds does mark; by value: a product's own value never does
            # (measured: on Taobao the CRF then learns that a dictionary match is *not* the brand, 0.57 exact
            # on test against 0.69 by product)
            vals_by_fold: list[set[str]] = [set(), set()]
            for k, r in p["located"]:
                d = doc_of(k)
                for i, j in r:
                    vals_by_fold[fold_of(k)].add(d.span_text(i, j)[0])
            gaz = [Gazetteer(vals_by_fold[1]), Gazetteer(vals_by_fold[0])]
        tr = crf.Trainer(verbose=False)
        for k, y in sents:
            if not y:
                continue
            base = feats_of(k)
            if gaz is not None:
                g = gaz[fold_of(k)].features(doc_of(k))
                base = [b + g[q] for q, b in enumerate(base)]
            tr.append(base, y)
        tr.set_params({"c1": cfg.c1, "c2": cfg.c2, "max_iterations": cfg.max_iterations,
                       "feature.possible_transitions": True})
        rel = f"crf/{n}.crfsuite"
        tr.train(str(out / rel))
        attrs_meta.append({"name": a, "file": rel, "sha256": hashlib.sha256((out / rel).read_bytes()).hexdigest(),
                           "located": len(p["located"]), "tried": p["tried"], "located_rate": round(p["rate"], 4),
                           "negatives": n_neg, "seconds": round(time.perf_counter() - t1, 2)})
        say(f"[{n + 1}/{len(plans)}] {a}: {len(p['located'])} located of {p['tried']}, "
            f"{time.perf_counter() - t1:.1f} s")
        if len(feats) > 20000:  # bound memory on large catalogs
            feats.clear()
    train_s = time.perf_counter() - t0
    model_id = "crf-" + hashlib.sha256(json.dumps(attrs_meta, sort_keys=True).encode()).hexdigest()[:12]
    meta = {"format": FORMAT, "model_id": model_id, "config": asdict(cfg), "attributes": attrs_meta,
            "skipped": skipped, "known": {a: known[a] for a in known}, "calibrator": None,
            "train_products": len(examples), "valid_products": len(valid), "train_seconds": round(train_s, 2)}
    _write_meta(out, meta)
    model = CrfExtractor(out, meta)
    # pass 3: the span calibrator on validation products (their asserted values; never test)
    t2 = time.perf_counter()
    X, y = calibration_rows(model, valid)
    meta["calibrator"] = fit_calibrator(X, y)
    meta["calibration_rows"] = int(len(y))
    meta["calibrate_seconds"] = round(time.perf_counter() - t2, 2)
    _write_meta(out, meta)
    say(f"calibrated on {len(y)} validation candidates ({time.perf_counter() - t2:.1f} s)")
    return CrfExtractor(out, meta)


def calibration_rows(model: CrfExtractor, valid: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate features and labels (the candidate is an asserted value of the slot) of validation products."""
    cfg = model.config
    order = _order([e.id for e in valid], cfg.seed + 2)
    count: Counter[str] = Counter()
    X: list[list[float]] = []
    y: list[int] = []
    attrs = set(model.attributes)
    for k in order:
        e = valid[k]
        todo = [a for a, v in e.facts.items() if v and a in attrs and count[a] < cfg.max_valid]
        if not todo:
            continue
        doc = model.doc(e)
        if not doc.tokens:
            continue
        base = base_features(doc)
        for a in todo:
            count[a] += 1
            truth = {span_norm(v)[0] for v in e.facts[a]}
            for c in model.candidates(doc, base, a):
                text = doc.span_text(c.i, c.j)[0]
                norm = span_norm(text)[0]
                resolved = model.resolver(a).resolve(text)[0]
                ok = norm in truth or (resolved is not None and span_norm(resolved)[0] in truth)
                X.append(c.feats)
                y.append(int(ok))
    return np.array(X, dtype=np.float64).reshape(-1, N_FEATURES), np.array(y, dtype=np.int64)


def fit_calibrator(X: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """Logistic regression of "the candidate is the slot's value" on the candidate features (Platt scaling
    with a few more inputs); None when validation has too few rows or one class only."""
    if len(y) < 20 or y.min() == y.max():
        return None
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit(X, y)
    return {"coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0]), "rows": int(len(y)),
            "positives": int(y.sum())}
