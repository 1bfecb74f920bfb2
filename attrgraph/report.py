"""The per-run report: Markdown with PNG plots, written to the run directory.

* ``precision_coverage.png`` — precision against coverage of the model's top-1 decisions on the
  held-out (validation) facts of its fit, with the target precision;
* ``calibration.png`` — reliability diagram of the same decisions (calibrated probabilities);
* ``accepted_by_attribute.png``, ``accepted_by_category.png`` — what this run wrote.

Besides ``report.md``: ``predictions.jsonl`` (every prediction the run wrote, or would have written
in a dry run, with its explanation) and ``run.json`` (status, counts, metrics, stage times).
Nothing here ever contains credentials: only the URI and database of the graph.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bar(acc: Counter, rev: Counter, path: Path, title: str, top: int = 20) -> Path | None:
    """Horizontal stacked bars: accepted, then needs-review predictions, for the ``top`` keys by total."""
    total = acc + rev
    if not total:
        return None
    plt = _plt()
    keys = [k for k, _ in total.most_common(top)][::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(keys) + 1.4))
    a = [acc.get(k, 0) for k in keys]
    ax.barh([k[:48] for k in keys], a, color="#4C72B0", label="accepted")
    ax.barh([k[:48] for k in keys], [rev.get(k, 0) for k in keys], left=a, color="#DD8452", label="needs review")
    ax.set(title=title, xlabel="predictions written")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plots(run_dir: Path, vt: dict[str, np.ndarray], result: Any, target: float) -> dict[str, Path]:
    from gnn.metrics import precision_coverage, reliability_bins

    plt = _plt()
    out: dict[str, Path] = {}
    conf, ok = np.asarray(vt["confidence"], float), np.asarray(vt["correct"], bool)
    if len(conf):
        pc = precision_coverage(conf, ok)
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        ax.plot(pc.coverage, pc.precision, lw=1.5)
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
        ax.set(xlabel="coverage", ylabel="precision", title="precision–coverage (held-out, cross-fitted)",
               xlim=(0, 1), ylim=(max(0.0, float(pc.precision.min()) - 0.02), 1.005))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        out["precision_coverage"] = run_dir / "precision_coverage.png"
        fig.savefig(out["precision_coverage"], dpi=100)
        plt.close(fig)
        rb = reliability_bins(conf, ok, 15)
        used = rb.count > 0
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
        ax.plot(rb.confidence[used], rb.accuracy[used], marker="o", ms=3, label=f"ECE {rb.ece:.3f}")
        ax.set(xlabel="calibrated top-1 probability", ylabel="accuracy", title="calibration (held-out, cross-fitted)",
               xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        out["calibration"] = run_dir / "calibration.png"
        fig.savefig(out["calibration"], dpi=100)
        plt.close(fig)
    acc = [p for p in result.predictions if p.verdict == "accept"]
    rev = [p for p in result.predictions if p.verdict != "accept"]
    a = _bar(Counter(p.attribute for p in acc), Counter(p.attribute for p in rev), run_dir / "accepted_by_attribute.png",
             "accepted (and needs-review) predictions per attribute")
    if a:
        out["accepted_by_attribute"] = a
    c = _bar(Counter(p.category or "(none)" for p in acc), Counter(p.category or "(none)" for p in rev),
             run_dir / "accepted_by_category.png", "accepted (and needs-review) predictions per category")
    if c:
        out["accepted_by_category"] = c
    return out


def _md_escape(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ").replace("`", "\\`")


def write_report(result: Any, valid_top1: dict[str, np.ndarray], attribute_names: list[str], cfg: Any,
                 settings: Any) -> Path:
    d = Path(result.run_dir)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for p in result.predictions:
            fh.write(json.dumps(p.__dict__, ensure_ascii=False, default=str) + "\n")
    plots = _plots(d, valid_top1, result, cfg.target_precision)
    # per-attribute precision on the held-out facts at the thresholds
    vt_attr = np.asarray(valid_top1.get("attribute", np.zeros(0)), np.int64)
    run = {"run_id": result.run_id, "status": result.status, "mode": result.mode, "dry_run": result.dry_run,
           "model": result.model, "model_version": result.model_version, "model_action": result.model_action,
           "counts": result.counts, "metrics": result.metrics, "stages": result.stages, "notes": result.notes,
           "graph": {"uri": settings.uri, "database": settings.database or "(default)"}}
    (d / "run.json").write_text(json.dumps(run, indent=1, default=str), encoding="utf-8")
    L: list[str] = []
    L.append(f"# Completion run `{result.run_id}`\n")
    L.append(f"- status: **{result.status}** ({result.mode}{', dry run: nothing written' if result.dry_run else ''})")
    L.append(f"- graph: {settings.uri} (database {settings.database or 'default'})")
    L.append(f"- model: {result.model}, version `{result.model_version}` ({result.model_action})")
    L.append(f"- wall time: {result.seconds:.1f} s\n")
    L.append("## Counts\n\n| count | value |\n|---|---|")
    for k, v in result.counts.items():
        L.append(f"| {k} | {v} |")
    L.append("\n## Stages (seconds)\n\n| stage | seconds |\n|---|---|")
    for k, v in result.stages.items():
        L.append(f"| {k} | {v:.2f} |")
    m = result.metrics
    L.append("\n## Model quality on held-out facts (never trained on)\n")
    if m.get("valid_pairs"):
        L.append(f"- held-out pairs: {m['valid_pairs']}, top-1 accuracy {m['valid_top1_accuracy']:.3f}, "
                 f"ECE {m['valid_ece']:.3f}, coverage at precision {cfg.target_precision:g}: "
                 f"{m['valid_coverage_at_target']:.3f}")
        if m.get("valid_precision_at_threshold") is not None:
            L.append(f"- at the abstention thresholds: precision {m['valid_precision_at_threshold']:.3f}, coverage "
                     f"{m['valid_coverage_at_threshold']:.3f} (target {cfg.target_precision:g})")
        if m.get("valid_pooled_precision_at_threshold") is not None:
            L.append(f"- of which accepted by the pooled threshold of the attributes with fewer than 50 held-out pairs: "
                     f"{m['valid_pooled_accepted']}, precision {m['valid_pooled_precision_at_threshold']:.3f}")
        L.append("- calibration figures and plots are cross-fitted: each held-out pair is calibrated and thresholded "
                 "by a calibrator and thresholds fitted on the other folds (5, by product), never on itself")
    else:
        L.append("- no held-out facts")
    if m.get("accepted_mean_p") is not None:
        L.append(f"- accepted predictions: mean probability {m['accepted_mean_p']:.3f}, expected correct "
                 f"{m['expected_correct_accepted']:.0f} of {result.counts.get('accepted', 0)}")
    for name, title in (("precision_coverage", "Precision–coverage"), ("calibration", "Calibration"),
                        ("accepted_by_attribute", "Accepted predictions per attribute"),
                        ("accepted_by_category", "Accepted predictions per category")):
        if name in plots:
            L.append(f"\n### {title}\n\n![{title}]({plots[name].name})")
    if len(vt_attr):
        L.append("\n## Held-out precision per attribute (top-1, all confidences)\n\n| attribute | pairs | accuracy |\n|---|---|---|")
        ok = np.asarray(valid_top1["correct"], bool)
        for a in np.unique(vt_attr).tolist():
            sel = vt_attr == a
            if sel.sum() >= 20:
                L.append(f"| {_md_escape(attribute_names[a] if a < len(attribute_names) else a)} | {int(sel.sum())} | "
                         f"{ok[sel].mean():.3f} |")
    L.append("\n## Top accepted predictions\n\n| product | title | attribute | value | p | neighbours | text |\n|---|---|---|---|---|---|---|")
    for p in result.top(15):
        nb = ", ".join(n["id"] for n in p.neighbours)
        L.append(f"| {_md_escape(p.product)} | {_md_escape((p.title or '')[:50])} | {_md_escape(p.attribute)} | "
                 f"{_md_escape(p.value)} | {p.p:.3f} | {_md_escape(nb)} | {_md_escape((p.text_evidence or '')[:60])} |")
    if result.notes:
        L.append("\n## Notes\n")
        L += [f"- {_md_escape(n)}" for n in result.notes]
    L.append("\n## See them in Neo4j\n\n```cypher\nMATCH (p:Product)-[e:PREDICTED_VALUE {run_id: $run}]->(v)\n"
             "RETURN p.id, e.attribute, coalesce(v.value, v.name), e.p, e.verdict, e.explanation\n"
             f"ORDER BY e.p DESC LIMIT 25   // :param run => '{result.run_id}'\n```\n"
             f"\n`attrgraph query run_changes -p run={result.run_id}`")
    path = d / "report.md"
    path.write_text("\n".join(L) + "\n", encoding="utf-8")
    return path
