// Everything attached to one product: its facts (values, brand, category path) and retracted facts.
// param: id: str                        the product id
MATCH (p:Product {id: $id})
CALL (p) {
  MATCH (p)-[r:HAS_VALUE]->(v:Value)
  RETURN 'HAS_VALUE' AS relation, v.attribute AS attribute, v.value AS value, r.source AS source, r.ingested_at AS at
  UNION ALL
  MATCH (p)-[r:HAS_BRAND]->(b:Brand)
  RETURN 'HAS_BRAND' AS relation, 'brand' AS attribute, b.name AS value, r.source AS source, r.ingested_at AS at
  UNION ALL
  MATCH (p)-[r:IN_CATEGORY]->(c:Category)
  RETURN 'IN_CATEGORY' AS relation, 'category' AS attribute, c.path AS value, r.source AS source, r.ingested_at AS at
  UNION ALL
  MATCH (p)-[r:RETRACTED]->(x)
  RETURN 'RETRACTED' AS relation, coalesce(x.attribute, toLower(r.relation)) AS attribute,
         coalesce(x.value, x.path, x.name) AS value, r.source AS source, r.retracted_at AS at
}
RETURN p.id AS id, p.title AS title, relation, attribute, value, source, toString(at) AS at
ORDER BY relation, attribute, value
