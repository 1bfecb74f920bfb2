// Coverage of attributes per leaf category: how many of its products have each attribute.
// param: category: str = null           restrict to this category path or name and everything below it
// param: min_products: int = 1          skip leaf categories with fewer products
// param: limit: int = 1000              at most this many rows
MATCH (leaf:Category)<-[:IN_CATEGORY]-(p:Product)
WHERE $category IS NULL
   OR EXISTS { MATCH (leaf)-[:SUBCATEGORY_OF*0..]->(c:Category) WHERE c.path = $category OR c.name = $category }
WITH leaf, count(p) AS products
WHERE products >= $min_products
MATCH (leaf)<-[:IN_CATEGORY]-(p:Product)-[:HAS_VALUE]->(v:Value)
WITH leaf, products, v.attribute AS attribute, count(DISTINCT p) AS with_value
RETURN leaf.path AS category, attribute, with_value, products,
       round(toFloat(with_value) / products, 4) AS coverage
ORDER BY category, coverage DESC, attribute
LIMIT $limit
