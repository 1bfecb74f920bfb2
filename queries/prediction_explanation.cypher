// Why a product got a predicted value: probability, verdict, rules passed, supporting neighbours, text evidence.
// param: product: str                   the product id
// param: attribute: str = null          the attribute (default: all of the product's predictions)
// param: current_only: bool = true      only current predictions (false: superseded and reviewed ones too; never a pending run's)
OPTIONAL MATCH (pending_run:CompletionRun)
WHERE pending_run.status = 'running' OR (pending_run.status = 'failed' AND coalesce(pending_run.cleaned, false) = false)
WITH collect(pending_run.id) AS pending  // runs not committed: no edge of theirs shown, what they replace still current
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE]->(v)
WHERE ($attribute IS NULL OR e.attribute = $attribute) AND e.staged IS NULL AND NOT e.run_id IN pending
WITH p, e, v, (e.current = true OR (e.superseded_by IN pending AND e.review IS NULL)) AS current
WHERE NOT $current_only OR current
OPTIONAL MATCH (n:Product) WHERE n.id IN e.evidence_products
WITH p, e, v, current, collect(n.id + ': ' + coalesce(n.title, '')) AS neighbours
RETURN e.attribute AS attribute, coalesce(v.value, v.name, v.key) AS value, round(e.p, 4) AS p, e.rank AS rank,
       e.verdict AS verdict, current, e.review AS review, e.run_id AS run, e.model AS model,
       e.rules AS rules_passed, e.violations AS needs_review_because, neighbours, e.text_evidence AS text_evidence,
       e.explanation AS explanation
ORDER BY current DESC, attribute, p DESC
