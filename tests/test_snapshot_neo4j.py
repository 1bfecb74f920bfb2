"""Snapshot export from the real Neo4j, loaded back without it (round trip, stable ids, fingerprint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._deps import need

from gnn.errors import SnapshotError
from gnn.snapshot import NODE_TYPES, load_snapshot
from graph import ProductGraph
from graph.export import export_snapshot
from ingest import Mapping
from tests.conftest import write_jsonl

pytestmark = pytest.mark.neo4j

M = Mapping.from_yaml(
    "name: snap\nid: id\ntitle: title\ndescription: desc\nbrand: brand\n"
    "category: {field: cat, separator: /}\nattributes: [colour, size]\n")

ROWS = [
    {"id": "p3", "title": "Blue shirt", "desc": "<b>soft</b> cotton", "brand": "Acme", "cat": "Apparel/Shirts",
     "colour": "Blue", "size": ["M", "L"]},
    {"id": "p1", "title": "Red shirt", "brand": "Acme", "cat": "Apparel/Shirts", "colour": "Red"},
    {"id": "p2", "title": "Red shoe", "brand": "Zeta", "cat": "Footwear/Shoes", "colour": "Red", "size": "42"},
    {"id": "p4", "title": "Mystery", "colour": "Green"},  # no brand, no category
]


def test_round_trip(empty_graph: ProductGraph, tmp_path: Path) -> None:
    empty_graph.ingest(write_jsonl(tmp_path / "c.jsonl", ROWS), mapping=M)
    summary = export_snapshot(empty_graph.client, tmp_path / "snap")
    snap = load_snapshot(tmp_path / "snap")
    assert snap.keys("product") == ["p1", "p2", "p3", "p4"]  # integer ids follow sorted keys
    assert snap.keys("brand") == ["acme", "zeta"]
    assert snap.keys("category") == ["Apparel", "Apparel > Shirts", "Footwear", "Footwear > Shoes"]
    assert snap.keys("value") == [("colour", "blue"), ("colour", "green"), ("colour", "red"),
                                  ("size", "42"), ("size", "l"), ("size", "m")]
    ix = snap.index
    hv = {(snap.keys("product")[s], snap.keys("value")[d]) for s, d in snap.edges["has_value"].T}
    expected = {("p3", ("colour", "blue")), ("p3", ("size", "m")), ("p3", ("size", "l")), ("p1", ("colour", "red")),
                ("p2", ("colour", "red")), ("p2", ("size", "42")), ("p4", ("colour", "green"))}
    assert hv == expected
    assert {(snap.keys("product")[s], snap.keys("brand")[d]) for s, d in snap.edges["has_brand"].T} == {
        ("p1", "acme"), ("p2", "zeta"), ("p3", "acme")}
    assert {(snap.keys("category")[s], snap.keys("category")[d]) for s, d in snap.edges["subcategory_of"].T} == {
        ("Apparel > Shirts", "Apparel"), ("Footwear > Shoes", "Footwear")}
    assert snap.edges["of_attribute"].shape == (2, 6)
    assert summary.nodes == {t: snap.num_nodes(t) for t in NODE_TYPES}
    # texts: HTML stripped, title first
    assert snap.texts("product")[ix["product"]["p3"]] == "Blue shirt. soft cotton"
    assert snap.texts("value")[ix["value"][("size", "42")]] == "size: 42"
    # provenance without credentials
    assert snap.manifest["source"]["uri"] == empty_graph.client.settings.uri
    pw = empty_graph.client.settings.password
    assert pw and pw not in (tmp_path / "snap" / "manifest.json").read_text()


def test_stable_ids_and_fingerprint(empty_graph: ProductGraph, tmp_path: Path) -> None:
    empty_graph.ingest(write_jsonl(tmp_path / "c.jsonl", ROWS), mapping=M)
    a = export_snapshot(empty_graph.client, tmp_path / "a")
    b = export_snapshot(empty_graph.client, tmp_path / "b")
    assert a.fingerprint == b.fingerprint
    again = export_snapshot(empty_graph.client, tmp_path / "a")  # replaces in place
    assert again.fingerprint == a.fingerprint and not list(tmp_path.glob("a.*"))
    empty_graph.ingest(write_jsonl(tmp_path / "d.jsonl", [{"id": "p5", "title": "New", "colour": "Red"}]), mapping=M)
    c = export_snapshot(empty_graph.client, tmp_path / "c")
    assert c.fingerprint != a.fingerprint and c.nodes["product"] == 5


def test_hetero_data(empty_graph: ProductGraph, tmp_path: Path) -> None:
    torch = need("torch")
    empty_graph.ingest(write_jsonl(tmp_path / "c.jsonl", ROWS), mapping=M)
    export_snapshot(empty_graph.client, tmp_path / "snap")
    snap = load_snapshot(tmp_path / "snap")
    x = {"product": np.arange(8, dtype=np.float32).reshape(4, 2)}
    data = snap.to_hetero_data(x)
    assert data["product"].num_nodes == 4 and data["value"].num_nodes == 6
    assert torch.equal(data["product"].x, torch.arange(8.0).reshape(4, 2))
    assert data["product", "has_value", "value"].edge_index.shape == (2, 7)
    assert data["category", "subcategory_of", "category"].edge_index.dtype == torch.long
    data.validate(raise_on_error=True)


def test_feature_store_and_errors(empty_graph: ProductGraph, tmp_path: Path) -> None:
    empty_graph.ingest(write_jsonl(tmp_path / "c.jsonl", ROWS), mapping=M)
    export_snapshot(empty_graph.client, tmp_path / "snap")
    snap = load_snapshot(tmp_path / "snap")
    m = np.ones((4, 3), np.float32)
    snap.features.put("demo.product", "product", m, producer="test")
    again = load_snapshot(tmp_path / "snap")
    assert np.array_equal(again.features.get("demo.product"), m)
    meta = again.features.meta("demo.product")
    assert meta["snapshot"] == snap.fingerprint and meta["producer"] == "test"
    with pytest.raises(SnapshotError, match="3 rows for 4 product"):
        snap.features.put("bad", "product", np.ones((3, 2)))
    with pytest.raises(SnapshotError, match="no feature 'nope'"):
        snap.features.get("nope")
    with pytest.raises(SnapshotError, match="not a snapshot"):
        load_snapshot(tmp_path)


def test_kge_vectors_to_neo4j_and_similar_products(empty_graph: ProductGraph, tmp_path: Path) -> None:
    from attrgraph.features import write_kge_to_neo4j

    empty_graph.ingest(write_jsonl(tmp_path / "c.jsonl", ROWS), mapping=M)
    export_snapshot(empty_graph.client, tmp_path / "snap")
    snap = load_snapshot(tmp_path / "snap")
    # hand-made vectors: p1 and p3 point the same way, p2 elsewhere, p4 has none (mask 0)
    vec = np.array([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0, 0, 0]], np.float32)
    for t in NODE_TYPES:
        n = snap.num_nodes(t)
        snap.features.put(f"kge.{t}", t, vec if t == "product" else np.ones((n, 3), np.float32))
        snap.features.put(f"kge_mask.{t}", t, np.array([1, 1, 1, 0], np.float32) if t == "product" else np.ones(n, np.float32))
    assert write_kge_to_neo4j(empty_graph.client, snap) == {"product": 3}
    p4 = empty_graph.client.read("MATCH (p:Product {id: 'p4'}) RETURN p.kge AS kge")
    assert p4[0]["kge"] is None  # no embedding, not a zero vector
    res = empty_graph.query("similar_products", id="p1", k=2).as_dicts()
    assert [r["id"] for r in res] == ["p3", "p2"] and res[0]["score"] > res[1]["score"]
    assert len(empty_graph.query("similar_products", id="p4")) == 0


def test_product_properties_are_exported_without_bookkeeping_or_vectors(empty_graph: ProductGraph, tmp_path: Path) -> None:
    m = Mapping.from_yaml(
        "name: snapprops\nid: id\ntitle: title\nattributes: [colour]\n"
        "properties:\n  price: {field: price, type: float}\n  year: {field: year, type: int}\n  tier: tier\n")
    rows = [{"id": "a", "title": "A", "colour": "Red", "price": 9.5, "year": 2011, "tier": "gold `x'} //"},
            {"id": "b", "title": "B", "colour": "Red"}]
    empty_graph.ingest(write_jsonl(tmp_path / "p.jsonl", rows), mapping=m)
    empty_graph.client.write("MATCH (p:Product {id: 'a'}) SET p.kge = [0.1, 0.2]")  # a vector: not a catalog property
    snap = load_snapshot(export_snapshot(empty_graph.client, tmp_path / "snap").path)
    recs = {r["key"]: r for r in snap.nodes["product"]}
    assert recs["a"]["props"] == {"price": 9.5, "tier": "gold `x'} //", "year": 2011}  # sorted, as stored
    assert recs["b"]["props"] == {}
