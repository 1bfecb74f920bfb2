"""Text-encoding benchmark: texts/s on this machine for a whole catalog, cold and with a warm cache.

    python bench/bench_text.py [--file ../shared/data/myntra/styles.jsonl.gz] [--mapping myntra]
                               [--encoders minilm,static] [--sample 2000] [--limit N] [--threads 2]

No database: the catalog file is read through the ingest readers and mapping (``bench/_catalog.py``),
and product texts are built as ``attrgraph features`` builds them (``gnn.text.product_text``:
title + description, HTML stripped, capped at 1,000 characters).

Every encoder of ``--encoders`` is timed in the same run on the same texts: the cold pass encodes
into an empty cache, the warm pass asks again for the same texts (the "unchanged catalog" case).
``minilm`` is slow (~20-40 texts/s on 2 cores), so it is timed on a seeded sample of ``--sample``
texts and its full-catalog time is extrapolated from that rate (``extrapolated``); the other
encoders are timed on the whole catalog *and* on the same sample, and ``speedup_vs_minilm`` is the
ratio of cold rates on that common sample. ``minilm@N`` times the transformer at N tokens per text
(``--encoders minilm@128,minilm@48``: the default 48 against the old 128); the first minilm entry is
the reference of ``speedup_vs_minilm``. For ``static`` the one-off distillation from the
transformer is timed separately (``distill_seconds``, into a fresh directory); its cold pass starts
from the distilled table on disk, as every run after the first does. One JSON line per encoder is
appended to bench/results/text.jsonl (a shared ``run`` id ties the lines of one run together).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._catalog import CATALOGS, read_products, text_of  # noqa: E402
from bench._neo4j import git_commit  # noqa: E402
from gnn.text import EmbeddingCache, get_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def timed_passes(enc, texts: list[str]) -> dict:
    """Cold (empty cache) and warm (same texts again) passes; wall and CPU seconds."""
    out: dict = {"load_avg_1m_at_start": round(os.getloadavg()[0], 2)}  # other jobs may share the cores
    with tempfile.TemporaryDirectory() as d:
        cache = EmbeddingCache(Path(d) / "cache.sqlite")
        t, c0 = time.perf_counter(), time.process_time()
        cache.encode(enc, texts)
        cold, cold_cpu = time.perf_counter() - t, time.process_time() - c0
        t = time.perf_counter()
        cache.encode(enc, texts)
        warm = time.perf_counter() - t
        cache.close()
    out.update({"texts": len(texts), "cold_seconds": round(cold, 2), "cold_texts_per_s": round(len(texts) / cold, 1),
                "cold_cpu_seconds": round(cold_cpu, 2), "cold_ms_cpu_per_text": round(1000 * cold_cpu / len(texts), 3),
                "warm_seconds": round(warm, 2), "warm_texts_per_s": round(len(texts) / warm, 1),
                "warm_speedup": round(cold / warm, 1)})
    return out


def token_stats(tok, texts: list[str], max_length: int | None) -> dict:
    kw = {"truncation": True, "max_length": max_length} if max_length else {"truncation": False, "verbose": False}
    lens = np.array([len(x) for x in tok(texts, add_special_tokens=max_length is not None, **kw)["input_ids"]])
    out = {"mean": round(float(lens.mean()), 1), "median": int(np.median(lens)), "max": int(lens.max())}
    if max_length:
        out["at_max_length"] = round(float((lens >= max_length).mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=None, help="catalog file (default: the mapping's shared catalog)")
    ap.add_argument("--mapping", default="myntra")
    ap.add_argument("--encoders", "--encoder", default="minilm,static", help="comma-separated registry names")
    ap.add_argument("--model-path", default=None, help="local HF model directory (minilm and static)")
    ap.add_argument("--threads", type=int, default=psutil.cpu_count())
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=None,
                    help="minilm: tokens per text (default: the encoder's, 48); `minilm@N` in --encoders sets it per entry")
    ap.add_argument("--pca-dims", type=int, default=256, help="static: PCA dimension")
    ap.add_argument("--sample", type=int, default=2000, help="texts minilm is timed on (0: all)")
    ap.add_argument("--limit", type=int, default=None, help="read at most N catalog rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="print only, do not append to bench/results/text.jsonl")
    args = ap.parse_args()
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    path = args.file or CATALOGS[args.mapping]
    texts = [text_of(p) for p in read_products(path, args.mapping, args.limit)]
    n_sample = min(args.sample or len(texts), len(texts))
    sample = [texts[i] for i in sorted(random.Random(args.seed).sample(range(len(texts)), n_sample))]
    run = uuid.uuid4().hex[:8]
    base = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(), "run": run,
            "file": path.name, "catalog_texts": len(texts), "sample_texts": len(sample),
            "threads": args.threads, "cpus": psutil.cpu_count()}
    results: dict[str, dict] = {}
    for name in encoders:
        out = dict(base, encoder=name)
        if name == "minilm" or name.startswith("minilm@"):
            kw = {"max_length": int(name.partition("@")[2])} if "@" in name else (
                {"max_length": args.max_length} if args.max_length else {})
            enc = get_encoder("minilm", model_path=args.model_path, threads=args.threads,
                              batch_size=args.batch_size, **kw)
            out.update({"batch_size": args.batch_size, "max_length": enc.max_length})
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(enc.path), local_files_only=True)
            out["tokens"] = token_stats(tok, sample, enc.max_length)  # how much of max_length the texts fill
            out["sample"] = timed_passes(enc, sample)
            rate = out["sample"]["cold_texts_per_s"]
            out["extrapolated"] = {"catalog_cold_seconds": round(len(texts) / rate, 1), "from_sample_texts": len(sample)}
        elif name == "static":
            with tempfile.TemporaryDirectory() as d:  # the one-off distillation, timed in a fresh directory
                first = get_encoder("static", model_path=args.model_path, threads=args.threads,
                                    pca_dims=args.pca_dims, cache_dir=d)
                first.load()
                assert first.distilled
                out.update({"distill_seconds": round(first.distill_seconds, 2), "dim": first.dim,
                            "pca_dims": args.pca_dims, "version": first.version})
                out["tokens_untruncated"] = token_stats(first._tokenizer(), sample, None)
                # cold = no embedding cache; the table is read from disk (and the tokenizer loaded) inside
                out["sample"] = timed_passes(get_encoder("static", model_path=args.model_path, pca_dims=args.pca_dims,
                                                         cache_dir=d), sample)
                out["catalog"] = timed_passes(get_encoder("static", model_path=args.model_path, pca_dims=args.pca_dims,
                                                          cache_dir=d), texts)
        else:
            enc = get_encoder(name)
            if hasattr(enc, "fit"):
                t = time.perf_counter()
                enc.fit(texts)
                out["fit_seconds"] = round(time.perf_counter() - t, 2)
            out["sample"] = timed_passes(enc, sample)
            out["catalog"] = timed_passes(enc, texts)
        results[name] = out
    # the reference: the first minilm entry (``minilm@128`` first: the speed-up over the 128-token encoder)
    ref_name = next((n for n in results if n == "minilm" or n.startswith("minilm@")), None)
    if ref_name is not None:
        ref = results[ref_name]["sample"]["cold_texts_per_s"]
        for name, out in results.items():
            if name != ref_name:
                out["speedup_vs_minilm"] = round(out["sample"]["cold_texts_per_s"] / ref, 1)
                out["speedup_reference"] = ref_name
    for out in results.values():
        out["peak_rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    print(json.dumps(list(results.values()), indent=1))
    if args.no_save:
        return
    with open(ROOT / "bench" / "results" / "text.jsonl", "a", encoding="utf-8") as fh:
        for out in results.values():
            fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
