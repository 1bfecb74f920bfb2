// Products that carry a given value of an attribute (matched case-insensitively on the normalised value).
// param: attribute: str                 the attribute name, e.g. "Fabric"
// param: value: str                     the value as written, e.g. "Cotton"
// param: limit: int = 100               at most this many rows
MATCH (v:Value {attribute: $attribute})
WHERE v.norm = toLower(trim($value)) OR v.value = $value
MATCH (p:Product)-[:HAS_VALUE]->(v)
OPTIONAL MATCH (p)-[:IN_CATEGORY]->(c:Category)
RETURN p.id AS id, p.title AS title, c.path AS category, v.value AS value
ORDER BY id
LIMIT $limit
