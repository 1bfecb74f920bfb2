"""Open-world candidates: extracted spans beside the model's ranked known values, for ``predict`` and
``complete``.

The extractor (``extract``, built elsewhere) reads product titles and descriptions and returns
:class:`extract.api.Span`\\ s. This module joins them to the model's slots and decides, per slot, one
ranked list of candidates (:func:`combine_slot`, the one seam to the extractor's own combiner), and
turns the chosen new values into proposals for the graph (``graph.proposals``).

A candidate dict is the shape of ``gnn.completion.Candidates.slots``: ``{"value", "norm", "p"}``, plus,
for an extracted one, ``"new": True`` (a value the graph does not hold) or ``"extracted": True`` (a known
value a span named), ``"evidence": {"field", "start", "end", "text", "confidence", "model"}`` and, for a
near match, ``"alias": {"text", "norm"}``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kb.units import clean, norm_key

BRAND = "@brand"


class OpenWorldError(Exception):
    """The extractor cannot be loaded or returned something unusable (the message says what)."""


@dataclass(frozen=True)
class ProductText:
    """What the extractor reads (``extract.api.ProductText``)."""

    id: str
    title: str
    description: str


def graph_attribute(span_attribute: str) -> str:
    """The graph's name of a span's attribute: the extractor's brand slot ``"brand"`` is ``"@brand"``."""
    return BRAND if span_attribute in ("brand", BRAND) else span_attribute


def extractor_attribute(attribute: str) -> str:
    return "brand" if attribute == BRAND else attribute


def load_extractor(path: str) -> Any:
    """``extract.load(path)``: a saved extractor (``extract.api.Extractor``)."""
    try:
        import extract
    except ImportError as e:  # pragma: no cover - the package ships with attrgraph
        raise OpenWorldError(f"cannot import the extract package: {e}") from None
    loader = getattr(extract, "load", None)
    if loader is None:
        raise OpenWorldError(f"extractor {path!r}: this installation's extract package has no load() "
                             "(no extractor has been built into it yet)")
    try:
        return loader(path)
    except FileNotFoundError as e:
        raise OpenWorldError(f"extractor {path!r}: {e}") from None


def product_texts(snap: Any, products: Iterable[int]) -> list[ProductText]:
    recs = snap.nodes["product"]
    return [ProductText(recs[int(p)]["key"], recs[int(p)].get("title") or "", recs[int(p)].get("description") or "")
            for p in products]


