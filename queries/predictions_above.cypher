// Current predictions above a probability in a category (and below), best first: what completion proposes there.
// param: category: str                  a category path ("Apparel > Topwear > Tshirts") or name ("Tshirts")
// param: min_p: float = 0.9             only predictions with at least this calibrated probability
// param: attribute: str = null          only this attribute ("@brand" for brands)
// param: verdict: str = null            accept | needs_review (default: both)
// param: limit: int = 100               at most this many rows
OPTIONAL MATCH (pending_run:CompletionRun)
WHERE pending_run.status = 'running' OR (pending_run.status = 'failed' AND coalesce(pending_run.cleaned, false) = false)
WITH collect(pending_run.id) AS pending  // runs not committed: no edge of theirs shown, what they replace still current
MATCH (c:Category) WHERE c.path = $category OR c.name = $category
MATCH (p:Product)-[:IN_CATEGORY]->(leaf:Category)-[:SUBCATEGORY_OF*0..]->(c)
WITH DISTINCT pending, p, leaf
MATCH (p)-[e:PREDICTED_VALUE]->(v)
WHERE e.staged IS NULL AND NOT e.run_id IN pending AND (e.current = true OR (e.superseded_by IN pending AND e.review IS NULL)) AND e.p >= $min_p
  AND ($attribute IS NULL OR e.attribute = $attribute) AND ($verdict IS NULL OR e.verdict = $verdict)
RETURN p.id AS id, p.title AS title, leaf.path AS category, e.attribute AS attribute,
       coalesce(v.value, v.name, v.key) AS value, round(e.p, 4) AS p, e.verdict AS verdict, e.run_id AS run
ORDER BY p DESC, id, attribute
LIMIT $limit
