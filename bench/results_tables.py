"""The README's measured figures, rendered from the benchmarks' recorded results (never typed by hand).

    .venv/bin/python bench/results_tables.py [--block NAME ...] [--results DIR] [--write-readme] [--check]

Each block is rendered from the latest suitable record(s) of one ``bench/results/*.jsonl`` file (the one its
``bench/bench_*.py`` appends to) and names its source file, the record's date and commit:

===================  =====================================================================================
``completion``       completion.jsonl: the methods on Myntra; each row the latest record on the latest
                     record's snapshot and split that has the method (``METHODS``)
``completion-attributes``  the same rows, per attribute with at least ``MIN_ATTRIBUTE_PAIRS`` test pairs
``ceiling``          ceiling.jsonl: the latest oracle over methods, consensus errors and confusions
``learning-curve``   ceiling.jsonl: the latest learning curve of the TF-IDF baseline and its fitted curve
``label-noise``      label_noise.jsonl: the error floor of identical inputs / identical titles
``gnn-cost``         gnn_cost.jsonl: the latest cost record (and the latest one over several catalog sizes)
``text-speed``       text.jsonl: the latest run of bench_text.py, and the latest run of each encoder it lacks
``text-quality``     text_quality.jsonl: per catalog, the latest record
``kge``              kge.jsonl: the latest record
``kb``               kb.jsonl: the latest record
``spark``            spark.jsonl: per catalog, the latest local vs Spark completion (bench_spark.py)
===================  =====================================================================================

Markers in README.md: ``<!-- results:NAME:begin -->`` ... ``<!-- results:NAME:end -->``. ``--write-readme``
replaces every block's content (``bench/catalogs_table.py``'s ``write_readme``); ``--check`` exits non-zero
when a block of the README differs from what this renders now (a hand edit inside a block, or a new record
not yet rendered). Without either it prints the blocks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.catalogs_table import _s, _table, write_readme  # noqa: E402

RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
SCRIPT = "`bench/results_tables.py`"

# the completion table's rows: method name in completion.jsonl -> label
METHODS: dict[str, str] = {
    "majority": "majority per (category, attribute)",
    "tfidf": "TF-IDF + logistic regression",
    "tfidf-props": "TF-IDF + property tokens + LR (`tfidf-props`)",
    "kge": "PyKEEN {model} alone",
    "text-mlp": "text features without the GNN (`text-mlp`)",
    "gnn-notext": "GNN without text",
    "gnn-nochars": "GNN without title character n-grams",
    "gnn": "**GNN (default)**",
}
# per-attribute table: attributes with at least this many test pairs, these methods
MIN_ATTRIBUTE_PAIRS = 1000
ATTRIBUTE_METHODS = ["tfidf", "tfidf-props", "gnn-nochars", "text-mlp", "gnn"]
# the design's margins over the TF-IDF baseline (a target, not a measurement): overall, value not in text
DESIGN_MARGIN = (0.03, 0.05)
TOP_CONFUSIONS = 8


def marker(name: str) -> tuple[str, str]:
    return f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"


# ---------------------------------------------------------------------------------------------- helpers

def records(name: str, results: Path = RESULTS, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Every record of ``results/name`` in file order (the latest last); none for a missing file with
    ``missing_ok``."""
    path = results / name
    if not path.exists():
        if missing_ok:
            return []
        raise SystemExit(f"{path}: no recorded results")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def latest_with(name: str, key: str, results: Path = RESULTS) -> dict[str, Any]:
    """The latest record of ``results/name`` that has ``key``."""
    recs = [r for r in records(name, results) if key in r]
    if not recs:
        raise SystemExit(f"{name}: no record with {key!r}")
    return recs[-1]


def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)




def _pct(x: float, nd: int = 1) -> str:
    return f"{100 * x:.{nd}f}%"


def _pts(x: float) -> str:
    """A difference of two shares in percentage points, signed."""
    return f"{100 * x:+.2f}"


def _when(rec: dict[str, Any]) -> str:
    return rec["when"][:16].replace("T", " ") + " UTC"


def _commit(rec: dict[str, Any]) -> str:
    dirty = rec.get("uncommitted_changes")
    return f"`{rec.get('commit', 'unknown')}`" + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")


def _source(file: str, recs: list[dict[str, Any]]) -> str:
    """'From `bench/results/file`, record of DATE (commit C)[, ...]'."""
    seen: list[tuple[str, str]] = []
    for r in recs:
        k = (_when(r), _commit(r))
        if k not in seen:
            seen.append(k)
    what = "; ".join(f"{w} (commit {c})" for w, c in seen)
    return f"Rendered by {SCRIPT} from `bench/results/{file}`, record{'s' if len(seen) > 1 else ''} of {what}"