def known_values(snap: Any) -> dict[str, list[str]]:
    """The graph's values per attribute (display forms; brands by name, under the extractor's ``"brand"``): what
    an extractor resolves spans against, so that a value added to the graph after it was trained is not new."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in snap.nodes["value"]:
        out[r["attribute"]].append(r.get("value") or r["norm"])
    out["brand"] = [r.get("name") or r["key"] for r in snap.nodes["brand"]]
    return dict(out)


def _accepts(fn: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def extract_spans(extractor: Any, texts: Sequence[ProductText], attributes: Sequence[str] | None = None, *,
                  top_k: int = 1, slots: dict[str, Sequence[str]] | None = None,
                  known: dict[str, list[str]] | None = None) -> dict[tuple[str, str], list[Any]]:
    """Spans per (product id, graph attribute), best first. ``attributes`` in the graph's names; ``slots``
    (product id -> graph attributes) reads only those slots when the extractor can (``predict_slots``);
    ``known`` (:func:`known_values`) is passed to an extractor that takes it."""
    want = None if attributes is None else [extractor_attribute(a) for a in attributes]
    have = getattr(extractor, "attributes", None)
    if want is not None and have is not None:
        want = [a for a in want if a in set(have)]
        if not want:
            return {}
    kw: dict[str, Any] = {"top_k": top_k}
    if slots is not None and hasattr(extractor, "predict_slots"):
        fn = extractor.predict_slots
        ok = set(want) if want is not None else None
        args: tuple[Any, ...] = (list(texts), {p: [x for x in map(extractor_attribute, a) if ok is None or x in ok]
                                               for p, a in slots.items()})
    else:
        fn = extractor.predict
        args = (list(texts),)
        kw["attributes"] = want
    if known is not None and _accepts(fn, "known"):
        kw["known"] = known
    spans = fn(*args, **kw)
    by_id = {t.id: t for t in texts}
    out: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for s in spans:
        t = by_id.get(s.product_id)
        if t is None:
            raise OpenWorldError(f"the extractor returned a span for product {s.product_id!r}, which it was not given")
        field = t.title if s.field == "title" else t.description if s.field == "description" else None
        if field is None or field[s.start:s.end] != s.text:
            raise OpenWorldError(f"the extractor's span {s.text!r} of product {s.product_id!r} is not at "
                                 f"{s.field}[{s.start}:{s.end}]")
        out[(s.product_id, graph_attribute(s.attribute))].append(s)
    for v in out.values():
        v.sort(key=lambda s: -s.confidence)
    return dict(out)


def _evidence(s: Any) -> dict[str, Any]:
    return {"field": s.field, "start": int(s.start), "end": int(s.end), "text": s.text,
            "confidence": round(float(s.confidence), 4), "model": s.model}


def combine_slot(candidates: list[dict[str, Any]], spans: Sequence[Any], *, threshold: float | None = None,
                 stacker: Any = None) -> list[dict[str, Any]]:
    """One ranked candidate list for a slot, from the model's known values and the extractor's spans.

    THE seam: when the extract package has ``combine(known, spans)`` (``known``: the model's ranking as
    ``[(display, p)]``; it returns ``extract.combine.Choice``\\ s: value, norm, p, new, span), it decides, and
    :func:`_from_choices` turns its answer into candidate dicts; ``stacker`` (the extractor's fitted
    ``extract.Stacker``, fitted on validation slots) is passed on. Without a fitted stacker no rule may
    merge the two probabilities (a noisy-or of two calibrated sources is not calibrated: it stated
    p = 0.9998 for known brands a span agreed with), so each candidate keeps the probability of the source
    that ranked it:

    * a span that resolves to a known value (``Span.value``) is evidence for that value, which keeps the
      model's calibrated probability (a value the model did not rank enters with the span's confidence);
      the candidate carries the span as evidence (and an ``alias`` when it resolved by a near match);
    * a new span (``Span.value is None``) is a candidate of its own, ``"new": True``, with the
      extractor's calibrated confidence as its probability;

    then best first. Only the model's top-1 probability is calibrated by the model; an extracted
    candidate's is the extractor's."""
    try:
        import extract
    except ImportError:  # pragma: no cover
        extract = None  # type: ignore[assignment]
    ext = getattr(extract, "combine", None) if extract is not None else None
    fitted = stacker is not None and getattr(stacker, "coef", None) is not None
    if callable(ext) and fitted:  # a combiner fitted on validation slots states one calibrated probability
        known = [(c["value"], float(c["p"])) for c in candidates]
        choices = ext(known, list(spans)) if stacker is None else ext(known, list(spans), stacker=stacker)
        return _from_choices(candidates, choices)
    out = [dict(c) for c in candidates]
    by_norm = {c["norm"]: c for c in out}
    for s in spans:
        if s.value is not None:
            n = norm_key(s.value)
            c = by_norm.get(n)
            if c is None:
                c = by_norm[n] = {"value": clean(s.value), "norm": n, "p": 0.0}
                out.append(c)
            if "evidence" in c:  # one span per value counts (the best: spans come best first)
                continue
            if not float(c["p"]):  # a value the model did not rank enters with the span's confidence
                c["p"] = float(s.confidence)
            c["extracted"] = True
            c["evidence"] = _evidence(s)
            if s.alias:
                c["alias"] = {"text": s.text, "norm": norm_key(s.text)}
        else:
            n = s.norm or norm_key(s.text)
            if n in by_norm:  # the same new string twice (title and description): keep the best
                continue
            c = by_norm[n] = {"value": clean(s.text), "norm": n, "p": float(s.confidence), "new": True,
                              "evidence": _evidence(s)}
            if s.quantity is not None and s.unit:
                c["quantity"], c["unit"] = float(s.quantity), s.unit
            out.append(c)
    out.sort(key=lambda c: -float(c["p"]))
    return out


def _from_choices(candidates: list[dict[str, Any]], choices: Iterable[Any]) -> list[dict[str, Any]]:
    """``extract.combine``'s ``Choice``\\ s (value, norm, p, new, span) as candidate dicts, best first; a known
    value keeps the model's norm (a brand's key) and display."""
    by_value = {c["value"]: c for c in candidates}
    by_norm = {c["norm"]: c for c in candidates}
    out = []
    for ch in choices:
        if isinstance(ch, dict):
            out.append(ch)
            continue
        base = None if ch.new else (by_value.get(ch.value) or by_norm.get(ch.norm))
        d = dict(base) if base is not None else {"value": clean(ch.value), "norm": ch.norm}
        d["p"] = float(ch.p)
        s = getattr(ch, "span", None)
        if ch.new:
            d["new"] = True
        if s is not None:
            d["evidence"] = _evidence(s)
            if not ch.new:
                d["extracted"] = True
                if s.alias:
                    d["alias"] = {"text": s.text, "norm": norm_key(s.text)}
            elif s.quantity is not None and s.unit:
                d["quantity"], d["unit"] = float(s.quantity), s.unit
        out.append(d)
    out.sort(key=lambda c: -float(c["p"]))
    return out


def with_spans(slots: list[dict[str, Any]], spans: dict[tuple[str, str], list[Any]], *, stacker: Any = None
               ) -> list[dict[str, Any]]:
    """The model's slots (``Candidates.slots``) with each slot's spans combined in (:func:`combine_slot`).
    Spans of slots the model did not rank (asserted, or not applicable) are left out."""
    out = []
    for s in slots:
        sp = spans.get((s["product"], s["attribute"]))
        if sp:
            s = {**s, "candidates": combine_slot(s["candidates"], sp, threshold=s.get("threshold"), stacker=stacker)}
        out.append(s)
    return out


def alias_spans(spans: dict[tuple[str, str], list[Any]]) -> list[tuple[str, Any]]:
    """(graph attribute, span) of every span that resolved to a known value by a near match."""
    return [(a, s) for (_, a), ss in spans.items() for s in ss if s.value is not None and s.alias]


def jsonable(c: dict[str, Any]) -> dict[str, Any]:
    """A candidate as printed by ``predict``: ``new`` is always there for extracted ones."""
    out = {k: v for k, v in c.items() if k != "span"}
    if "evidence" in c:
        out.setdefault("new", bool(c.get("new", False)))
    return out


# -- evidence and proposals of a completion run ------------------------------------------------------------
def span_evidence(product: str, ev: dict[str, Any]) -> Any:
    """A candidate's ``evidence`` as :class:`graph.proposals.SpanEvidence`."""
    from graph.proposals import SpanEvidence

    return SpanEvidence(product, ev["field"], int(ev["start"]), int(ev["end"]), ev["text"], ev.get("confidence"),
                        ev.get("model") or "")


