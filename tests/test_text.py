"""Text encoders: offline loading, agreement with sentence-transformers, the registry, the cache."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gnn.errors import EncoderError  # noqa: E402
from gnn.text import ENCODERS, CharNgramSvdEncoder, EmbeddingCache, default_model_path, get_encoder  # noqa: E402

TITLES = [
    "Nike Men Blue Running Shoes",
    "Nike Men Navy Blue Sports Shoes",
    "Lakme Absolute Lip Gloss Pink",
    "Fabindia Women Cotton Kurta Red",
    "耐克男士跑步鞋",
]


@pytest.fixture(scope="module")
def minilm():
    return get_encoder("minilm", batch_size=4, threads=2)


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_minilm_loads_offline_and_matches_sentence_transformers(no_network, monkeypatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    enc = get_encoder("minilm", batch_size=2, threads=2)
    v = enc.encode(TITLES)
    assert v.shape == (5, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(default_model_path()), device="cpu").encode(TITLES, normalize_embeddings=True)
    assert np.min(np.sum(v * ref, axis=1)) > 0.999  # the same model and pooling
    # semantics: the two Nike shoes are closer to each other than to lip gloss
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_any_local_model_directory(tmp_path: Path, minilm) -> None:
    import shutil

    copy = tmp_path / "my-model"
    shutil.copytree(default_model_path(), copy)
    enc = get_encoder("minilm", model_path=str(copy), batch_size=8)
    assert np.allclose(enc.encode(TITLES[:2]), minilm.encode(TITLES[:2]), atol=1e-5)
    with pytest.raises(EncoderError, match="not a Hugging Face model directory"):
        get_encoder("minilm", model_path=str(tmp_path))


def test_registry_errors() -> None:
    assert {"minilm", "char-svd"} <= set(ENCODERS)
    with pytest.raises(EncoderError, match="unknown text encoder 'bert-huge'; valid: char-svd, minilm"):
        get_encoder("bert-huge")


def test_char_svd(tmp_path: Path) -> None:
    corpus = TITLES * 3 + [f"product number {i} colour {c}" for i, c in enumerate(["red", "blue", "green"] * 5)]
    enc = CharNgramSvdEncoder(dim=8).fit(corpus)
    v = enc.encode(TITLES)
    assert v.shape == (5, 8)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]  # shared character n-grams
    p = tmp_path / "enc.npz"
    enc.save(p)
    back = CharNgramSvdEncoder.load(p)
    assert back.version == enc.version and np.allclose(back.encode(TITLES), v)
    other = CharNgramSvdEncoder(dim=8).fit(corpus[::-1] + ["something else entirely"])
    assert other.version != enc.version  # a different fit is a different version: no stale cache hits
    with pytest.raises(EncoderError, match="not fitted"):
        CharNgramSvdEncoder().encode(["x"])


class CountingEncoder:
    """Wraps an encoder and counts the texts it is really asked to encode."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, []

    @property
    def version(self) -> str:
        return self.inner.version

    def encode(self, texts, progress=None):
        self.calls.append(list(texts))
        return self.inner.encode(texts, progress)


def test_cache_hits_and_misses(tmp_path: Path) -> None:
    enc = CountingEncoder(CharNgramSvdEncoder(dim=8).fit(TITLES * 4))
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = cache.encode(enc, TITLES + [TITLES[0]])  # a duplicate is encoded once
    assert enc.calls == [TITLES] and (cache.misses, cache.hits) == (6, 0)
    second = cache.encode(enc, TITLES)
    assert len(enc.calls) == 1 and cache.hits == 5  # nothing re-encoded
    assert np.array_equal(first[:5], second)
    cache.close()
    reopened = EmbeddingCache(tmp_path / "cache.sqlite")
    mixed = reopened.encode(enc, [TITLES[2], "a brand new title"])
    assert enc.calls[-1] == ["a brand new title"] and (reopened.hits, reopened.misses) == (1, 1)
    assert np.array_equal(mixed[0], first[2])
    refit = CountingEncoder(CharNgramSvdEncoder(dim=8).fit(TITLES * 4 + ["more text"]))
    reopened.encode(refit, TITLES)  # another version: a miss for every text
    assert refit.calls == [TITLES]
    reopened.close()


def test_an_interrupted_encode_keeps_the_chunks_it_finished(tmp_path: Path) -> None:
    class Failing(CountingEncoder):
        def encode(self, texts, progress=None):
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().encode(texts, progress)

    enc = Failing(CharNgramSvdEncoder(dim=8).fit(TITLES * 4))
    cache = EmbeddingCache(tmp_path / "cache.sqlite", chunk=2)
    with pytest.raises(KeyboardInterrupt):
        cache.encode(enc, TITLES)
    assert enc.calls == [TITLES[:2], TITLES[2:4]]
    again = CountingEncoder(enc.inner)
    out = cache.encode(again, TITLES)
    assert again.calls == [TITLES[4:]]  # the first two chunks came from the cache
    assert np.allclose(out, enc.inner.encode(TITLES), atol=1e-6)
    cache.close()
