"""``attrgraph rules ...``: audit asserted facts, mine rules, lint rule files, list rule types."""

from __future__ import annotations

import sys

import click

import kb

from .rules import check_rules, check_tree, mine_rules


class _Progress:
    """tqdm over products read (only on a terminal)."""

    def __init__(self, label: str):
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit=" products", desc=label, disable=not sys.stderr.isatty(), leave=False)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


@click.group()
def rules() -> None:
    """The rule layer (kb): audit the graph's facts against rules, mine rules, check rule files."""


_GROUPS = ("rule", "type", "severity", "category", "attribute")


@rules.command("check")
@click.option("--rules", "-r", "rule_files", multiple=True,
              help="a rules YAML file, or a shipped name (" + ", ".join(kb.shipped_rules()) + "); repeatable")
@click.option("--no-default", is_flag=True, help="do not include the shipped general rules (kb/rules/default.yaml)")
@click.option("--by", "by", default="rule,category,attribute", show_default=True,
              help="group violations by these, comma-separated: " + ", ".join(_GROUPS))
@click.option("--top", type=int, default=25, show_default=True, help="rows of the grouped table")
@click.option("--examples", type=int, default=1, show_default=True, help="example messages per rule")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="write every violation to this .jsonl or .csv file")
@click.option("--fail-on", type=click.Choice(["never", "reject", "review"]), default="never", show_default=True,
              help="exit 1 when a violation of this severity (or worse) is found")
@click.option("--page-size", type=int, default=5000, show_default=True, help="products read per query")
def check(rule_files: tuple[str, ...], no_default: bool, by: str, top: int, examples: int, out: str | None,
          fail_on: str, page_size: int) -> None:
    """Audit the asserted facts in Neo4j: every fact judged against the rules and the rest of the catalog."""
    from .cli import _graph, console, err_console, print_table

    keys = tuple(k.strip() for k in by.split(",") if k.strip())
    bad = [k for k in keys if k not in _GROUPS]
    if bad:
        raise click.BadParameter(f"{bad[0]!r}; valid: {', '.join(_GROUPS)}", param_hint="--by")
    prog = _Progress("reading the catalog")
    try:
        with _graph() as g:
            res = check_rules(g, rule_files, defaults=not no_default, page_size=page_size, progress=prog)
    except kb.CategoryTreeError as e:
        prog.close()
        err_console.print("the category graph is not a tree:", markup=False)
        for p in e.report.problems:
            err_console.print(f"  {p.kind}: {p.message}", markup=False, highlight=False)
        sys.exit(1)
    except kb.KBError as e:
        raise _fail(e) from None
    finally:
        prog.close()
    rep, cat = res.report, res.loaded.catalog
    t = res.loaded.tree
    for w in res.warnings:
        err_console.print(f"warning: {w}", markup=False, highlight=False)
    print_table(["", ""], [
        ("products", len(cat)), ("facts checked", rep.facts_checked), ("brands checked", rep.brands_checked),
        ("rules", len(res.context.compiled)), ("violations", len(rep)), ("facts flagged", rep.facts_flagged),
        ("category tree", f"ok: {t.nodes} categories, {len(t.roots)} roots, {t.depth} levels"),
    ], title="rules check")
    counts = rep.rule_counts()
    print_table(["rule", "type", "severity", "violations", "from"],
                [(c.rule.id, c.rule.type, c.rule.severity, counts.get(c.rule.id, 0), c.rule.source)
                 for c in res.context.compiled], title="violations per rule")
    if len(rep):
        grouped = rep.count_by(*keys)
        print_table([*keys, "violations"], [(*k, n) for k, n in grouped[:top]],
                    title=f"violations by {', '.join(keys)} (top {min(top, len(grouped))} of {len(grouped)})")
    if examples > 0 and len(rep):
        shown: dict[str, int] = {}
        rows = []
        for j in range(len(rep)):
            rid = res.context.compiled_rule(int(rep.v_rules[j])).rule.id
            if shown.get(rid, 0) >= examples:
                continue
            shown[rid] = shown.get(rid, 0) + 1
            v = rep.violation(j)
            rows.append((v.rule, v.product, v.message))
        print_table(["rule", "product", "message"], rows, title="examples", max_width=100)
    if out:
        path = rep.write(out)
        console.print(f"{len(rep)} violations written to {path}", highlight=False, markup=False)
    worst = int(rep.status.max(initial=0))
    if (fail_on == "reject" and worst >= 2) or (fail_on == "review" and worst >= 1):
        sys.exit(1)


