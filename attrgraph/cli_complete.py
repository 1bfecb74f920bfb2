"""``attrgraph complete``, ``attrgraph runs ...`` and ``attrgraph review ...``: thin commands over
:mod:`attrgraph.complete` and :mod:`graph.writeback` / :mod:`graph.runs`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from graph import runs as runs_db
from graph import writeback as wb

from .complete import CompleteError, CompletionConfig, CompletionResult, complete, parse_interval, run_every


def _cli():  # late import: cli imports this module
    from . import cli

    return cli


def _fmt_time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""


def print_summary(res: CompletionResult) -> None:
    c = _cli()
    cnt = res.counts
    rows: list[tuple[str, Any]] = [("run", res.run_id), ("status", res.status), ("mode", res.mode),
                                   ("model", f"{res.model} ({res.model_action})"), ("model version", res.model_version)]
    rows += [(k.replace("_", " "), v) for k, v in cnt.items()]
    m = res.metrics
    if m.get("valid_pairs"):
        rows += [("held-out top-1 accuracy", f"{m['valid_top1_accuracy']:.3f}"),
                 ("held-out ECE (cross-fitted)", f"{m['valid_ece']:.3f}")]
        if m.get("valid_precision_at_threshold") is not None:
            rows.append(("held-out precision / coverage at threshold (cross-fitted)",
                         f"{m['valid_precision_at_threshold']:.3f} / {m['valid_coverage_at_threshold']:.3f}"))
    rows += [(f"seconds {k}", f"{v:.2f}") for k, v in res.stages.items()]
    rows += [("seconds total", f"{res.seconds:.1f}"), ("report", res.report)]
    c.print_table(["", ""], rows, title="completion run", max_width=90)
    for n in res.notes:
        c.console.print(f"  {n}", markup=False, highlight=False)


def print_top(res: CompletionResult, n: int = 5, *, spread: bool = False) -> None:
    """The ``n`` most probable accepted predictions (or, with ``spread``, ``CompletionResult.showcase``: one
    per attribute, the informative attributes first) with what the model used and the rules' verdicts."""
    c = _cli()
    pick = res.showcase if spread else res.top
    top = pick(n) or pick(n, verdict=None)
    for p in top:
        c.console.print(f"[bold]{p.product}[/] {p.title or ''}", highlight=False)
        c.console.print(f"  {p.attribute} = {p.value!r}  p={p.p:.3f}  verdict={p.verdict}  ({p.category})",
                        markup=False, highlight=False)
        mu = p.model_used or {}
        if mu.get("only_candidate"):
            c.console.print("  model: the only value this attribute has", markup=False, highlight=False)
        elif "margin" in mu:
            parts = ", ".join(f"{k} {v:+.2f}" for k, v in mu.get("parts", {}).items())
            c.console.print(f"  model: margin {mu['margin']:+.2f} over {mu.get('runner_up')!r} ({parts})",
                            markup=False, highlight=False)
            if mu.get("text_features"):
                c.console.print("  text features it used: " + ", ".join(f"{f} ({w:+.2f})" for f, w in mu["text_features"]),
                                markup=False, highlight=False)
        if p.evidence:
            e = p.evidence
            c.console.print(f"  extracted{' (new to the graph)' if p.new else ''}: {e['field']}[{e['start']}:{e['end']}] "
                            f"{e['text']!r}, confidence {e['confidence']}", markup=False, highlight=False)
        if p.text_evidence:
            c.console.print(f"  text: {p.text_evidence}", markup=False, highlight=False)
        s = p.support or {}
        if s.get("category"):
            c.console.print(f"  {s['with_value_in_category']} of {s['category_products']} products in {s['category']} "
                            f"carry it", markup=False, highlight=False)
        if p.neighbours:
            c.console.print("  examples carrying it (not model inputs): "
                            + "; ".join(f"{x['id']} {str(x['title'] or '')[:40]}" for x in p.neighbours[:3]),
                            markup=False, highlight=False)
        if p.rules:
            c.console.print(f"  rules that could have fired and passed: {', '.join(p.rules)}", markup=False, highlight=False)
        if p.violations:
            c.console.print(f"  needs review: {'; '.join(p.violations)}", markup=False, highlight=False)


@click.command("complete")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="a YAML file of completion options (see README); command-line options override it")
@click.option("--model", default=None, help="gnn (default) | tfidf | majority | kge")
@click.option("--model-policy", type=click.Choice(["auto", "reuse", "retrain"]), default=None,
              help="reuse the saved model while few facts are new (auto), always reuse, or retrain")
