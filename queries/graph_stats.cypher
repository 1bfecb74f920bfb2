// Node and relationship counts of the product graph (nodes counts every node, ingest run records included; brands and values leave out the proposals of extraction that no fact asserts yet).
MATCH (n) WITH count(n) AS nodes
RETURN nodes,
       COUNT { (:Product) } AS products, COUNT { MATCH (b:Brand) WHERE coalesce(b.status, '') <> 'proposed' OR EXISTS { (:Product)-[:HAS_BRAND]->(b) } } AS brands, COUNT { (:Category) } AS categories,
       COUNT { (:Attribute) } AS attributes, COUNT { MATCH (v:Value) WHERE coalesce(v.status, '') <> 'proposed' OR EXISTS { (:Product)-[:HAS_VALUE]->(v) } } AS values,
       COUNT { ()-[:HAS_VALUE]->() } AS has_value, COUNT { ()-[:HAS_BRAND]->() } AS has_brand,
       COUNT { ()-[:IN_CATEGORY]->() } AS in_category, COUNT { ()-[:SUBCATEGORY_OF]->() } AS subcategory_of,
       COUNT { ()-[:RETRACTED]->() } AS retracted, COUNT { (:IngestRun) } AS ingest_runs
