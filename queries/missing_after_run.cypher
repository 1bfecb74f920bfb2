// Products in a category (and below) still missing an attribute after completion: no asserted value and no current prediction.
// param: attribute: str                 the attribute name, e.g. "Pattern"
// param: category: str                  a category path or name
// param: include_review: bool = true    a needs-review prediction counts as filled (false: only accepted ones do)
// param: limit: int = 100               at most this many rows
OPTIONAL MATCH (pending_run:CompletionRun)
WHERE pending_run.status = 'running' OR (pending_run.status = 'failed' AND coalesce(pending_run.cleaned, false) = false)
WITH collect(pending_run.id) AS pending  // runs not committed: no edge of theirs shown, what they replace still current
MATCH (c:Category) WHERE c.path = $category OR c.name = $category
MATCH (p:Product)-[:IN_CATEGORY]->(leaf:Category)-[:SUBCATEGORY_OF*0..]->(c)
WITH DISTINCT pending, p, leaf
WHERE NOT EXISTS { MATCH (p)-[:HAS_VALUE]->(:Value {attribute: $attribute}) }
  AND NOT EXISTS { MATCH (p)-[e:PREDICTED_VALUE]->() WHERE e.attribute = $attribute AND e.staged IS NULL AND NOT e.run_id IN pending
                   AND (e.current = true OR (e.superseded_by IN pending AND e.review IS NULL)) AND ($include_review OR e.verdict = 'accept') }
RETURN p.id AS id, p.title AS title, leaf.path AS category
ORDER BY id
LIMIT $limit
