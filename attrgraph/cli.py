"""The ``attrgraph`` command line: thin commands over importable functions."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from graph import GraphError, LocalNeo4j, LocalNeo4jSettings, ProductGraph
from gnn.errors import GnnError
from kb.errors import KBError
from ingest import IngestError, IngestReport
from queries import QueryError
from queries import load_all as load_queries

console = Console()
err_console = Console(stderr=True)


def _local(port: int | None = None, home: str | None = None) -> LocalNeo4j:
    return LocalNeo4j(LocalNeo4jSettings.from_env(home=Path(home) if home else None, port=port))


@contextmanager
def _graph() -> Iterator[ProductGraph]:
    g = ProductGraph.connect()
    try:
        yield g
    finally:
        g.close()


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                max_width: int = 60) -> None:
    t = Table(title=title, show_lines=False, show_header=any(str(c) for c in columns))  # key/value tables: no empty header
    for c in columns:
        t.add_column(str(c), overflow="fold", max_width=max_width)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)


def print_report(rep: IngestReport, show_rejections: int = 10) -> None:
    s = rep.summary()
    print_table(["", ""], [(k, v) for k, v in s.items()], title="ingest summary")
    if rep.rejections:
        err_console.print(f"[yellow]{rep.rows_rejected} rows rejected[/]; first ones:")
        for r in rep.rejections[:show_rejections]:
            err_console.print(f"  {r}", markup=False, highlight=False)


class _Progress:
    """tqdm over the bytes of the input file (only on a terminal)."""

    def __init__(self, label: str):
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="B", unit_scale=True, desc=label, disable=not sys.stderr.isatty(), leave=False)

    def __call__(self, done: int, total: int, rows: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix(rows=rows, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run_ingest(g: ProductGraph, file: str, mapping: str, batch_size: int = 2000, limit: int | None = None,
               rejects: str | None = None) -> IngestReport:
    prog = _Progress(Path(file).name)
    try:
        rep = g.ingest(file, mapping=mapping, batch_size=batch_size, progress=prog, limit=limit)
    finally:
        prog.close()
    if rejects:
        with open(rejects, "w", encoding="utf-8") as fh:
            for r in rep.rejections:
                fh.write(json.dumps({"file": r.file, "line": r.line, "field": r.field, "reason": r.reason},
                                    ensure_ascii=False) + "\n")
    return rep


@click.group()
def cli() -> None:
    """attrgraph: find and fill the attributes missing from a product catalog, with evidence."""


# -- db --------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Run the local Neo4j (ignored when NEO4J_URI points at another Neo4j)."""


_port = click.option("--port", type=int, default=None, help="Bolt port (default $ATTRGRAPH_NEO4J_PORT or 7687)")
_home = click.option("--home", default=None, help="data directory (default $ATTRGRAPH_HOME/neo4j)")


@db.command("start")
@_port
@_home
def db_start(port: int | None, home: str | None) -> None:
    """Build (first time only) and start the local Neo4j; harmless if it already runs."""
    server = _local(port, home)
    if not server.status().running:
        console.print(f"starting Neo4j at {server.settings.uri} (data in {server.settings.home}) ...")
    st = server.start()
    console.print(st.message)


@db.command("stop")
@_port
@_home
def db_stop(port: int | None, home: str | None) -> None:
    """Stop the local Neo4j cleanly."""
    console.print(_local(port, home).stop().message)


@db.command("status")
@_port
@_home
def db_status(port: int | None, home: str | None) -> None:
    """Say whether the local Neo4j runs, and where."""
    if os.environ.get("NEO4J_URI"):
        console.print(f"NEO4J_URI is set: attrgraph uses {os.environ['NEO4J_URI']}, not the local Neo4j")
    st = _local(port, home).status()
    console.print(st.message)
    if not st.running:
        sys.exit(3)


