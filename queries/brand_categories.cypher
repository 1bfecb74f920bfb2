// Where a brand sells: the leaf categories of its products, with counts.
// param: brand: str                     the brand name (case-insensitive)
// param: limit: int = 50                at most this many rows
MATCH (b:Brand) WHERE b.key = toLower(trim($brand)) OR b.name = $brand
MATCH (b)<-[:HAS_BRAND]-(p:Product)-[:IN_CATEGORY]->(c:Category)
RETURN b.name AS brand, c.path AS category, count(p) AS products
ORDER BY products DESC, category
LIMIT $limit
