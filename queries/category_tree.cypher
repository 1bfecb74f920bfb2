// The category tree: every category with its parent, depth and how many products sit in it or below it.
// param: root: str = null               only this category path or name and what is below it
MATCH (c:Category)
WHERE $root IS NULL
   OR EXISTS { MATCH (c)-[:SUBCATEGORY_OF*0..]->(r:Category) WHERE r.path = $root OR r.name = $root }
OPTIONAL MATCH (c)-[:SUBCATEGORY_OF]->(parent:Category)
RETURN c.path AS path, c.name AS name, c.level AS level, parent.path AS parent,
       COUNT { (:Product)-[:IN_CATEGORY]->(c) } AS direct_products,
       COUNT { (:Product)-[:IN_CATEGORY]->(:Category)-[:SUBCATEGORY_OF*0..]->(c) } AS products
ORDER BY path