# -- schema, ingest, query --------------------------------------------------------------------
@cli.command()
@click.option("--fulltext", is_flag=True, help="also the full-text index product_text on title + description")
def schema(fulltext: bool) -> None:
    """Create the graph's constraints and indexes (idempotent) and list them."""
    with _graph() as g:
        objs = g.ensure_schema(fulltext=fulltext)
    print_table(["kind", "name"], [({"indexes": "index", "constraints": "constraint"}.get(k, k), n) for k, names in objs.items() for n in names], title="schema")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--mapping", "-m", required=True, help="a mapping YAML file, or a shipped one: myntra, bigbasket, taobao")
@click.option("--batch-size", type=int, default=2000, show_default=True, help="products per transaction")
@click.option("--limit", type=int, default=None, help="read at most this many rows")
@click.option("--rejects", type=click.Path(dir_okay=False), default=None, help="write rejected rows (JSON lines) here")
def ingest(file: str, mapping: str, batch_size: int, limit: int | None, rejects: str | None) -> None:
    """Ingest a catalog file (JSONL or CSV, gzip too) through a declarative mapping."""
    with _graph() as g:
        rep = run_ingest(g, file, mapping, batch_size, limit, rejects)
    print_report(rep)


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"{p!r}: expected key=value", param_hint="--param")
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out


@cli.command()
@click.argument("name", required=False)
@click.option("--param", "-p", "params", multiple=True, help="key=value (repeatable)")
@click.option("--list", "list_", is_flag=True, help="list the named queries and their parameters")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def query(name: str | None, params: tuple[str, ...], list_: bool, fmt: str) -> None:
    """Run a named query from queries/ and print its result."""
    if list_ or not name:
        rows = []
        for q in load_queries().values():
            ps = ", ".join(p.name + ("" if p.required else f"={p.default}") for p in q.params)
            rows.append((q.name, ps, q.description))
        print_table(["query", "parameters", "answers"], rows, title="named queries")
        return
    with _graph() as g:
        res = g.query(name, **_parse_params(params))
    if fmt == "json":
        click.echo(json.dumps(res.as_dicts(), ensure_ascii=False, default=str, indent=1))
    else:
        print_table(res.columns, res.rows, title=f"{name} ({len(res)} rows)")


@cli.command()
def stats() -> None:
    """Node and relationship counts of the product graph."""
    with _graph() as g:
        s = g.stats()
    print_table(["count", "value"], list(vars(s).items()), title="graph")


@cli.command()
@click.argument("product_id")
def product(product_id: str) -> None:
    """Show one product with its facts."""
    with _graph() as g:
        p = g.product(product_id)
    if p is None:
        err_console.print(f"no product with id {product_id!r}")
        sys.exit(1)
    console.print(f"[bold]{p.id}[/] {p.title}", markup=True, highlight=False)
    console.print(f"brand: {p.brand}   category: {p.category}", markup=False)
    print_table(["attribute", "value", "source"], [(f.attribute, f.value, f.source) for f in p.facts])


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="snapshot directory (default $ATTRGRAPH_HOME/snapshots/current)")
def snapshot(out: str | None) -> None:
    """Export the product graph into an on-disk snapshot for learning."""
    from .features import export

    with _graph() as g:
        s = export(g, out)
    print_table(["", ""], [("path", s.path), ("fingerprint", s.fingerprint[:16]), ("seconds", round(s.seconds, 2))]
                + [(f"nodes {k}", v) for k, v in s.nodes.items()] + [(f"edges {k}", v) for k, v in s.edges.items()],
                title="snapshot")


@cli.command()
@click.option("--snapshot", "snap_dir", type=click.Path(file_okay=False), default=None,
              help="snapshot directory (default $ATTRGRAPH_HOME/snapshots/current)")
@click.option("--encoder", default="minilm", show_default=True,
              help="text encoder: minilm (transformer) | static (distilled from the transformer once, "
                   "much faster) | char-svd")
@click.option("--model-path", default=None,
              help="a local Hugging Face model directory for --encoder minilm or static (static distils it once)")
@click.option("--max-tokens", type=click.IntRange(8, 512), default=None,
              help="minilm: tokens read per text (default 48: the title and the description's opening; 128 reads more, "
                   "3.6x slower on long descriptions)")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
