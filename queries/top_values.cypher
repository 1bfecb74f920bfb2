// The most frequent values of an attribute, over the whole graph or within a category (and below it).
// param: attribute: str                 the attribute name, e.g. "baseColour"
// param: category: str = null           a category path or name; null for every category
// param: limit: int = 20                at most this many values
MATCH (p:Product)-[:HAS_VALUE]->(v:Value {attribute: $attribute})
WHERE $category IS NULL
   OR EXISTS { MATCH (p)-[:IN_CATEGORY]->(:Category)-[:SUBCATEGORY_OF*0..]->(c:Category)
               WHERE c.path = $category OR c.name = $category }
WITH v, count(p) AS products
WITH collect({v: v, n: products}) AS rows, sum(products) AS total
UNWIND rows AS row
RETURN row.v.value AS value, row.v.norm AS norm, row.n AS products,
       round(toFloat(row.n) / total, 4) AS share
ORDER BY products DESC, value
LIMIT $limit
