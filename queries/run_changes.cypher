// What a completion run changed: each prediction it wrote, and the earlier prediction it replaced (if any); nothing while the run is pending.
// param: run: str                       the run id (see `attrgraph runs list`)
// param: verdict: str = null            accept | needs_review (default: both)
// param: limit: int = 1000              at most this many rows
OPTIONAL MATCH (pending_run:CompletionRun)
WHERE pending_run.status = 'running' OR (pending_run.status = 'failed' AND coalesce(pending_run.cleaned, false) = false)
WITH collect(pending_run.id) AS pending  // runs not committed: no edge of theirs shown, what they replace still current
MATCH (p:Product)-[e:PREDICTED_VALUE]->(v)
WHERE e.run_id = $run AND e.staged IS NULL AND NOT e.run_id IN pending AND ($verdict IS NULL OR e.verdict = $verdict)
CALL (p, e) {
  OPTIONAL MATCH (p)-[o:PREDICTED_VALUE]->(ov)
  WHERE o.superseded_by = $run AND o.attribute = e.attribute
  RETURN head(collect(coalesce(ov.value, ov.name, ov.key) + ' (' + o.run_id + ')')) AS replaced
}
RETURN p.id AS id, p.title AS title, e.attribute AS attribute, coalesce(v.value, v.name, v.key) AS value,
       round(e.p, 4) AS p, e.verdict AS verdict, (e.current = true OR (e.superseded_by IN pending AND e.review IS NULL)) AS current, e.review AS review, replaced,
       CASE WHEN replaced IS NULL THEN 'added' ELSE 'replaced' END AS change
ORDER BY id, attribute
LIMIT $limit
