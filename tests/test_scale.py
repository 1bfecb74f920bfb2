"""One host, a million products: the memory-mapped and chunked paths equal the in-memory ones, and use less memory.

* snapshot rows, edges and feature matrices opened as memory maps (``load_snapshot(mmap=True)``) equal the
  in-memory snapshot, exported from the real Neo4j (product records read in keyset pages);
* text features written chunk by chunk into a memory-mapped file equal the in-memory ones (float16: their
  float16 rounding);
* the chunked TF-IDF fit equals scikit-learn's ``fit_transform`` entry for entry;
* the GNN fitted with a chunked text matrix and chunked scoring equals the in-memory fit, and prediction
  streamed in product chunks equals the whole prediction;
* peak traced memory of the chunked stages on a synthetic 50k-product input stays below a share of the
  in-memory path's (a ratio measured in the same test, not an absolute figure).
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests._deps import need

from gnn.snapshot import NODE_TYPES, JsonlRows, load_snapshot
from gnn.text import register_encoder
from graph import ProductGraph
from graph.export import export_snapshot
from tests.conftest import SAMPLE, write_jsonl



@register_encoder("test-hash")
class _HashEncoder:
    """A deterministic, model-free encoder for tests: character trigram counts hashed into 24 dimensions."""

    name, dim, version = "test-hash", 24, "1"

    def __init__(self, **_: object) -> None:
        pass

    def encode(self, texts: Sequence[str], progress: object = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for j in range(max(0, len(t) - 2)):
                out[i, sum(map(ord, t[j: j + 3])) % self.dim] += 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-9)


def _sample_rows(n: int) -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


@pytest.fixture(scope="module")
def exported(neo4j_settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 products of the shipped sample, ingested into the test Neo4j and exported (page size 64)."""
    tmp = tmp_path_factory.mktemp("scale")
    with ProductGraph.connect(neo4j_settings.uri, neo4j_settings.user, neo4j_settings.password,
                              neo4j_settings.database) as g:
        g.clear(confirm=True)
        g.ensure_schema()
        g.ingest(write_jsonl(tmp / "c.jsonl", _sample_rows(600)), mapping="myntra")
        export_snapshot(g.client, tmp / "snap", page_size=64)
        export_snapshot(g.client, tmp / "snap-one-page", page_size=10**6)
    return tmp


@pytest.mark.neo4j
def test_paged_export_and_memory_mapped_snapshot_equal_the_in_memory_one(exported: Path) -> None:
    a = load_snapshot(exported / "snap", mmap=False)
    b = load_snapshot(exported / "snap", mmap=True)
    one = load_snapshot(exported / "snap-one-page", mmap=False)
    assert a.fingerprint == one.fingerprint  # pages of 64 give the bytes of one page
    assert a.num_nodes("product") == 600
    for t in NODE_TYPES:
        assert isinstance(b.nodes[t], JsonlRows)
        assert list(b.nodes[t]) == a.nodes[t]
        assert b.keys(t) == a.keys(t)
        assert b.texts(t) == a.texts(t)
        assert b.nodes[t][len(a.nodes[t]) - 1] == a.nodes[t][-1] == b.nodes[t][-1]
    assert b.nodes["product"][5:9] == a.nodes["product"][5:9]
    with pytest.raises(IndexError):
        b.nodes["product"][600]
    for rel, e in a.edges.items():
        assert isinstance(b.edges[rel], np.memmap) and not b.edges[rel].flags.writeable
        assert np.array_equal(b.edges[rel], e)


@pytest.mark.neo4j
def test_chunked_memory_mapped_text_features_equal_the_in_memory_ones(exported: Path) -> None:
    from attrgraph.features import TextFeatureConfig, compute_text_features

    whole = load_snapshot(exported / "snap", mmap=False)
    ref = {t: _HashEncoder().encode(whole.texts(t)) for t in NODE_TYPES}
    snap = load_snapshot(exported / "snap", mmap=True)
    rep = compute_text_features(snap, TextFeatureConfig(encoder="test-hash", chunk=7,
                                                        cache_path=str(exported / "cache.sqlite")))
    assert rep.texts == sum(whole.num_nodes(t) for t in NODE_TYPES)
    for t in NODE_TYPES:
        m = snap.features.get(f"text.{t}")
        assert isinstance(m, np.memmap) and m.dtype == np.float32
        assert np.array_equal(m, ref[t])
        assert snap.features.meta(f"text.{t}")["encoder"] == "test-hash"
    compute_text_features(snap, TextFeatureConfig(encoder="test-hash", chunk=50, dtype="float16",
                                                  cache_path=str(exported / "cache.sqlite")))
    m16 = snap.features.get("text.product")
    assert m16.dtype == np.float16 and np.array_equal(m16, ref["product"].astype(np.float16))
    assert not list(snap.features.root.glob(".*tmp*"))  # no temporary file left


