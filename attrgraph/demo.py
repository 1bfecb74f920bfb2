"""The main job on a fresh machine: local Neo4j, the shipped sample, statistics, example queries."""

from __future__ import annotations

import os
from pathlib import Path

from graph import LocalNeo4j, ProductGraph

SAMPLE = Path(__file__).resolve().parent / "sample" / "myntra_sample.jsonl.gz"


# The demo's completion: the default model (gnn) with a training budget that suits the sample on 2 cores.
DEMO_COMPLETION = {"rules": ["myntra"], "model_kwargs": {"max_seconds": 180.0}}


def run_demo(file: str | None = None, mapping: str = "myntra", *, complete_run: bool = True,
             completion: dict | None = None) -> None:
    from .cli import console, print_report, print_table, run_ingest

    if not os.environ.get("NEO4J_URI"):
        server = LocalNeo4j()
        console.print(f"[bold]1. local Neo4j[/] at {server.settings.uri} (first start builds it with Maven) ...")
        console.print("   " + server.start().message, markup=False)
    else:
        console.print(f"[bold]1. Neo4j[/] from NEO4J_URI={os.environ['NEO4J_URI']}", markup=False)
    path = Path(file) if file else SAMPLE
    with ProductGraph.connect() as g:
        console.print(f"[bold]2. ingest[/] {path.name} with mapping {mapping!r}", highlight=False)
        print_report(run_ingest(g, str(path), mapping))
        console.print("[bold]3. the graph[/]")
        print_table(["count", "value"], list(vars(g.stats()).items()))
        console.print("[bold]4. attribute coverage[/] (query attribute_coverage, category Topwear, first 12 rows)")
        cov = g.coverage("Topwear", min_products=20)[:12]
        print_table(["category", "attribute", "with value", "products", "coverage"],
                    [(c.category, c.attribute, c.with_value, c.products, c.coverage) for c in cov])
        console.print("[bold]5. products missing an attribute[/] "
                      "(attrgraph query products_missing_attribute -p attribute=Pattern -p category=Tshirts -p limit=8)")
        res = g.query("products_missing_attribute", attribute="Pattern", category="Tshirts", limit=8)
        print_table(res.columns, res.rows)
        if complete_run:
            _demo_completion(g, {**DEMO_COMPLETION, **(completion or {})})
    where = ("the NEO4J_URI server" if os.environ.get("NEO4J_URI")
             else f"Bolt, user neo4j, password in {LocalNeo4j().settings.password_file}")
    console.print("Explore further: `attrgraph query --list`, `attrgraph product ID`, `attrgraph rules check`, "
                  f"or Cypher in any Neo4j client ({where}). Stop with `attrgraph db stop`.",
                  markup=False, highlight=False)


def _demo_completion(g: ProductGraph, options: dict) -> None:
    import sys

    from .cli import console, err_console
    from .cli_complete import print_summary, print_top
    from .complete import complete

    console.print(f"[bold]6. completion run[/] (attrgraph complete: model {options.get('model', 'gnn')}, "
                  f"rules {', '.join(options.get('rules', []) or ['default'])}) ...")
    res = complete(g, progress=lambda m: err_console.print("   " + m, markup=False, highlight=False)
                   if m.startswith("[") or sys.stderr.isatty() else None, **options)
    print_summary(res)
    console.print("[bold]7. predictions across attributes, with what the model used[/] "
                  "(one per attribute, the attributes with the most distinct values first)")
    print_top(res, 5, spread=True)
    top = res.top(1) or res.top(1, verdict=None)
    if top:
        p = top[0]
        console.print("[bold]8. see them in Neo4j[/] (Cypher, or the named queries)", highlight=False)
        console.print(f"""   MATCH (p:Product)-[e:PREDICTED_VALUE {{current: true}}]->(v)
   WHERE e.p >= 0.9 RETURN p.id, p.title, e.attribute, v.value, e.p, e.verdict, e.explanation
   ORDER BY e.p DESC LIMIT 20
   attrgraph query prediction_explanation -p product={p.product} -p attribute="{p.attribute}"
   attrgraph query run_changes -p run={res.run_id}
   attrgraph runs show {res.run_id}      attrgraph review accept {p.product} "{p.attribute}"
   report: {res.report}""", markup=False, highlight=False)
