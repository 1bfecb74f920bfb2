// Products in a category (or any category below it) that have no asserted value for an attribute.
// param: attribute: str                 the attribute name, e.g. "Pattern"
// param: category: str                  a category path ("Apparel > Topwear > Tshirts") or name ("Tshirts")
// param: limit: int = 100               at most this many rows
MATCH (c:Category) WHERE c.path = $category OR c.name = $category
MATCH (p:Product)-[:IN_CATEGORY]->(leaf:Category)-[:SUBCATEGORY_OF*0..]->(c)
WHERE NOT EXISTS { MATCH (p)-[:HAS_VALUE]->(:Value {attribute: $attribute}) }
RETURN DISTINCT p.id AS id, p.title AS title, leaf.path AS category
ORDER BY id
LIMIT $limit