@click.option("--rules", "rules", multiple=True, help="rule files or shipped names (repeatable), e.g. --rules myntra")
@click.option("--encoder", default=None, help="text encoder for the gnn: minilm | static | char-svd")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--work-dir", default=None, help="runs, model, snapshot and state (default $ATTRGRAPH_HOME/completion/<graph>)")
@click.option("--full", is_flag=True, help="ignore the incremental state: score every product")
@click.option("--dry-run", is_flag=True, help="do everything but write to the graph (report still written)")
@click.option("--every", default=None, help="run again every interval (6h, 30m, 1d) until stopped")
@click.option("--top", "top_n", type=int, default=5, show_default=True, help="print this many top predictions")
@click.option("--extractor", default=None, metavar="PATH",
              help="a saved extractor (extract.load): spans of titles and descriptions join the candidates, and "
                   "values new to the graph are proposed for review (config key `extractor`)")
@click.option("--accept-new-values", is_flag=True, default=None,
              help="let a new value be accepted without review when rules and threshold allow (default: review)")
def complete_cmd(config_file: str | None, model: str | None, model_policy: str | None, rules: tuple[str, ...],
                 encoder: str | None, threads: int | None, work_dir: str | None, full: bool, dry_run: bool,
                 every: str | None, top_n: int, extractor: str | None, accept_new_values: bool | None) -> None:
    """Predict missing attributes, validate them with the rules, write them back with explanations."""
    c = _cli()
    cfg = CompletionConfig.load(config_file, model=model, model_policy=model_policy, rules=list(rules) or None,
                                encoder=encoder, threads=threads, work_dir=work_dir, extractor=extractor,
                                accept_new_values=accept_new_values or None)

    def say(msg: str) -> None:
        if sys.stderr.isatty() or msg.startswith("["):
            c.err_console.print(msg, markup=False, highlight=False)

    def once(own_runs: set[str] | None = None) -> CompletionResult:
        with c._graph() as g:
            res = complete(g, config=cfg, full=full, dry_run=dry_run, progress=say, own_runs=own_runs)
        print_summary(res)
        if top_n:
            c.console.print("[bold]top predictions[/]")
            print_top(res, top_n)
        return res

    if every is None:
        once()
        return
    interval = parse_interval(every)
    c.console.print(f"running a completion every {every} ({interval:.0f} s) until stopped (Ctrl-C or SIGTERM)")
    run_every(interval, once, on_error=lambda e: c.err_console.print(f"error: {e}", markup=False, highlight=False))


# -- runs -----------------------------------------------------------------------------------------------
@click.group()
def runs() -> None:
    """Completion runs recorded in the graph: list, show, roll back, unlock."""


@runs.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--status", type=click.Choice(list(runs_db.RUN_STATUSES)), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def runs_list(limit: int, status: str | None, fmt: str) -> None:
    """The most recent completion runs."""
    c = _cli()
    with c._graph() as g:
        rs = runs_db.list_runs(g.client, limit=limit, status=status)
    if fmt == "json":
        click.echo(json.dumps([{k: v for k, v in r.__dict__.items() if k not in ("extra", "config")} for r in rs],
                              indent=1, default=str))
        return
    c.print_table(["run", "status", "mode", "model", "started", "finished", "scored", "skipped", "accepted",
                   "review", "written"],
                  [(r.id, r.status, r.mode, r.model, _fmt_time(r.started_at), _fmt_time(r.finished_at),
                    r.counts.get("products_scored"), r.counts.get("products_skipped"), r.counts.get("accepted"),
                    r.counts.get("needs_review"), r.counts.get("written")) for r in rs], title="completion runs")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="print the record as JSON")
def runs_show(run_id: str, as_json: bool) -> None:
    """One run: configuration, model version, counts, metrics, stage times."""
    c = _cli()
    with c._graph() as g:
        r = runs_db.get_run(g.client, run_id)
    d = {k: v for k, v in r.__dict__.items() if k != "extra"}
    if as_json:
        click.echo(json.dumps(d, indent=1, default=str))
        return
    rows = [(k, v) for k, v in d.items() if k not in ("counts", "metrics", "stages", "config")]
    rows += [(f"count {k}", v) for k, v in r.counts.items()]
    rows += [(f"seconds {k}", v) for k, v in r.stages.items()]
    val = r.metrics.get("validation") or {}
    rows += [(f"metric {k}", v) for k, v in r.metrics.items() if not isinstance(v, dict)]
    rows += [(f"validation {k}", v) for k, v in val.items() if not isinstance(v, (dict, list))]
    rows += [("config", json.dumps(r.config, sort_keys=True))]
    c.print_table(["", ""], rows, title=f"completion run {r.id}", max_width=100)


