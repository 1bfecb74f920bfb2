"""Text-encoding benchmark: texts/s on this machine for a whole catalog, cold and with a warm cache.

    python bench/bench_text.py [--file ../shared/data/myntra/styles.jsonl.gz] [--encoder minilm] [--limit N]

Product texts are built as the snapshot builds them (title + description, HTML stripped, capped).
The cold pass encodes everything into an empty cache; the warm pass asks again for the same texts
(the "unchanged catalog" case). Appends the figures to bench/results/text.jsonl.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._neo4j import git_commit  # noqa: E402
from gnn.text import EmbeddingCache, get_encoder  # noqa: E402
from ingest import shipped_mapping  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_TAG = re.compile(r"<[^>]{0,2000}>")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=ROOT.parent / "shared" / "data" / "myntra" / "styles.jsonl.gz")
    ap.add_argument("--mapping", default="myntra")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--threads", type=int, default=psutil.cpu_count())
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    m = shipped_mapping(args.mapping)
    texts = []
    with gzip.open(args.file, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if args.limit and i >= args.limit:
                break
            p = m.apply(json.loads(line))
            texts.append(" ".join(f"{p.title or ''}. {_TAG.sub(' ', p.description or '')}".split())[:1000])
    kw = {"threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length} \
        if args.encoder == "minilm" else {}
    enc = get_encoder(args.encoder, **kw)
    if hasattr(enc, "fit"):
        t = time.perf_counter()
        enc.fit(texts)
        fit_s = time.perf_counter() - t
    else:
        fit_s = 0.0
    out = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
           "encoder": args.encoder, "texts": len(texts), "threads": args.threads, "cpus": psutil.cpu_count(),
           "batch_size": args.batch_size, "max_length": args.max_length, "fit_seconds": round(fit_s, 2)}
    if args.encoder == "minilm":  # how much of max_length the texts fill (padding is cut by length sorting)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(enc.path), local_files_only=True)
        lens = np.array([len(x) for x in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]])
        out["tokens"] = {"mean": round(float(lens.mean()), 1), "median": int(np.median(lens)),
                         "at_max_length": round(float((lens >= args.max_length).mean()), 3)}
    # Other processes may share the cores: record the load and this process's CPU time beside wall time.
    out["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as d:
        cache = EmbeddingCache(Path(d) / "cache.sqlite")
        t = time.perf_counter()
        c0 = time.process_time()
        cache.encode(enc, texts)
        cold = time.perf_counter() - t
        cold_cpu = time.process_time() - c0
        t = time.perf_counter()
        cache.encode(enc, texts)
        warm = time.perf_counter() - t
        cache.close()
    out.update({"cold_seconds": round(cold, 2), "cold_texts_per_s": round(len(texts) / cold, 1),
                "cold_cpu_seconds": round(cold_cpu, 2), "cold_ms_cpu_per_text": round(1000 * cold_cpu / len(texts), 2),
                "warm_seconds": round(warm, 2), "warm_texts_per_s": round(len(texts) / warm, 1),
                "warm_speedup": round(cold / warm, 1),
                "peak_rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)})
    print(json.dumps(out, indent=1))
    with open(ROOT / "bench" / "results" / "text.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