def _bold_max(rows: list[list[str]], cols: list[int]) -> None:
    """Bold, in each of ``cols``, the cells showing the column's largest figure (ties included)."""
    for c in cols:
        vals = []
        for r in rows:
            try:
                vals.append(float(r[c].split(" ")[0].replace(",", "")))
            except ValueError:
                vals.append(float("nan"))
        finite = [v for v in vals if math.isfinite(v)]
        if not finite:
            continue
        top = max(finite)
        for r, v in zip(rows, vals):
            if v == top:
                r[c] = f"**{r[c]}**"


def _frac(f: float) -> str:
    q = Fraction(f).limit_denominator(64)
    return "all" if q == 1 else f"{q.numerator}/{q.denominator}"


# ------------------------------------------------------------------------------------------- completion

def completion_selection(recs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(method, record, method figures) for each of ``METHODS`` that a record on the latest record's
    snapshot and split holds without error: the latest such record."""
    latest = recs[-1]
    same = [r for r in recs if r.get("fingerprint") == latest.get("fingerprint") and r.get("split") == latest.get("split")]
    out = []
    for m in METHODS:
        for r in reversed(same):
            fig = r.get("methods", {}).get(m)
            if fig and "error" not in fig and "test" in fig:
                out.append((m, r, fig))
                break
    return out


def _label(m: str, fig: dict[str, Any]) -> str:
    return METHODS[m].format(model=fig.get("config", {}).get("model", "KGE"))


def _hits(fig: dict[str, Any], part: str = "test") -> float:
    return fig[part]["hits@1"]


def completion_block(results: Path = RESULTS) -> str:
    recs = records("completion.jsonl", results)
    sel = completion_selection(recs)
    if not sel:
        raise SystemExit("completion.jsonl: no method of METHODS in the latest record's snapshot and split")
    latest = recs[-1]
    sp = latest["split"]
    tp = latest.get("target_precision", 0.98)
    cal = latest.get("calibration", "—")
    header = ["method", "run", "Hits@1", "Hits@1, value not in text", "MRR", f"ECE ({cal})",
              f"coverage@{tp:g} (test curve)", "precision / coverage, thresholds chosen on valid",
              "cold-start Hits@1", "epochs (best)", "fit s"]
    rows = []
    for m, r, fig in sel:
        t, nt = fig["test"], fig.get("test_value_not_in_text", {})
        ab = t.get("abstention") or {}
        ep = fig.get("epochs_run")
        rows.append([_label(m, fig), f"{r['when'][:10]} `{r.get('commit', '?')}`", _f(t.get("hits@1")),
                     _f(nt.get("hits@1")), _f(t.get("mrr")), _f(t.get("ece")), _f(t.get(f"coverage@{tp:g}", t.get("coverage@0.98"))),
                     f"{_f(ab.get('precision'))} / {_f(ab.get('coverage'))}", _f(fig.get("cold", {}).get("hits@1")),
                     f"{ep} ({fig.get('best_epoch') + 1})" if ep is not None and fig.get("best_epoch") is not None else "—",
                     _s(fig.get("fit_seconds"))])
    _bold_max(rows, [2, 3, 4, 6, 8])
    budgets = sorted({fig["config"]["max_seconds"] for m, _, fig in sel if "max_seconds" in fig.get("config", {})})
    runs = [r for _, r, _ in sel]
    lines = [
        f"{_source('completion.jsonl', runs)}. Each row is the latest record on one snapshot and split "
        f"(fingerprint `{latest.get('fingerprint', '?')[:12]}`) that has the method: {latest['products']:,} products; "
        f"split seed {sp['seed']}: {sp['train_pairs']:,} / {sp['valid_pairs']:,} / {sp['test_pairs']:,} train / valid / "
        f"test pairs ({' / '.join(f'{x:g}' for x in sp['fractions'])} of the other products' pairs) and "
        f"{sp['cold_products']:,} cold-start products ({sp['cold_pairs']:,} pairs); "
        f"{_pct(latest['test_value_in_text'])} of the test pairs have their value in the product's text; "
        f"{latest['threads']} threads" + (f"; the GNN variants ran with `max_seconds` {', '.join(f'{b:g}' for b in budgets)}"
                                          if budgets else "") + ". Epochs counted from 1.",
        "",
        _table(header, rows),
    ]
    by = {m: fig for m, _, fig in sel}
    diffs = []
    if "gnn" in by:
        g = by["gnn"]
        for other in ("tfidf", "tfidf-props", "text-mlp"):
            if other in by:
                o = by[other]
                diffs.append(f"GNN − `{other}`: {_pts(_hits(g) - _hits(o))} points Hits@1, "
                             f"{_pts(_hits(g, 'test_value_not_in_text') - _hits(o, 'test_value_not_in_text'))} on ¬text")
    if "gnn-notext" in by and "majority" in by:
        diffs.append(f"GNN without text − majority: {_pts(_hits(by['gnn-notext']) - _hits(by['majority']))} points Hits@1")
    eces = [fig["test"]["ece"] for _, _, fig in sel if fig["test"].get("ece") is not None]
    if eces:
        diffs.append(f"largest test ECE in the table: {_f(max(eces))}")
    if diffs:
        lines += ["", "; ".join(diffs) + "."]
    return "\n".join(lines)


def completion_attributes_block(results: Path = RESULTS) -> str:
    recs = records("completion.jsonl", results)
    sel = {m: (r, fig) for m, r, fig in completion_selection(recs)}
    methods = [m for m in ATTRIBUTE_METHODS if m in sel and sel[m][1].get("per_attribute")]
    if not methods:
        raise SystemExit("completion.jsonl: no per-attribute figures")
    ref = sel["gnn"][1]["per_attribute"] if "gnn" in sel else sel[methods[-1]][1]["per_attribute"]
    attrs = sorted((a for a, v in ref.items() if v.get("count", 0) >= MIN_ATTRIBUTE_PAIRS), key=lambda a: -ref[a]["count"])
    gain = "gnn" in methods and "tfidf" in methods
    header = ["attribute", "test pairs"] + [f"`{m}`" for m in methods] + (["GNN − TF-IDF, points"] if gain else [])
    rows = []
    for a in attrs:
        h = {m: sel[m][1]["per_attribute"].get(a, {}).get("hits@1") for m in methods}
        row = [a, _f(ref[a]["count"])] + [_f(h[m]) for m in methods]
        if gain:
            row.append(_pts(h["gnn"] - h["tfidf"]) if h["gnn"] is not None and h["tfidf"] is not None else "—")
        rows.append(row)
    return "\n".join([
        f"{_source('completion.jsonl', [sel[m][0] for m in methods])} (the rows of the table above): test Hits@1 per "
        f"attribute with at least {MIN_ATTRIBUTE_PAIRS:,} test pairs, the most frequent first.",
        "",
        _table(header, rows),
    ])


def _completion_on(fingerprint: str | None, seed: int | None, results: Path) -> dict[str, dict[str, Any]]:
    """The completion table's method figures, if they were measured on this snapshot and seed."""
    try:
        recs = records("completion.jsonl", results)
    except SystemExit:
        return {}
    sel = completion_selection(recs)
    if not sel or recs[-1].get("fingerprint") != fingerprint or recs[-1]["split"].get("seed") != seed:
        return {}
    return {m: fig for m, _, fig in sel}


# ---------------------------------------------------------------------------------------------- ceiling

def ceiling_block(results: Path = RESULTS) -> str:
    rec = latest_with("ceiling.jsonl", "oracle", results)
    o = rec["oracle"]
    comp = _completion_on(rec.get("fingerprint"), rec.get("seed"), results)
    best = o["best"]
    nt = lambda m: _f(comp[m]["test_value_not_in_text"]["hits@1"]) if m in comp else "—"  # noqa: E731
    rows = [[f"`{best}` alone (the best)", _f(o["hits@1"][best]), nt(best)]]
    if "strong" in o:
        rows.append([f"any strong one right ({', '.join(f'`{m}`' for m in o['strong'])})", _f(o["strong_oracle_hits@1"]),
                     _f(o["strong_oracle_hits@1_not_in_text"])])
    rows.append([f"any of the {len(o['methods'])} methods right", _f(o["oracle_hits@1"]), _f(o["oracle_hits@1_not_in_text"])])
    if "tfidf" in o["hits@1"]:
        t_nt = comp["tfidf"]["test_value_not_in_text"]["hits@1"] + DESIGN_MARGIN[1] if "tfidf" in comp else None
        rows.append([f"design target: `tfidf` + {100 * DESIGN_MARGIN[0]:g} points (¬text: + {100 * DESIGN_MARGIN[1]:g})",
                     _f(o["hits@1"]["tfidf"] + DESIGN_MARGIN[0]), _f(t_nt)])
    lines = [f"{_source('ceiling.jsonl', [rec])}; {o['pairs']:,} test pairs"
             + (" (¬text figures of single methods and the ¬text target from `completion.jsonl`, same snapshot and seed)"
                if comp else "") + ":", "", _table(["who is right", "Hits@1", "¬text Hits@1"], rows)]
    conf = rec.get("confusions") or {}
    errors = conf.get("errors") if conf.get("method") == best else None
    who = "every strong method" if "strong" in o else "every method"
    cons = (f"Consensus errors ({who} gives the same wrong value): {o['consensus_errors']:,} test pairs "
            f"({_pct(o['consensus_error_share'])} of them)")
    if errors:
        cons += f", {_pct(o['consensus_errors'] / errors)} of `{best}`'s {errors:,} errors"
    cons += f"; another {'strong ' if 'strong' in o else ''}method is right on {_pct(o['best_errors_fixed_by_another'])} of `{best}`'s errors."
    lines += ["", cons]
    top = conf.get("top") or []
    if top and conf.get("errors"):
        n = conf["errors"]
        lines += ["", f"The most frequent confusions of `{conf['method']}` (of its {n:,} test errors):", "",
                  _table(["attribute", "asserted", "predicted", "errors", "share of the errors"],
                         [[c["attribute"], c["asserted"], c["predicted"], _f(c["count"]), _pct(c["count"] / n)]
                          for c in top[:TOP_CONFUSIONS]])]
        a = top[0]
        back = next((c for c in top if c["attribute"] == a["attribute"] and c["asserted"] == a["predicted"]
                     and c["predicted"] == a["asserted"]), None)
        if back:
            k = a["count"] + back["count"]
            lines += ["", f"The most frequent confusion both ways, {a['attribute']} {a['asserted']} ↔ {a['predicted']}: "
                          f"{k:,} errors, {_pct(k / n)} of them."]
    return "\n".join(lines)


def _multiple(fit: dict[str, float], hits: float) -> str:
    """The multiple of the training facts at which the fitted error ``e_inf + b t^-c`` reaches ``1 - hits``."""
    e, b, c = fit.get("e_inf"), fit.get("b"), fit.get("c")
    if e is None or b is None or c is None or not all(math.isfinite(x) for x in (e, b, c)):
        return "—"
    gap = (1 - hits) - e
    if gap <= 0:
        return "never (beyond the asymptote)"
    return f"{(b / gap) ** (1 / c):,.1f}x"


def learning_curve_block(results: Path = RESULTS) -> str:
    rec = latest_with("ceiling.jsonl", "learning_curve", results)
    lc = rec["learning_curve"]
    on = lc.get("graded_on", "test")
    pts = lc["points"]
    rows = []
    for i, p in enumerate(pts):
        gain = "—"
        if i and p["train_pairs"] > pts[i - 1]["train_pairs"]:
            d = math.log2(p["train_pairs"] / pts[i - 1]["train_pairs"])
            gain = _pts((p["hits@1"] - pts[i - 1]["hits@1"]) / d)
        rows.append([_frac(p["fraction"]), _f(p["train_pairs"]), _f(p["hits@1"]), _f(p["hits@1_not_in_text"]), gain,
                     _s(p.get("seconds"))])
    lines = [f"{_source('ceiling.jsonl', [rec])}: the TF-IDF baseline fitted on a seeded share of the training "
             f"products (seed {rec.get('seed')}), graded on the {on} pairs"
             + ("" if "graded_on" in lc else " (the record predates `--curve-on`; the curve was then always graded on them)")
             + ":", "",
             _table(["training products", "training pairs", "Hits@1", "¬text Hits@1", "Hits@1 gain per doubling, points",
                     "fit s"], rows)]
    fit, fnt = lc.get("fit") or {}, lc.get("fit_not_in_text") or {}
    if fit:
        lines += ["", "Fitted error `e(n) = e_inf + b·(n/n_max)^-c` (four points at most: an extrapolation): "
                      f"Hits@1 at 2x the training facts {_f(fit['hits1_at_2x'])}, at 4x {_f(fit['hits1_at_4x'])}, "
                      f"asymptote {_f(fit['hits1_at_inf'])} (c = {fit['c']:.2f})"
                  + (f"; ¬text at 2x {_f(fnt['hits1_at_2x'])}, at 4x {_f(fnt['hits1_at_4x'])}, asymptote "
                     f"{_f(fnt['hits1_at_inf'])} (c = {fnt['c']:.2f})" if fnt else "") + "."]
        comp = _completion_on(rec.get("fingerprint"), rec.get("seed"), results)
        targets = []
        if "gnn" in comp:
            g = comp["gnn"]
            targets.append(["the GNN's Hits@1", _f(_hits(g)), _multiple(fit, _hits(g))])
            if fnt:
                targets.append(["the GNN's ¬text Hits@1", _f(_hits(g, "test_value_not_in_text")),
                                _multiple(fnt, _hits(g, "test_value_not_in_text"))])
        if "tfidf" in comp:
            t = comp["tfidf"]
            targets.append([f"design target, `tfidf` + {100 * DESIGN_MARGIN[0]:g} points", _f(_hits(t) + DESIGN_MARGIN[0]),
                            _multiple(fit, _hits(t) + DESIGN_MARGIN[0])])
            if fnt:
                h = _hits(t, "test_value_not_in_text") + DESIGN_MARGIN[1]
                targets.append([f"design target on ¬text, `tfidf` + {100 * DESIGN_MARGIN[1]:g} points", _f(h), _multiple(fnt, h)])
        if targets:
            lines += ["", "Where the fitted curve reaches the test figures of the completion table (`completion.jsonl`, "
                          "same snapshot and seed)" + ("" if on == "test" else f" -- note: the curve is graded on the {on} pairs")
                      + ":", "", _table(["figure", "Hits@1", "training facts needed (multiple of all)"], targets)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ label noise

def label_noise_block(results: Path = RESULTS) -> str:
    rec = records("label_noise.jsonl", results)[-1]
    rows = []
    for name, g in rec["groupings"].items():
        rows.append([name, _f(g["pairs"]), _f(g["pairs_in_groups"]), _f(g["floor_errors"]),
                     _f(g["floor_errors"] / g["pairs"], 4), _f(g["hits1_ceiling"], 4)])
    return "\n".join([
        f"{_source('label_noise.jsonl', [rec])} (snapshot fingerprint `{rec.get('fingerprint', '?')[:12]}`): products "
        "grouped by identical inputs; within a group a fact that differs from the group's most frequent value is an "
        "error no model of those inputs avoids.", "",
        _table(["grouped by", "(product, attribute) pairs", "pairs in groups of two or more", "floor errors",
                "error floor", "Hits@1 ceiling"], rows)])


# --------------------------------------------------------------------------------------------- GNN cost

def _cost_table(rec: dict[str, Any], ratios: bool) -> str:
    header = ["catalog", "products", "facts", "fit s", "train loop s", "predict s (slots)", "load + predict s",
              "checkpoint MB", "same predictions after load", "peak RSS MB"]
    if ratios:
        header += ["s per epoch, ratio", "predict s, ratio", "peak RSS, ratio"]
    rows = []
    for r in rec["runs"]:
        row = [f"{r['factor']}x", _f(r["products"]), _f(r["facts"]), _s(r["fit_seconds"]), _s(r.get("train_loop_seconds")),
               f"{_s(r['predict_seconds'])} ({_f(r.get('slots_predicted'))})", _s(r.get("load_and_predict_seconds")),
               _f(r.get("checkpoint_mb"), 0) if r.get("checkpoint_mb") is not None else "—", _f(r.get("same_predictions")),
               _f(r["peak_rss_mb"], 0)]
        if ratios:
            row += [f"{r.get('seconds_per_epoch_ratio', float('nan')):.2f}x", f"{r.get('predict_seconds_ratio', float('nan')):.2f}x",
                    f"{r.get('peak_rss_mb_ratio', float('nan')):.2f}x"]
        rows.append(row)
    return _table(header, rows)


def _epochs(rec: dict[str, Any]) -> str:
    return f"{rec['epochs']} epoch" + ("" if rec["epochs"] == 1 else "s")


def gnn_cost_block(results: Path = RESULTS) -> str:
    recs = records("gnn_cost.jsonl", results)
    rec = recs[-1]
    opts = rec.get("gnn_options") or {}
    lines = [f"{_source('gnn_cost.jsonl', [rec])}: {_epochs(rec)}, {rec['threads']} threads, GNN options "
             f"{json.dumps(opts) if opts else 'the defaults of that commit'}; the catalog is the snapshot with every "
             "product copied k times:", "", _cost_table(rec, ratios=len(rec["runs"]) > 1)]
    if len(rec["runs"]) < 2:
        several = [r for r in recs if len(r["runs"]) > 1]
        if several:
            old = several[-1]
            lines += ["", f"The latest record over several catalog sizes is older: {_when(old)} (commit {_commit(old)}), "
                          f"{_epochs(old)}, {old['threads']} threads; ratios to its smallest catalog:", "",
                      _cost_table(old, ratios=True)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- text

def text_speed_selection(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the latest run of bench_text.py, then of the latest run of each encoder family
    (``minilm``, ``static``, ...) that an already selected run lacks."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        if "run" in r and "sample" in r:
            runs.setdefault(r["run"], []).append(r)
    order = list(runs)  # first appearance = file order
    if not order:
        return []
    family = lambda r: r["encoder"].split("@")[0]  # noqa: E731
    chosen = [order[-1]]
    have = {family(r) for r in runs[order[-1]]}
    for run in reversed(order[:-1]):
        fams = {family(r) for r in runs[run]}
        if fams - have:
            chosen.append(run)
            have |= fams
    return [r for run in chosen for r in runs[run]]


def text_speed_block(results: Path = RESULTS) -> str:
    sel = text_speed_selection(records("text.jsonl", results))
    if not sel:
        raise SystemExit("text.jsonl: no record of a bench_text.py run")
    header = ["run", "encoder", "max tokens", "texts timed", "tokens per text, mean (share cut)", "load avg at start",
              "cold texts/s", "CPU ms per text", "warm texts/s (cache)", "whole catalog, cold s", "speed-up (same run)",
              "distillation s", "peak RSS MB"]
    rows = []
    for r in sel:
        s = r["sample"]
        tok = r.get("tokens") or r.get("tokens_untruncated") or {}
        cut = f" ({_pct(tok['at_max_length'], 0)})" if "at_max_length" in tok else " (no cut)"
        if "catalog" in r:
            cat = f"{_s(r['catalog']['cold_seconds'])} (measured)"
        elif "extrapolated" in r:
            cat = f"{_s(r['extrapolated']['catalog_cold_seconds'])} (extrapolated)"
        else:
            cat = "—"
        sp = (f"{r['speedup_vs_minilm']:.1f}x vs `{r.get('speedup_reference', 'minilm')}`" if "speedup_vs_minilm" in r
              else "—")
        rows.append([f"{r['when'][:10]} `{r['commit']}`", f"`{r['encoder']}`", _f(r.get("max_length")), _f(s["texts"]),
                     f"{tok.get('mean', '—')}{cut}" if tok else "—", _f(s.get("load_avg_1m_at_start"), 2),
                     _f(s["cold_texts_per_s"], 1), _f(s.get("cold_ms_cpu_per_text"), 1), _f(s["warm_texts_per_s"], 0), cat,
                     sp, _s(r.get("distill_seconds")), _f(r.get("peak_rss_mb"), 0)])
    first = sel[0]
    return "\n".join([
        f"{_source('text.jsonl', sel)}: product texts of `{first.get('file', '?')}` ({first['catalog_texts']:,} texts), "
        f"a sample timed cold (no cache) and warm (from the cache), {first['threads']} threads on {first['cpus']} CPUs; "
        "speed-ups compare encoders of the same run only:", "", _table(header, rows)])


def text_quality_block(results: Path = RESULTS) -> str:
    latest: dict[str, dict[str, Any]] = {}
    for r in records("text_quality.jsonl", results):
        latest[r["catalog"]] = r
    if not latest:
        raise SystemExit("text_quality.jsonl: no record")
    encs: list[str] = []
    for r in latest.values():
        for e in r["mean_hits1"]:
            if e not in encs:
                encs.append(e)
    header = ["catalog", "attribute", "valid products", "values"] + [f"`{e}`" if e != "majority" else e for e in encs]
    rows = []
    for cat, r in latest.items():
        for i, (a, v) in enumerate(r["attributes"].items()):
            rows.append([cat if i == 0 else "", a, _f(v["valid"]), _f(v["values"])] + [_f(v.get(e)) for e in encs])
        mean = ["", "**mean**", "", ""] + [_f(r["mean_hits1"].get(e)) for e in encs]
        rows.append(mean)
    versions: dict[str, set[str]] = {}
    for r in latest.values():
        for e, d in r.get("encoders", {}).items():
            if d.get("version"):
                versions.setdefault(e, set()).add(d["version"])
    sizes = "; ".join(f"{c}: {r['products']:,} products sampled (seed {r['seed']}), {r['train']:,} train / {r['valid']:,} valid"
                      for c, r in latest.items())
    return "\n".join([
        f"{_source('text_quality.jsonl', list(latest.values()))}: validation Hits@1 of a logistic regression on the text "
        f"embedding alone, per attribute ({sizes}). Encoder versions: "
        + ", ".join(f"`{e}` `{next(iter(v))}`" if len(v) == 1 else f"`{e}` fitted per catalog" for e, v in versions.items())
        + ".", "", _table(header, rows)])


# -------------------------------------------------------------------------------------------- kge and kb

def kge_block(results: Path = RESULTS) -> str:
    rec = records("kge.jsonl", results)[-1]
    lines = [f"{_source('kge.jsonl', [rec])}:"]
    n = rec.get("nations")
    if n:
        lines += ["", f"PyKEEN's Nations dataset, {n['model']} (dimension {n['dim']}, {n['epochs']} epochs), trained through "
                      "attrgraph and through `pykeen.pipeline`:", "",
                  _table(["", "test MRR", "Hits@10", "seconds"],
                         [["attrgraph (`gnn.kge`)", _f(n["attrgraph_mrr"], 4), _f(n["attrgraph_hits@10"], 4), _s(n["attrgraph_seconds"])],
                          ["`pykeen.pipeline`", _f(n["pipeline_mrr"], 4), _f(n["pipeline_hits@10"], 4), _s(n["pipeline_seconds"])],
                          ["absolute MRR difference", _f(n["abs_diff"], 4), "", ""]])]
    s = rec.get("snapshot")
    if s:
        rel = ", ".join(f"`{k}` {_f(v, 3)}" for k, v in s.get("per_relation_mrr", {}).items())
        lines += ["", f"A snapshot ({s['triples']:,} triples, {s['entities']:,} entities), {s['epochs']} epochs: training "
                      f"{_s(s['train_seconds'])} s, evaluation {_s(s['eval_seconds'])} s; held-out, filtered, type-restricted "
                      f"MRR {_f(s['mrr'])}, Hits@1 {_f(s['hits@1'])}, Hits@10 {_f(s['hits@10'])}; MRR per relation: {rel}."]
    return "\n".join(lines)


def kb_block(results: Path = RESULTS) -> str:
    rec = records("kb.jsonl", results)[-1]
    c, nv, pc = rec["catalog"], rec["naive"], rec["per_call"]
    header = ["predictions", "compile (`kb.Context`) s", "`kb.validate` s (best of the runs)", "rows/s",
              "naive loop rows/s (rows; same verdicts)", "vectorised / naive", "one call per prediction, rows/s",
              "batched / per call", "peak RSS MB"]
    row = [_f(rec["predictions"]), f"{rec['context_seconds']:.3f}",
           f"{rec['validate_seconds']:.3f} ({', '.join(f'{x:.3f}' for x in rec.get('validate_runs', []))})",
           _f(rec["rows_per_s"]), f"{_f(nv['rows_per_s'])} ({_f(nv['rows'])}; {_f(nv['agree'])})",
           f"{rec['ratio_vectorised_vs_naive']:g}x", f"{_f(pc['rows_per_s'])} ({_f(pc['rows'])} rows)",
           f"{rec['ratio_batched_vs_per_call']:g}x", _f(rec["peak_rss_mb"], 0)]
    v = rec.get("verdicts", {})
    return "\n".join([
        f"{_source('kb.jsonl', [rec])} (Python {rec.get('python')}, numpy {rec.get('numpy')}, {rec.get('cpus')} CPUs): "
        f"a synthetic catalog of {c['products']:,} products, {c['facts']:,} facts, {c['categories']:,} categories, "
        f"{c['brands']:,} brands; {rec['rules']} rules of {len(rec['rule_types'])} types:", "",
        _table(header, [row]), "",
        "Verdicts: " + ", ".join(f"{k} {_f(n)}" for k, n in v.items()) + "."])


def proposal_rules_block(results: Path = RESULTS) -> str:
    """The ``new_value`` rules (``bench/bench_proposal_rules.py``): recall per injected kind, clean new values
    blocked, precision per rule, the marketing words learned; the latest record that has every catalog of it."""
    rec = records("proposal_rules.jsonl", results)[-1]
    cats = rec["catalogs"]
    kinds = list(next(iter(cats.values()))["kinds"])
    header = ["catalog", "products", "clean new values (blocked)"] + [f"`{k}` recall (n)" for k in kinds]
    rows = []
    for name, r in cats.items():
        row = [name, _f(r["products"]), f"{_f(r['clean'])} ({_f(r['clean_blocked'])})"]
        for k in kinds:
            d = r["kinds"][k]
            row.append("n/a" if not d["n"] else f"{_f(d['recall'])} ({_f(d['n'])})")
        rows.append(row)
    rids = list(next(iter(cats.values()))["rules"])
    rheader = ["rule"] + [f"{n}: rejected / precision / clean blocked" for n in cats]
    rrows = [[f"`{rid}`"] + [f"{_f(r['rules'][rid]['rejected'])} / {_f(r['rules'][rid]['precision'])} / "
                             f"{_f(r['rules'][rid]['clean_blocked'])}" for r in cats.values()] for rid in rids]
    st = rec["settings"]
    learned = "; ".join(f"{n}: {_f(r['marketing_words_learned'])} ({', '.join(r['marketing_words_top'][:8])})"
                        for n, r in cats.items())
    phrases = "; ".join(f"{n}: " + (", ".join(p for p, v in r["kinds"]["marketing"].get("per_phrase", {}).items()
                                              if v >= 0.5) or "none") for n, r in cats.items())
    return "\n".join([
        f"{_source('proposal_rules.jsonl', [rec])}: the four `new_value` rules of `kb/rules/default.yaml` alone, on "
        f"{st['per_kind']} injected junk proposals per kind (seed {st['seed']}) and on up to {st['clean']} genuinely new "
        "values (asserted on one product only, taken out of the catalog, proposed again for it); caught = rejected:", "",
        _table(header, rows), "", _table(rheader, rrows), "",
        f"Marketing words learned (the most frequent): {learned}. Phrases of the fixed list caught at least half of the "
        f"time: {phrases or '—'}."])
def spark_block(results: Path = RESULTS) -> str:
    """Local vs Spark completion (bench_spark.py): per catalog, the latest record."""
    latest: dict[str, dict[str, Any]] = {}
    for r in records("spark.jsonl", results):
        latest[r["catalog"]] = r
    recs = list(latest.values())
    header = ["catalog", "products", "local s", "spark s", "spark / local", "snapshot s (local / spark)",
              "features s (local / spark)", "predict s (local / spark)", "write s (local / spark)", "edges compared", "same committed run"]
    rows = []
    for r in recs:
        lo, sp = r["local_stages"], r["spark_stages"]
        rows.append([r["catalog"], _f(r["products"]), _s(r["local_seconds"]), _s(r["spark_seconds"]),
                     f"{r['ratio_spark_vs_local']:.2f}x",
                     f"{_s(lo.get('snapshot', 0))} / {_s(sp.get('snapshot', 0))}",
                     f"{_s(lo.get('features', 0))} / {_s(sp.get('features', 0))}",
                     f"{_s(lo.get('predict', 0))} / {_s(sp.get('predict', 0))}",
                     f"{_s(lo.get('write', 0))} / {_s(sp.get('write', 0))}", _f(r["edges_compared"]),
                     _f(bool(r["equal_edges"] and r["equal_counts"] and r["integrity_ok"]))])
    m = recs[-1]
    return "\n".join([
        f"{_source('spark.jsonl', recs)} ({m.get('cpus')} CPUs shared with other work, Spark `{m['master']}`, "
        f"{m['partitions']} partitions, pyspark {m.get('pyspark')}; model `{m['model']}` {json.dumps(m['model_kwargs'])}, "
        f"encoder `{m['encoder']}`; both runs score with the same saved model; "
        f"the latest record per catalog):", "",
        _table(header, rows), "",
        "Spark's snapshot stage includes starting the driver JVM and the Python workers' first imports; its predict "
        "stage, each worker loading the model and the snapshot once."])


# ----------------------------------------------------------------------------------------------- driver

BLOCKS: dict[str, Callable[[Path], str]] = {
    "completion": completion_block,
    "completion-attributes": completion_attributes_block,
    "ceiling": ceiling_block,
    "learning-curve": learning_curve_block,
    "label-noise": label_noise_block,
    "gnn-cost": gnn_cost_block,
    "text-speed": text_speed_block,
    "text-quality": text_quality_block,
    "kge": kge_block,
    "kb": kb_block,
    "proposal-rules": proposal_rules_block,
    "spark": spark_block,
}


def render(names: list[str] | None = None, results: Path = RESULTS) -> dict[str, str]:
    """Block name -> its markdown, for ``names`` (default: every block)."""
    return {n: BLOCKS[n](results) for n in (names or list(BLOCKS))}


def readme_blocks(readme: Path = README) -> dict[str, str]:
    """Block name -> what README.md holds between its markers (without the newline after begin and before end)."""
    doc = readme.read_text(encoding="utf-8")
    out = {}
    for n in BLOCKS:
        begin, end = marker(n)
        if doc.count(begin) == 1 and doc.count(end) == 1 and doc.index(begin) < doc.index(end):
            inner = doc.split(begin, 1)[1].split(end, 1)[0]
            out[n] = inner.removeprefix("\n").removesuffix("\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block", action="append", choices=list(BLOCKS), help="render only this block (repeatable)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="directory of the *.jsonl records")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--write-readme", action="store_true", help="replace every block between its README markers")
    ap.add_argument("--check", action="store_true", help="exit 1 when a README block differs from what is rendered now")
    args = ap.parse_args()
    texts = render(args.block, args.results)
    if args.check:
        have = readme_blocks(args.readme)
        bad = [n for n, t in texts.items() if have.get(n) != t]
        for n in bad:
            print(f"{args.readme}: block {n} " + ("is missing" if n not in have else "differs from its records"))
        sys.exit(1 if bad else 0)
    if args.write_readme:
        for n, t in texts.items():
            write_readme(t, args.readme, *marker(n))
        print(f"written {len(texts)} blocks into {args.readme}: {', '.join(texts)}")
        return
    for n, t in texts.items():
        begin, end = marker(n)
        print(f"{begin}\n{t}\n{end}\n")


if __name__ == "__main__":
    main()