@click.option("--kge-model", default="TransE", show_default=True, help="any PyKEEN model name (TransE, RotatE, ComplEx, ...)")
@click.option("--kge-dim", type=int, default=64, show_default=True)
@click.option("--kge-epochs", type=int, default=50, show_default=True)
@click.option("--kge-seed", type=int, default=0, show_default=True)
@click.option("--no-text", is_flag=True, help="skip text embeddings")
@click.option("--no-kge", is_flag=True, help="skip KG embeddings")
@click.option("--write-neo4j", is_flag=True, help="also store product KG vectors in Neo4j as the `kge` property")
def features(snap_dir: str | None, encoder: str, model_path: str | None, max_tokens: int | None, threads: int | None,
             kge_model: str,
             kge_dim: int, kge_epochs: int, kge_seed: int, no_text: bool, no_kge: bool, write_neo4j: bool) -> None:
    """Compute text and KG embeddings for every node of a snapshot (cached; unchanged texts cost nothing)."""
    from gnn.kge import KgeConfig
    from gnn.snapshot import load_snapshot

    from .features import (TextFeatureConfig, compute_kge_features, compute_text_features,
                           default_snapshot_dir, write_kge_to_neo4j)

    snap = load_snapshot(snap_dir or default_snapshot_dir())
    if not no_text:
        kw: dict = {}
        if encoder in ("minilm", "static"):  # static: threads for its one-off distillation
            kw = {"model_path": model_path, "threads": threads}
        if max_tokens is not None:
            if encoder != "minilm":
                raise click.UsageError("--max-tokens applies to --encoder minilm only")
            kw["max_length"] = max_tokens
        prog = _Progress("encode texts")
        try:
            rep = compute_text_features(snap, TextFeatureConfig(encoder=encoder, encoder_kwargs=kw),
                                        progress=lambda d, t: prog(d, t, d))
        finally:
            prog.close()
        print_table(["", ""], list(vars(rep).items()), title="text features")
    if not no_kge:
        cfg = KgeConfig(model=kge_model, embedding_dim=kge_dim, epochs=kge_epochs, seed=kge_seed, threads=threads)
        krep = compute_kge_features(snap, cfg, progress=sys.stderr.isatty())
        print_table(["", ""], [(k, v) for k, v in vars(krep).items()], title="KG embeddings (held-out, filtered, type-restricted)")
        if write_neo4j:
            with _graph() as g:
                written = write_kge_to_neo4j(g.client, snap)
            console.print(f"kge vectors written to Neo4j: {written}")


@cli.command()
@click.option("--file", "file_", default=None, help="catalog to load (default: the shipped Myntra sample)")
@click.option("--mapping", default="myntra", show_default=True)
@click.option("--no-complete", is_flag=True, help="skip the completion run")
@click.option("--model", default=None, help="completion model (default gnn): gnn | tfidf | majority | kge")
def demo(file_: str | None, mapping: str, no_complete: bool, model: str | None) -> None:
    """Start the local Neo4j, ingest the shipped sample, show statistics and example queries, run a completion."""
    from .demo import run_demo

    run_demo(file_, mapping, complete_run=not no_complete, completion={"model": model} if model else None)


from .cli_rules import rules as _rules_group
from .cli_complete import complete_cmd as _complete_cmd, review as _review_group, runs as _runs_group
from .complete import CompleteError
cli.add_command(_rules_group)
cli.add_command(_complete_cmd)
cli.add_command(_runs_group)
cli.add_command(_review_group)
from .cli_model import predict_cmd as _predict_cmd, train_cmd as _train_cmd
cli.add_command(_train_cmd)
cli.add_command(_predict_cmd)
from .cli_extract import extract_group as _extract_group; cli.add_command(_extract_group)  # noqa: E702


def main() -> None:
    try:
        cli(standalone_mode=True)
    except (GraphError, IngestError, QueryError, GnnError, KBError, CompleteError) as e:
        err_console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
