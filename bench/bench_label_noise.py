"""How much of the completion error no model can remove: facts that disagree between products whose
inputs are identical.

    python bench/bench_label_noise.py [--snapshot DIR]

Products are grouped by everything a completion model reads of them besides the other products'
facts: title, description, product properties, brand and leaf category. Within a group any model
that is a function of those inputs gives every product the same answer for an attribute, so at best
the group's most frequent value: the facts that differ from it are an error floor (a lower bound of
the Bayes error on those inputs). The same grouped by title alone shows how much of the title's
ambiguity the rest of the inputs must resolve. Printed per attribute and overall, over the
(product, attribute) pairs of the whole snapshot; appended to bench/results/label_noise.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from bench._neo4j import git_commit
    from graph.settings import attrgraph_home
    from gnn.protocol import leaf_categories
    from gnn.snapshot import load_snapshot

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshot", type=Path, default=attrgraph_home() / "snapshots" / "current")
    args = ap.parse_args()
    snap = load_snapshot(args.snapshot)
    leaf = leaf_categories(snap)
    brand = {int(p): int(b) for p, b in snap.edges["has_brand"].T}
    keys = {
        "all inputs": [json.dumps([r.get("title"), r.get("description"), r.get("props"), brand.get(i), int(leaf[i])],
                                  sort_keys=True, default=str) for i, r in enumerate(snap.nodes["product"])],
        "title only": [" ".join(str(r.get("title") or "").casefold().split()) for r in snap.nodes["product"]],
    }
    vals = snap.nodes["value"]
    facts: dict[tuple[int, str], set[str]] = defaultdict(set)
    for p, v in snap.edges["has_value"].T.tolist():
        facts[(p, vals[v]["attribute"])].add(vals[v]["norm"])
    for p, b in brand.items():
        facts[(p, "@brand")].add(str(b))
    rec = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
           "snapshot": str(args.snapshot), "fingerprint": snap.fingerprint, "groupings": {}}
    for name, inputs in keys.items():
        groups: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for (p, a), vs in facts.items():
            groups[(inputs[p], a)][min(vs)] += 1  # one value per pair (multi-valued pairs: a fixed choice)
        per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # pairs, pairs in a group of 2+, floor errors
        for (_, a), c in groups.items():
            n = sum(c.values())
            per[a][0] += n
            if n > 1:
                per[a][1] += n
                per[a][2] += n - max(c.values())
        total = [sum(x[i] for x in per.values()) for i in range(3)]
        print(f"\n## grouped by {name}\n{snap.num_nodes('product')} products, {total[0]} (product, attribute) pairs; "
              f"{total[1]} in groups of identical inputs; error floor {total[2]} pairs = {total[2] / total[0]:.4f} "
              f"(Hits@1 ceiling {1 - total[2] / total[0]:.4f})")
        print("| attribute | pairs | in groups of 2+ | floor errors | Hits@1 ceiling |")
        print("|---|---|---|---|---|")
        for a, (n, d, e) in sorted(per.items(), key=lambda kv: -kv[1][2])[:10]:
            print(f"| {a} | {n} | {d} | {e} | {1 - e / n:.4f} |")
        rec["groupings"][name] = {"pairs": total[0], "pairs_in_groups": total[1], "floor_errors": total[2],
                                  "hits1_ceiling": 1 - total[2] / total[0],
                                  "per_attribute": {a: {"pairs": n, "in_groups": d, "floor_errors": e}
                                                    for a, (n, d, e) in per.items()}}
    out = ROOT / "bench" / "results" / "label_noise.jsonl"
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
