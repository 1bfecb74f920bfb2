// Values and brands proposed by extraction (new to the graph): support across products, an example span (field, offsets, text), model and runs; nothing of a pending run.
// param: attribute: str = null          only this attribute ("@brand" for brands)
// param: status: str = "proposed"       proposed (awaiting review) or accepted (accepted in review); null for both
// param: limit: int = 100               at most this many rows
OPTIONAL MATCH (pending_run:CompletionRun)
WHERE pending_run.status = 'running' OR (pending_run.status = 'failed' AND coalesce(pending_run.cleaned, false) = false)
WITH collect(pending_run.id) AS pending  // runs not committed: their proposals are not shown
CALL (pending) {
  MATCH (v:Value {provenance: 'extracted'}) WHERE $attribute IS NULL OR v.attribute = $attribute
  RETURN v, v.attribute AS attribute, v.value AS value, v.norm AS norm, EXISTS { MATCH (:Product)-[:HAS_VALUE]->(v) } AS asserted
  UNION
  MATCH (v:Brand {provenance: 'extracted'}) WHERE $attribute IS NULL OR $attribute = '@brand'
  RETURN v, '@brand' AS attribute, v.name AS value, v.key AS norm, EXISTS { MATCH (:Product)-[:HAS_BRAND]->(v) } AS asserted
}
WITH pending, v, attribute, value, norm, asserted, [r IN coalesce(v.runs, []) WHERE NOT r IN pending] AS runs
WHERE ($status IS NULL OR v.status = $status)
  AND ((v.status = 'proposed' AND size(runs) > 0 AND NOT asserted) OR v.status = 'accepted')
RETURN attribute, value, norm, v.status AS status, coalesce(v.support, 0) AS support, v.model AS model, runs,
       v.created_by_run AS first_run, v.evidence_product AS evidence_product, v.evidence_field AS evidence_field,
       v.evidence_start AS evidence_start, v.evidence_end AS evidence_end, v.evidence_text AS evidence_text,
       toString(v.created_at) AS created_at
ORDER BY support DESC, attribute, norm
LIMIT $limit
