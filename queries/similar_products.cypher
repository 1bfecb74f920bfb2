// Products nearest to a product by KG embedding (needs `attrgraph features --write-neo4j`, which adds the vector index).
// param: id: str                        the product id
// param: k: int = 10                    how many neighbours
MATCH (p:Product {id: $id}) WHERE p.kge IS NOT NULL
CALL db.index.vector.queryNodes('product_kge', $k + 1, p.kge) YIELD node, score
WITH p, node, score WHERE node <> p
RETURN node.id AS id, node.title AS title, round(score, 4) AS score
ORDER BY score DESC
LIMIT $k
