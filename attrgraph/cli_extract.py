"""``attrgraph extract train|evaluate|predict``: the open-world value extractor on its own.

``train`` learns span extractors from a snapshot's (or a catalog file's) asserted facts by distant
supervision, holding out a seeded share of products (title-grouped) for ``evaluate``; ``evaluate`` grades
the first span per slot on those held-out products; ``predict`` prints spans as JSON lines. None of them
talks to Neo4j.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import click
import yaml

from graph.settings import attrgraph_home


def _cli():  # late import: cli imports this module
    from . import cli

    return cli


def default_extract_dir() -> Path:
    return attrgraph_home() / "models" / "extract"


@contextmanager
def _errors() -> Iterator[None]:
    from extract.model import ExtractError
    from gnn.errors import GnnError
    from ingest import IngestError

    try:
        yield
    except (ExtractError, GnnError, IngestError, OSError, ValueError) as e:
        raise click.ClickException(str(e)) from None


def _examples(snap_dir: str | None, catalog: str | None, mapping: str | None, limit: int | None) -> tuple[list, str]:
    from extract.data import examples_from_catalog, examples_from_snapshot

    if catalog:
        if not mapping:
            raise click.UsageError("--catalog needs --mapping (a shipped mapping name or a YAML file)")
        return examples_from_catalog(catalog, mapping, limit=limit), f"{catalog} ({mapping})"
    from gnn.snapshot import load_snapshot

    from .features import default_snapshot_dir

    snap = load_snapshot(snap_dir or default_snapshot_dir())
    ex = examples_from_snapshot(snap)
    return (ex[:limit] if limit else ex), f"snapshot {snap.path} ({snap.fingerprint[:12]})"


def _source_options(f):
    f = click.option("--limit", type=int, default=None, help="read at most this many products")(f)
    f = click.option("--mapping", default=None, help="the catalog's mapping: a shipped name or a YAML file")(f)
    f = click.option("--catalog", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="read products and facts from a catalog file instead of a snapshot")(f)
    f = click.option("--snapshot", "snap_dir", type=click.Path(file_okay=False), default=None,
                     help="snapshot directory (default $ATTRGRAPH_HOME/snapshots/current)")(f)
    return f


def _config(options: tuple[str, ...], seed: int) -> Any:
    from extract.model import ExtractConfig

    kw: dict[str, Any] = {"seed": seed}
    valid = {f.name for f in fields(ExtractConfig)}
    for o in options:
        if "=" not in o:
            raise click.BadParameter(f"expected key=value, got {o!r}", param_hint="--option")
        k, v = (x.strip() for x in o.split("=", 1))
        if k not in valid:
            raise click.BadParameter(f"unknown option {k!r}; valid: {', '.join(sorted(valid))}", param_hint="--option")
        kw[k] = yaml.safe_load(v)
    return ExtractConfig(**kw)


@click.group("extract")
def extract_group() -> None:
    """Open-world values: extract attribute values (and brands) from titles and descriptions."""


@extract_group.command("train")
@_source_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="model directory (default $ATTRGRAPH_HOME/models/extract)")
@click.option("--attribute", "attributes", multiple=True, help="only these attributes (repeatable; brand for brands)")
@click.option("--test-share", type=float, default=0.2, show_default=True,
              help="products held out for `extract evaluate` (title-grouped, seeded); 0 trains on everything")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="an extractor option (max_sentences, min_located, max_iterations, max_desc_tokens, ...)")
@click.option("--seed", type=int, default=0, show_default=True)
def train_cmd(snap_dir, catalog, mapping, limit, out_dir, attributes, test_share, options, seed) -> None:
    """Learn span extractors from the asserted facts (distant supervision) and save them."""
    from extract.data import split_products
    from extract.model import train

    c = _cli()
    with _errors():
        cfg = _config(options, seed)
        ex, source = _examples(snap_dir, catalog, mapping, limit)
        tr, te = split_products(ex, test_share=test_share, seed=seed)
        out = Path(out_dir) if out_dir else default_extract_dir()
        t0 = time.perf_counter()
        m = train(tr, out, config=cfg, attributes=list(attributes) or None,
                  progress=lambda s: c.console.print(s, markup=False, highlight=False))
        m.meta["source"] = source
        m.meta["holdout"] = {"test_share": test_share, "seed": seed, "group": "title", "products": len(te)}
        from extract.model import _write_meta

        _write_meta(out, m.meta)
    rows = [("source", source), ("train products", m.meta["train_products"]),
            ("calibration products", m.meta["valid_products"]), ("held-out products", len(te)),
            ("attributes with an extractor", len(m.attributes)), ("attributes skipped", len(m.meta["skipped"])),
            ("seconds", round(time.perf_counter() - t0, 1)), ("saved to", str(out))]
    c.print_table(["", ""], rows, title="extractor trained")


@extract_group.command("evaluate")
@_source_options
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="a model saved by `attrgraph extract train` (default $ATTRGRAPH_HOME/models/extract)")
@click.option("--attribute", "attributes", multiple=True, help="only these attributes (repeatable)")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="confidence of an accepted span")
@click.option("--json", "as_json", is_flag=True, help="print the metrics as JSON")
def evaluate_cmd(snap_dir, catalog, mapping, limit, model_dir, attributes, threshold, as_json) -> None:
    """Grade the extractor on the products its training held out."""
    from extract.data import split_products
    from extract.evaluate import grade
    from extract.model import load

    c = _cli()
    with _errors():
        m = load(model_dir or default_extract_dir())
        h = m.meta.get("holdout") or {}
        if not h.get("test_share"):
            raise click.ClickException(f"{m.path} was trained without held-out products (--test-share 0)")
        ex, source = _examples(snap_dir, catalog, mapping, limit)
        _, te = split_products(ex, test_share=h["test_share"], seed=h["seed"])
        t0 = time.perf_counter()
        res = grade(m, te, list(attributes) or None, threshold=threshold)
        secs = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps({**res, "products": len(te), "seconds": round(secs, 2)}, ensure_ascii=False))
        return

    def f(x: Any) -> str:
        return "—" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    keys = ("slots", "exact", "exact_unseen", "precision_at_threshold", "kept", "span_precision", "span_recall", "span_f1")
    rows = [(a, *(f(r.get(k)) for k in keys)) for a, r in sorted(res["per_attribute"].items(), key=lambda x: -x[1]["slots"])]
    rows.append(("all", *(f(res["overall"].get(k)) for k in keys)))
    c.print_table(["attribute", "slots", "exact", "exact (unseen)", f"precision ≥{threshold:g}", "kept",
                   "span P", "span R", "span F1"], rows, title=f"held-out products of {source}: {len(te)}")
    c.console.print(f"graded in {secs:.1f} s", markup=False)


@extract_group.command("predict")
@_source_options
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="a model saved by `attrgraph extract train` (default $ATTRGRAPH_HOME/models/extract)")
@click.option("--attribute", "attributes", multiple=True, help="only these attributes (repeatable)")
@click.option("--product", "products", multiple=True, help="only these product ids (repeatable)")
@click.option("--top-k", type=int, default=1, show_default=True)
@click.option("--min-confidence", type=float, default=0.0, show_default=True)
@click.option("--missing-only", is_flag=True, help="only slots without an asserted value")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="write here instead of stdout")
def predict_cmd(snap_dir, catalog, mapping, limit, model_dir, attributes, products, top_k, min_confidence,
                missing_only, out_file) -> None:
    """Print extracted spans as JSON lines (one per span)."""
    from extract.model import load

    with _errors():
        m = load(model_dir or default_extract_dir())
        ex, _ = _examples(snap_dir, catalog, mapping, limit)
        if products:
            want = set(products)
            ex = [e for e in ex if e.id in want]
            missing = want - {e.id for e in ex}
            if missing:
                raise click.ClickException(f"unknown product id(s): {sorted(missing)[:5]}")
        attrs = [a for a in (attributes or m.attributes)]
        bad = [a for a in attrs if a not in m.attributes]
        if bad:
            raise click.ClickException(f"no extractor for {bad}; this model extracts: {', '.join(m.attributes[:20])}")
        slots = {e.id: [a for a in attrs if not (missing_only and e.facts.get(a))] for e in ex}
        spans = m.predict_slots(ex, slots, top_k=top_k)
        fh = open(out_file, "w", encoding="utf-8") if out_file else sys.stdout
        try:
            for s in spans:
                if s.confidence >= min_confidence:
                    d = asdict(s)
                    d.pop("extra", None)
                    d["new"] = s.new
                    fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        finally:
            if out_file:
                fh.close()
