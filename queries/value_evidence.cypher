// The extracted evidence behind a value, or behind a product's slot: each span (field, offsets, text) on a predicted edge with its run, extractor, probability and review, and the value's recorded aliases; nothing of a pending run.
// param: attribute: str                 the attribute ("@brand" for brands)
// param: value: str = null              the value, as written or its norm (null: every value, e.g. of one product's slot)
// param: product: str = null            only this product
// param: limit: int = 100               at most this many rows
OPTIONAL MATCH (pending_run:CompletionRun)
WHERE pending_run.status = 'running' OR (pending_run.status = 'failed' AND coalesce(pending_run.cleaned, false) = false)
WITH collect(pending_run.id) AS pending  // runs not committed: no edge of theirs shown
MATCH (p:Product)-[e:PREDICTED_VALUE]->(v)
WHERE e.attribute = $attribute AND ($product IS NULL OR p.id = $product) AND e.evidence_text IS NOT NULL
  AND e.staged IS NULL AND NOT e.run_id IN pending
  AND ($value IS NULL OR coalesce(v.norm, v.key) = toLower(trim($value)) OR coalesce(v.value, v.name) = $value)
CALL (v, pending) {
  OPTIONAL MATCH (a:Alias)-[:ALIAS_OF]->(v)
  WHERE any(r IN coalesce(a.runs, []) WHERE NOT r IN pending)
  RETURN collect(a.text) AS aliases
}
RETURN p.id AS product, p.title AS title, coalesce(v.value, v.name, v.key) AS value, coalesce(v.status, 'asserted') AS value_status,
       coalesce(e.new, false) AS new, e.evidence_field AS field, e.evidence_start AS start, e.evidence_end AS stop,
       e.evidence_text AS text, e.evidence_confidence AS confidence, e.extractor AS extractor, e.run_id AS run,
       round(e.p, 4) AS p, e.verdict AS verdict,
       (e.current = true OR (e.superseded_by IN pending AND e.review IS NULL)) AS current, e.review AS review, aliases
ORDER BY product, current DESC, p DESC
LIMIT $limit