@runs.command("rollback")
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def runs_rollback(run_id: str, yes: bool) -> None:
    """Remove exactly that run's predictions and make the ones it replaced current again."""
    c = _cli()
    from .complete import rollback

    with c._graph() as g:
        r = runs_db.get_run(g.client, run_id)
        if not yes and sys.stdin.isatty():
            click.confirm(f"roll back run {r.id} ({r.status}, {r.counts.get('written', 0)} predictions written)?", abort=True)
        res = rollback(g, run_id)
    c.print_table(["", ""], [("run", res.run_id), ("predictions removed", res.deleted),
                             ("earlier predictions current again", res.restored),
                             ("earlier predictions now superseded by a later run", res.reassigned),
                             ("proposed values it created, removed", res.proposals_deleted),
                             ("aliases it recorded, removed", res.aliases_deleted)], title="rollback")


@runs.command("unlock")
@click.option("--force", is_flag=True, help="clear the lock even if its run looks alive")
def runs_unlock(force: bool) -> None:
    """Clear a stale completion lock (the next run marks the dead run failed and undoes its writes)."""
    c = _cli()
    with c._graph() as g:
        info = runs_db.lock_state(g.client)
        if info.holder is None:
            c.console.print("the completion lock is free")
            return
        why = runs_db.stale_reason(info, stale_seconds=120.0)
        if why is None and not force:
            raise CompleteError(f"the lock is held by run {info.holder} (pid {info.pid} on {info.host}), which looks "
                                f"alive; use --force if you are sure it is not")
        runs_db.force_unlock(g.client)
    c.console.print(f"lock of run {info.holder} cleared ({why or 'forced'})", markup=False)


# -- review ----------------------------------------------------------------------------------------------
@click.group()
def review() -> None:
    """Accept a prediction as an asserted fact, or reject it so no later run proposes it again."""


def _review(action: str, product: str, attribute: str, value: str | None, by: str | None, note: str | None) -> None:
    c = _cli()
    with c._graph() as g:
        fn = wb.accept_prediction if action == "accept" else wb.reject_prediction
        r = fn(g.client, product, attribute, value, by=by, note=note)
    c.console.print(f"{r.action}: product {r.product}, {r.attribute} = {r.value!r}"
                    + (f" (predicted by run {r.run_id}, p={r.p:.3f})" if r.run_id else ""), markup=False, highlight=False)


_by = click.option("--by", default=None, help="who decided (stored with the decision)")
_note = click.option("--note", default=None, help="why (stored with the decision)")


@review.command("accept")
@click.argument("product")
@click.argument("attribute")
@click.argument("value", required=False)
@_by
@_note
def review_accept(product: str, attribute: str, value: str | None, by: str | None, note: str | None) -> None:
    """Make the product's current prediction for ATTRIBUTE (or VALUE's) an asserted fact (source 'review').

    A value new to the graph (proposed by extraction) becomes an asserted value (status accepted)."""
    _review("accept", product, attribute, value, by, note)


@review.command("reject")
@click.argument("product")
@click.argument("attribute")
@click.argument("value", required=False)
@_by
@_note
def review_reject(product: str, attribute: str, value: str | None, by: str | None, note: str | None) -> None:
    """Record that the prediction (or VALUE) is wrong for the product: never proposed again."""
    _review("reject", product, attribute, value, by, note)


@review.command("list")
@click.option("--run", "run_id", default=None, help="only this run's predictions")
@click.option("--verdict", type=click.Choice(["accept", "needs_review"]), default="needs_review", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True)
def review_list(run_id: str | None, verdict: str, limit: int) -> None:
    """Current predictions waiting for a decision, best first."""
    c = _cli()
    with c._graph() as g:
        ps = wb.predictions(g.client, run_id=run_id, current=True, verdict=verdict, limit=limit)
    c.print_table(["product", "attribute", "value", "p", "verdict", "run", "why review"],
                  [(p.product, p.attribute, p.value, f"{p.p:.3f}", p.verdict, p.run_id, "; ".join(p.violations))
                   for p in ps], title=f"{len(ps)} predictions")