def test_chunked_tfidf_fit_equals_fit_transform() -> None:
    need("sklearn")
    from sklearn.feature_extraction.text import TfidfVectorizer

    from gnn.baselines import TOKEN_PATTERN
    from gnn.textmatrix import build_csr, fit_tfidf

    rows = _sample_rows(1500)
    docs = [f"{r['title']} {json.dumps(r.get('articleAttributes') or {})}" for r in rows]
    for make in (lambda: TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, token_pattern=TOKEN_PATTERN,
                                         max_features=3000, dtype=np.float32),
                 lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=3, sublinear_tf=True,
                                         dtype=np.float32)):
        a = make()
        Xa = a.fit_transform(docs).tocsr()
        b, blocks = fit_tfidf(make(), lambda: iter(docs), chunk=333)
        Xb = build_csr(blocks, rows=len(docs), in_memory_below=0)  # assembled on disk, memory-mapped
        assert isinstance(Xb.data, np.memmap)
        assert a.vocabulary_ == b.vocabulary_ and np.array_equal(a.idf_, b.idf_)
        for x, y in ((Xa.indptr, Xb.indptr), (Xa.indices, Xb.indices), (Xa.data, Xb.data)):
            assert np.array_equal(x, np.asarray(y))  # every entry, in the same order
        assert np.array_equal(a.transform(docs[:50]).toarray(), b.transform(docs[:50]).toarray())


@pytest.mark.neo4j
def test_chunked_model_and_streamed_prediction_equal_the_in_memory_ones(exported: Path) -> None:
    need("torch_geometric")
    need("sklearn")
    from gnn.completion import CompletionPredictor, load_predictions

    rng = np.random.default_rng(0)
    snap = load_snapshot(exported / "snap", mmap=False)
    for t in NODE_TYPES:
        snap.features.put(f"text.{t}", t, rng.standard_normal((snap.num_nodes(t), 8)).astype(np.float32),
                          encoder="random", version="1")
    fits = {}
    for mm, chunk in ((False, 0), (True, 150)):
        snap = load_snapshot(exported / "snap", mmap=mm)
        kw = {"epochs": 1, "hidden": 16, "threads": 1, "max_seconds": 1e9, "chunk_rows": chunk, "batch_size": 128}
        fits[mm] = (snap, CompletionPredictor.fit(snap, model="gnn", model_kwargs=kw))
    (sa, a), (sb, b) = fits[False], fits[True]
    assert isinstance(b.model._runtime["tfidf_csr"].data, np.memmap)  # the text matrix lives on disk
    ma, mb = a.model, b.model
    assert ma.vectorizer.vocabulary_ == mb.vectorizer.vocabulary_
    Xa, Xb = ma._runtime["tfidf_csr"], mb._runtime["tfidf_csr"]
    assert np.array_equal(Xa.indices, np.asarray(Xb.indices)) and np.array_equal(Xa.data, np.asarray(Xb.data))
    assert [h["loss"] for h in ma.history] == pytest.approx([h["loss"] for h in mb.history], rel=1e-6)
    ca, cb = a.predict(sa), b.predict(sb)
    assert np.array_equal(ca.product, cb.product) and np.array_equal(ca.attribute, cb.attribute)
    assert (ca.candidate[:, 0] == cb.candidate[:, 0]).mean() >= 0.995
    # streamed prediction, 97 products at a time, written part by part, equals the whole prediction
    n = b.predict_to(sb, exported / "preds", chunk_products=97)
    got = load_predictions(exported / "preds")
    assert n == len(cb) == len(got)
    for k in ("product", "attribute", "threshold"):
        assert np.array_equal(getattr(got, k), getattr(cb, k))
    top_equal = (got.candidate[:, 0] == cb.candidate[:, 0]).mean()
    assert top_equal >= 0.999
    assert np.nanmax(np.abs(got.prob[:, 0] - cb.prob[:, 0])) < 1e-4  # float32 rounding of row blocks
    assert (exported / "preds").stat().st_mode & 0o777 == 0o700