def span_context(record: dict[str, Any], ev: dict[str, Any], width: int = 40) -> str:
    """The span in its field of the product ``record``, ``width`` characters either side (the stored
    ``text_evidence``)."""
    text = record.get(ev["field"]) or ""
    lo, hi = max(0, int(ev["start"]) - width), min(len(text), int(ev["end"]) + width)
    return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")


def proposals_of(chosen: Sequence[Any], spans: dict[tuple[str, str], list[Any]]) -> tuple[list[Any], list[Any]]:
    """A run's proposals -- the chosen candidates new to the graph (``attrgraph.complete.Chosen``), one row per
    (attribute, norm) with its support: the products it was chosen for -- and aliases: spans that resolved
    to a known value by a near match."""
    from graph.proposals import AliasRow, ProposalRow

    first: dict[tuple[str, str], Any] = {}
    support: Counter = Counter()
    for c in chosen:
        if not c.cand.get("new"):
            continue
        k = (c.slot["attribute"], c.cand["norm"])
        support[k] += 1
        first.setdefault(k, c)
    props = []
    for k, c in first.items():
        ev = c.cand["evidence"]
        props.append(ProposalRow(k[0], k[1], c.cand["value"], span_evidence(c.slot["product"], ev),
                                 ev.get("model") or "", support[k], c.cand.get("quantity"), c.cand.get("unit")))
    aliases: dict[tuple[str, str], Any] = {}
    for a, s in alias_spans(spans):
        n = norm_key(s.text)
        if n == norm_key(s.value):
            continue
        ev = {"field": s.field, "start": s.start, "end": s.end, "text": s.text, "confidence": s.confidence,
              "model": s.model}
        aliases.setdefault((a, n), AliasRow(a, n, s.text, norm_key(s.value), span_evidence(s.product_id, ev), s.model))
    return props, list(aliases.values())


__all__ = ["BRAND", "OpenWorldError", "ProductText", "alias_spans", "combine_slot", "extract_spans",
           "extractor_attribute", "graph_attribute", "jsonable", "load_extractor", "product_texts", "proposals_of",
           "span_context", "span_evidence", "with_spans"]