@rules.command("mine")
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True, help="the rules YAML to write")
@click.option("--min-products", type=int, default=kb.MiningConfig.min_products, show_default=True,
              help="products a category (with its subtree) needs to get rules")
@click.option("--min-support", type=int, default=kb.MiningConfig.min_support, show_default=True,
              help="implications: products with condition and consequence")
@click.option("--min-confidence", type=float, default=kb.MiningConfig.min_confidence, show_default=True,
              help="implications: share of the products with the condition that have the consequence")
@click.option("--min-lift", type=float, default=kb.MiningConfig.min_lift, show_default=True,
              help="value implications: confidence over the consequence's share in the category")
@click.option("--applicability-min-support", type=int, default=kb.MiningConfig.applicability_min_support,
              show_default=True, help="products of the category with the attribute")
@click.option("--applicability-min-share", type=float, default=kb.MiningConfig.applicability_min_share,
              show_default=True, help="share of the category's products with the attribute")
@click.option("--levels", default=None, help="tree levels to mine at, e.g. 1,3 (default: all)")
@click.option("--no-value-implications", is_flag=True, help="only 'category implies value' implications")
@click.option("--severity", type=click.Choice(list(kb.SEVERITIES)), default="review", show_default=True)
def mine(out: str, min_products: int, min_support: int, min_confidence: float, min_lift: float,
         applicability_min_support: int, applicability_min_share: float, levels: str | None,
         no_value_implications: bool, severity: str) -> None:
    """Mine applicability and implication rules from the asserted facts and write them as YAML."""
    from .cli import _graph, console, print_table

    try:
        lv = tuple(int(x) for x in levels.split(",")) if levels else None
    except ValueError:
        raise click.BadParameter(f"{levels!r}: expected levels like 1,2", param_hint="--levels") from None
    try:
        config = kb.MiningConfig(min_products, min_support, min_confidence, min_lift, applicability_min_support,
                                 applicability_min_share, lv, not no_value_implications, severity)
        prog = _Progress("reading the catalog")
        try:
            with _graph() as g:
                mined, path = mine_rules(g, out, config, progress=prog)
        finally:
            prog.close()
    except kb.KBError as e:
        raise _fail(e) from None
    by_type: dict[str, int] = {}
    for r in mined:
        by_type[r.type] = by_type.get(r.type, 0) + 1
    cats = sum(len(r.params.categories) for r in mined if r.type == "applicability")
    print_table(["mined", "count"], [("implication rules", by_type.get("implication", 0)),
                                     ("categories with an applicability list", cats)], title="rules mine")
    console.print(f"written to {path}", highlight=False, markup=False)


@rules.command("lint")
@click.argument("files", nargs=-1, required=True)
def lint(files: tuple[str, ...]) -> None:
    """Load rule files (paths or shipped names) and report the first error of each, with file, line and key."""
    from .cli import console, err_console, print_table

    failed = 0
    rows = []
    for f in files:
        try:
            rs = kb.load_rules(f)
        except kb.KBError as e:
            failed += 1
            err_console.print(f"error: {e}", markup=False, highlight=False)
            continue
        for r in rs:
            rows.append((f, r.id, r.type, r.severity, r.source))
    if rows:
        print_table(["file", "rule", "type", "severity", "from"], rows, title="rules")
    if failed:
        sys.exit(1)
    console.print(f"{len(rows)} rules, no errors", highlight=False, markup=False)


@rules.command("types")
def types() -> None:
    """List the registered rule types."""
    from .cli import print_table

    print_table(["type", "default severity", "checks"],
                [(t.name, t.default_severity, t.summary) for t in kb.RULE_TYPES.values()], title="rule types",
                max_width=100)


@rules.command("tree")
def tree() -> None:
    """Check that the category graph in Neo4j is a tree (no cycles, one parent per category)."""
    from .cli import _graph, console, err_console

    with _graph() as g:
        rep = check_tree(g)
    if rep.ok:
        console.print(f"ok: {rep.nodes} categories, {len(rep.roots)} roots, {rep.depth} levels", markup=False)
        return
    for p in rep.problems:
        err_console.print(f"{p.kind}: {p.message}", markup=False, highlight=False)
    sys.exit(1)


__all__ = ["rules"]