# -- memory ----------------------------------------------------------------------------------------------------
def _synthetic_snapshot(root: Path, n: int, seed: int = 0) -> Path:
    """A snapshot of ``n`` products with titles and descriptions (words drawn from a 200-word vocabulary: a
    catalog repeats its phrases, so its rows, not its vocabulary, grow with it)."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(200)])
    (root / "nodes").mkdir(parents=True)
    (root / "edges").mkdir()
    with open(root / "nodes" / "product.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            t = " ".join(words[rng.integers(0, 200, 4)])
            d = " ".join(words[rng.integers(0, 200, 24)])
            fh.write(json.dumps({"key": f"p{i:07d}", "title": t, "description": d, "props": {}}) + "\n")
    for t in NODE_TYPES[1:]:
        (root / "nodes" / f"{t}.jsonl").write_text("", encoding="utf-8")
    np.save(root / "edges" / "has_value.npy", np.zeros((2, 0), np.int64))
    manifest = {"format": 1, "nodes": {"product": n, **{t: 0 for t in NODE_TYPES[1:]}},
                "edges": {"has_value": {"source": "product", "target": "value", "count": 0}}, "fingerprint": "synthetic"}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def _peak(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_chunked_stages_take_a_fraction_of_the_in_memory_memory(tmp_path: Path) -> None:
    need("sklearn")
    from sklearn.feature_extraction.text import TfidfVectorizer

    from gnn.baselines import TOKEN_PATTERN, product_text
    from gnn.textmatrix import build_csr, chunks, fit_tfidf

    root = _synthetic_snapshot(tmp_path / "snap", 50_000)
    # opening the snapshot: every record as a dict, or line offsets over a memory map
    whole, peak_whole = _peak(lambda: load_snapshot(root, mmap=False))
    mapped, peak_mapped = _peak(lambda: load_snapshot(root, mmap=True))
    assert whole.num_nodes("product") == mapped.num_nodes("product") == 50_000
    assert peak_mapped < 0.1 * peak_whole, (peak_mapped, peak_whole)

    def make() -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, token_pattern=TOKEN_PATTERN,
                               max_features=200_000, dtype=np.float32)

    def in_memory():
        texts = [product_text(r, 300) for r in whole.nodes["product"]]
        return make().fit_transform(texts)

    def chunked():
        _, blocks = fit_tfidf(make(), lambda: (product_text(r, 300) for r in mapped.nodes["product"]), chunk=2500)
        return build_csr(blocks, rows=50_000, in_memory_below=0, directory=tmp_path / "csr")

    Xa, peak_a = _peak(in_memory)
    Xb, peak_b = _peak(chunked)
    assert Xa.shape == Xb.shape and Xa.nnz == Xb.nnz
    assert np.array_equal(Xa.indices[:1000], np.asarray(Xb.indices[:1000]))
    # (the vocabulary of every n-gram seen is held by both; the rows only by the in-memory path)
    assert peak_b < 0.5 * peak_a, (peak_b, peak_a)
    # streaming the texts to an encoder chunk by chunk holds one chunk of texts, not all of them
    _, peak_texts_all = _peak(lambda: len(mapped.texts("product")))
    _, peak_texts_chunks = _peak(lambda: sum(len(p) for p in chunks(mapped.iter_texts("product"), 4096)))
    assert peak_texts_chunks < 0.2 * peak_texts_all, (peak_texts_chunks, peak_texts_all)


# -- the README's figures --------------------------------------------------------------------------------------
def test_readme_scale_block_equals_what_the_renderer_renders(tmp_path: Path) -> None:
    from bench import scale_table as st

    have = st.readme_block(st.README)
    assert have is not None, "README.md lacks the <!-- scale:begin --> ... <!-- scale:end --> markers"
    assert have == st.scale_block(), ("README.md's scale block differs from bench/results/scale.jsonl: run "
                                      "`.venv/bin/python bench/scale_table.py --write-readme` (never edit inside it)")
    # the renderer reads the records: a new record changes the block, an incomplete one says what is missing
    rec = {"when": "2026-12-04T16:00:00+00:00", "commit": "abc1234", "products": 1000, "encoder": "static",
           "feature_dtype": "float32", "gnn_options": {}, "threads": 1, "cpus": 2, "load_avg_1m_at_start": 1.0,
           "neo4j": {"heap_mb": 1024, "pagecache_mb": 512}, "complete": False, "missing": "the generated catalog: model, predict not finished",
           "targets": {"peak_rss_mb": 16384, "rss_stages": ["snapshot", "model", "predict"], "time_ratio": 1.3,
                       "timed_stages": ["snapshot", "features", "model", "predict"]},
           "runs": {"baseline": {"products": 500, "complete": True, "stages_s": {"snapshot": 1.0},
                                 "ms_per_product": {"snapshot": 2.0}, "peak_rss_mb": {"snapshot": 100.0},
                                 "peak_rss_anon_mb": {"snapshot": 60.0}, "peak_rss_file_mb": {"snapshot": 40.0},
                                 "jvm_peak_rss_mb": 700.0}}}
    f = tmp_path / "scale.jsonl"
    f.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    text = st.scale_block(f)
    assert "commit `abc1234`" in text and "**Incomplete**: the generated catalog: model, predict not finished" in text
    assert "| Myntra, first rows | 500 | snapshot | 1.0 | 2.00 | 100 (60 / 40) |" in text
    assert "time per product (snapshot + features + model + predict): no ratio" in text
