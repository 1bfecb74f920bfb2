"""Product properties as tokens (gnn.properties): any schema, strings, numbers, booleans, lists."""

from __future__ import annotations

import numpy as np

from gnn.properties import PropertyTokens


def test_tokens_by_the_shape_of_the_values() -> None:
    props = [{"year": 2010 + i % 3, "price": float(i), "tier": ["Gold", "gold ", "Silver"][i % 3], "sale": i % 2 == 0,
              "tags": ["a", "B"], "sku": f"sku-{i}"} for i in range(300)] + [None, {}]
    pt = PropertyTokens(bins=4).fit(props)
    v = pt.vocabulary
    assert {"year=#2010", "year=#2011", "year=#2012"} <= set(v)  # few distinct numbers: one token each
    assert {f"price=#q{i}" for i in range(4)} == {t for t in v if t.startswith("price=")}  # many: quantile bins
    assert {"tier=gold", "tier=silver"} == {t for t in v if t.startswith("tier=")}  # case-folded, trimmed
    assert {"sale=#true", "sale=#false", "tags=a", "tags=b"} <= set(v)
    assert not any(t.startswith("sku=") for t in v)  # unique per product: no signal, no token
    X = pt.transform([{"year": 2011, "price": 299.0, "tier": "GOLD"}, {"year": 1999, "tier": "unseen"}, None])
    assert X.shape == (3, len(v))
    row = X[0].toarray()[0]
    assert set(np.flatnonzero(row)) == {v["year=#2011"], v["price=#q3"], v["tier=gold"]}
    np.testing.assert_allclose(np.linalg.norm(row), 1.0, rtol=1e-6)
    assert X[1].nnz == 0 and X[2].nnz == 0  # unknown values and no properties: no tokens


def test_hostile_and_huge_values_are_data() -> None:
    evil = "x' }) DETACH DELETE n //\x00\x07`" + "y" * 10_000
    props = [{"note": evil, "n": float("nan")}, {"note": evil, "n": float("inf")}, {"note": "ok"}]
    pt = PropertyTokens().fit(props)
    (tok,) = [t for t in pt.vocabulary if t.startswith("note=")]
    assert len(tok) <= len("note=") + 64 and "\x00" not in tok and "\x07" not in tok
    assert not any(t.startswith("n=") for t in pt.vocabulary)  # non-finite numbers are skipped
    assert pt.transform(props)[0].nnz == 1
