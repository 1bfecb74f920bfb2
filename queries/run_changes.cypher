// What a completion run changed: each prediction it wrote, and the earlier prediction it replaced (if any).
// param: run: str                       the run id (see `attrgraph runs list`)
// param: verdict: str = null            accept | needs_review (default: both)
// param: limit: int = 1000              at most this many rows
MATCH (p:Product)-[e:PREDICTED_VALUE]->(v)
WHERE e.run_id = $run AND ($verdict IS NULL OR e.verdict = $verdict)
CALL (p, e) {
  OPTIONAL MATCH (p)-[o:PREDICTED_VALUE]->(ov)
  WHERE o.superseded_by = $run AND o.attribute = e.attribute
  RETURN head(collect(coalesce(ov.value, ov.name, ov.key) + ' (' + o.run_id + ')')) AS replaced
}
RETURN p.id AS id, p.title AS title, e.attribute AS attribute, coalesce(v.value, v.name, v.key) AS value,
       round(e.p, 4) AS p, e.verdict AS verdict, e.current AS current, e.review AS review, replaced,
       CASE WHEN replaced IS NULL THEN 'added' ELSE 'replaced' END AS change
ORDER BY id, attribute
LIMIT $limit
