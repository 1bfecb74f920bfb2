"""``attrgraph train`` and ``attrgraph predict``: the completion model on its own, over a snapshot.

``train`` fits a completion model (the GNN by default) on a snapshot's asserted facts, calibrates
it on held-out facts and saves it; ``predict`` loads a saved model and writes, for every product
and every applicable attribute without an asserted value, the top-k candidate values with
calibrated probabilities (JSON lines). Neither writes to Neo4j: ``attrgraph complete`` does the
whole run with rules and write-back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import yaml

from graph.settings import attrgraph_home


def _cli():  # late import: cli imports this module
    from . import cli

    return cli


def default_model_dir() -> Path:
    return attrgraph_home() / "models" / "current"


def _parse_options(options: tuple[str, ...], config_file: str | None) -> dict[str, Any]:
    """GNN/model options from a YAML file, then ``key=value`` pairs (values parsed as YAML)."""
    out: dict[str, Any] = {}
    if config_file:
        try:
            data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise click.BadParameter(f"{config_file}: {e}", param_hint="--options-file") from None
        if not isinstance(data, dict):
            raise click.BadParameter(f"{config_file}: expected a mapping of model options", param_hint="--options-file")
        out.update(data)
    for o in options:
        if "=" not in o:
            raise click.BadParameter(f"expected key=value, got {o!r}", param_hint="--option")
        k, v = o.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError:
            out[k.strip()] = v
    return out


def _ensure_text_features(snap: Any, encoder: str, say: Any) -> None:
    """Compute the text features the GNN reads when the snapshot has none yet (cached by text)."""
    from .features import TextFeatureConfig, compute_text_features

    if "text.product" in set(snap.features.names()):
        return
    say(f"no text features in {snap.path}: computing them with {encoder} (cached)")
    compute_text_features(snap, TextFeatureConfig(encoder=encoder))


@click.command("train")
@click.option("--snapshot", "snap_dir", type=click.Path(file_okay=False), default=None,
              help="snapshot directory (default $ATTRGRAPH_HOME/snapshots/current; make one with `attrgraph snapshot`)")
@click.option("--model", "model_name", default="gnn", show_default=True, help="gnn | tfidf | majority | kge")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="a model option (GNN: conv=sage|gat|hgt, hidden, layers, epochs, batch_size, text_feature, ...)")
@click.option("--options-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="a YAML mapping of model options")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="where to save the model (default $ATTRGRAPH_HOME/models/current)")
@click.option("--encoder", default="minilm", show_default=True,
              help="text encoder used when the snapshot has no text features yet: minilm | static | char-svd")
@click.option("--valid-share", type=float, default=0.1, show_default=True, help="held-out facts for calibration")
@click.option("--calibration", type=click.Choice(["none", "temperature", "isotonic", "isotonic-lower"]), default="isotonic",
              show_default=True, help="isotonic: blocks of >= 50 held-out pairs stating (k+1)/(n+2); isotonic-lower: "
              "each block at most its 95%% lower bound + 0.02 (conservative)")
@click.option("--target-precision", type=float, default=0.98, show_default=True,
              help="per-attribute abstention thresholds are chosen to reach this precision on held-out facts")
@click.option("--threads", type=int, default=2, show_default=True,
              help="torch CPU threads (with several ranks: the usable cores divided by the ranks on a host)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--nproc", type=int, default=1, show_default=True,
              help="data-parallel ranks on this host (gnn, kge), started by torch's elastic launcher; under "
                   "torchrun / Slurm / Ray Train the launcher's ranks are used instead")
def train_cmd(snap_dir: str | None, model_name: str, options: tuple[str, ...], options_file: str | None,
              out_dir: str | None, encoder: str, valid_share: float, calibration: str, target_precision: float,
              threads: int, seed: int, nproc: int) -> None:
    """Train a completion model on a snapshot, calibrate it on held-out facts, and save it."""
    from gnn import distributed
    from gnn.completion import CompletionPredictor
    from gnn.snapshot import load_snapshot

    from .features import default_snapshot_dir

    c = _cli()
    kw = _parse_options(options, options_file)
    launched = distributed.in_launched_rank()
    if (nproc > 1 or launched) and model_name not in ("gnn", "kge"):
        raise click.UsageError(f"distributed training (--nproc, torchrun) is for --model gnn or kge, not {model_name!r}")
    if nproc < 1:
        raise click.BadParameter(f"must be at least 1, got {nproc}", param_hint="--nproc")
    if model_name == "gnn":
        kw.setdefault("threads", threads)
        kw.setdefault("seed", seed)
    elif model_name == "kge":
        kw.setdefault("threads", threads)
    snap_path = Path(snap_dir) if snap_dir else default_snapshot_dir()
    if nproc > 1 and not launched:
        # the text features first, once, then N ranks of this same command (each loads the snapshot)
        snap = load_snapshot(snap_path)
        if model_name == "gnn" and kw.get("text_feature", "text"):
            _ensure_text_features(snap, encoder, c.console.print)
        args = ["train", "--snapshot", str(snap_path), "--model", model_name, "--encoder", encoder,
                "--valid-share", repr(valid_share), "--calibration", calibration,
                "--target-precision", repr(target_precision), "--threads", str(threads), "--seed", str(seed)]
        if options_file:
            args += ["--options-file", options_file]
        for o in options:
            args += ["--option", o]
        if out_dir:
            args += ["--out", out_dir]
        c.console.print(f"training on {nproc} ranks (torch.distributed.run, gloo; "
                        f"{distributed.threads_per_rank(nproc)} thread(s) per rank)", markup=False, highlight=False)
        distributed.launch(args, nproc)
        return
    ctx = distributed.init() if launched else None
    if ctx is not None:
        kw["threads"] = ctx.threads
        if ctx.local_rank == 0:  # one rank per host computes missing text features; the others wait
            snap = load_snapshot(snap_path)
            if model_name == "gnn" and kw.get("text_feature", "text"):
                _ensure_text_features(snap, encoder, c.console.print)
        ctx.barrier()
    snap = load_snapshot(snap_path)
    if ctx is None and model_name == "gnn" and kw.get("text_feature", "text"):
        _ensure_text_features(snap, encoder, c.console.print)
    t0 = time.perf_counter()
    say = (lambda m: c.console.print(m, markup=False, highlight=False)) if ctx is None or ctx.is_main else None
    pred = CompletionPredictor.fit(snap, model=model_name, model_kwargs=kw, valid_share=valid_share, seed=seed,
                                   calibration=calibration, target_precision=target_precision, progress=say,
                                   dist=ctx)
    # (a rank that fails exits non-zero; the launcher then stops the others: no collective after an error)
    if ctx is not None and not ctx.is_main:
        ctx.barrier()  # until rank 0 has saved
        ctx.close()
        return
    secs = time.perf_counter() - t0
    out = pred.save(Path(out_dir) if out_dir else default_model_dir())
    if ctx is not None:
        ctx.barrier()
        ctx.close()
    v = pred.validation
    rows = [("model", model_name), ("snapshot", f"{snap.path} ({snap.fingerprint[:12]})"),
            ("train pairs", len(pred.split.pairs("train"))), ("held-out pairs", len(pred.split.pairs("valid"))),
            ("held-out Hits@1", v.get("hits@1")), ("held-out MRR", v.get("mrr")), ("held-out ECE (cross-fitted)", v.get("ece")),
            ("held-out precision at threshold (cross-fitted)", v.get("precision_at_threshold")),
            ("held-out coverage at threshold (cross-fitted)", v.get("coverage_at_threshold")), ("epochs run", getattr(pred.model, "epochs_run", "—")),
            ("seconds", round(secs, 1)), ("saved to", str(out))]
    if ctx is not None:
        rows.insert(-2, ("ranks", f"{ctx.world_size} ({ctx.backend}, {ctx.threads} thread(s) each)"))
    c.print_table(["", ""], [(k, f"{x:.4f}" if isinstance(x, float) else x) for k, x in rows], title="trained")


@click.command("predict")
@click.option("--snapshot", "snap_dir", type=click.Path(file_okay=False), default=None,
              help="snapshot directory (default $ATTRGRAPH_HOME/snapshots/current)")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="a model saved by `attrgraph train` (default $ATTRGRAPH_HOME/models/current)")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="write every slot's candidates here as JSON lines (default: print a sample only)")
@click.option("--top-k", type=int, default=5, show_default=True)
@click.option("--attribute", "attributes", multiple=True, help="only these attributes (repeatable; @brand for brands)")
@click.option("--product", "products", multiple=True, help="only these product ids (repeatable)")
@click.option("--confident-only", is_flag=True, help="only slots whose top candidate reaches its attribute's threshold")
@click.option("--all-slots", is_flag=True,
              help="rank every missing slot of the named products/attributes, applicable or not (the default when "
                   "both --product and --attribute are given: a slot asked for by name always gets an answer)")
@click.option("--show", type=int, default=10, show_default=True, help="rows of the printed sample")
@click.option("--extractor", default=None, metavar="PATH",
              help="a saved extractor (extract.load): its spans join the candidates, values new to the graph "
                   "marked \"new\": true, each with its evidence (field, start, end, text)")
def predict_cmd(snap_dir: str | None, model_dir: str | None, out_file: str | None, top_k: int,
                attributes: tuple[str, ...], products: tuple[str, ...], confident_only: bool, all_slots: bool,
                show: int, extractor: str | None) -> None:
    """Rank the candidate values of every missing applicable attribute, with calibrated probabilities.

    A slot named by both --product and --attribute is ranked even where the attribute is not deemed
    applicable to the product's category; --all-slots does that for every named product or attribute."""
    import numpy as np

    from gnn.completion import CompletionPredictor
    from gnn.errors import GnnError
    from gnn.snapshot import load_snapshot

    from .features import default_snapshot_dir

    c = _cli()
    t0 = time.perf_counter()
    snap = load_snapshot(snap_dir or default_snapshot_dir())
    pred = CompletionPredictor.load(model_dir or default_model_dir())
    if pred.snapshot_fingerprint != snap.fingerprint:
        c.console.print(f"the model was trained on snapshot {pred.snapshot_fingerprint[:12]}: scoring "
                        f"{snap.fingerprint[:12]} inductively (no retraining)", markup=False)
        if getattr(pred.model, "cfg", None) is not None and pred.model.cfg.text_feature:
            # the encoder the model was trained with (a different one is refused by rebind)
            used = getattr(pred.model, "feature_versions", {}).get(f"{pred.model.cfg.text_feature}.product", {})
            _ensure_text_features(snap, used.get("encoder") or "minilm", c.console.print)
        pred = pred.rebind(snap)
    ids = None
    if products:
        missing = [p for p in products if p not in snap.index["product"]]
        if missing:
            raise GnnError(f"unknown product id(s) {missing[:5]} in snapshot {snap.path}")
        ids = np.array([snap.index["product"][p] for p in products], np.int64)
    if all_slots and not (products or attributes):
        raise click.UsageError("--all-slots needs --product or --attribute (every attribute of every product is too many)")
    scope = "all" if all_slots or (products and attributes) else "applicable"
    cand = pred.predict(snap, products=ids, top_k=top_k, attributes=list(attributes) or None, scope=scope)
    slots = list(cand.slots(snap))
    n_new = 0
    if extractor:
        from .openworld import extract_spans, jsonable, load_extractor, product_texts, with_spans

        spans = extract_spans(load_extractor(extractor), product_texts(snap, np.unique(cand.product)),
                              sorted({s["attribute"] for s in slots}))
        slots = [{**s, "candidates": [jsonable(x) for x in s["candidates"]]} for s in with_spans(slots, spans)]
        n_new = sum(1 for s in slots for x in s["candidates"] if x.get("new"))
    secs = time.perf_counter() - t0
    n = n_conf = 0
    sample: list[dict[str, Any]] = []
    fh = open(out_file, "w", encoding="utf-8") if out_file else None
    try:
        for slot in slots:
            # an extracted candidate's probability is the extractor's: the model's threshold does not apply to it
            confident = slot["candidates"][0]["p"] >= slot["threshold"] and "evidence" not in slot["candidates"][0]
            n_conf += confident
            if confident_only and not confident:
                continue
            slot["confident"] = bool(confident)
            n += 1
            if fh:
                fh.write(json.dumps(slot, ensure_ascii=False) + "\n")
            if len(sample) < show:
                sample.append(slot)
    finally:
        if fh:
            fh.close()
    c.print_table(["product", "attribute", "top value", "p", "threshold", "next"],
                  [(x["product"], x["attribute"], x["candidates"][0]["value"], f"{x['candidates'][0]['p']:.3f}",
                    f"{x['threshold']:.3f}" if x["threshold"] != float("inf") else "abstain",
                    ", ".join(f"{y['value']} {y['p']:.2f}" for y in x["candidates"][1:3])) for x in sample],
                  title="predictions (sample)")
    c.console.print(f"{len(cand)} missing {'' if scope == 'all' else 'applicable '}slots of {len(np.unique(cand.product))} products scored in "
                    f"{secs:.1f} s; {n_conf} reach their attribute's threshold (target precision "
                    f"{pred.abstention.target:g})" + (f"; {n} written to {out_file}" if out_file else "")
                    + (f"; {n_new} extracted candidates new to the graph" if extractor else ""),
                    markup=False, highlight=False)
