// Why a product got a predicted value: probability, verdict, rules passed, supporting neighbours, text evidence.
// param: product: str                   the product id
// param: attribute: str = null          the attribute (default: all of the product's predictions)
// param: current_only: bool = true      only current predictions (false: superseded and reviewed ones too)
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE]->(v)
WHERE ($attribute IS NULL OR e.attribute = $attribute) AND (NOT $current_only OR e.current = true)
OPTIONAL MATCH (n:Product) WHERE n.id IN e.evidence_products
WITH p, e, v, collect(n.id + ': ' + coalesce(n.title, '')) AS neighbours
RETURN e.attribute AS attribute, coalesce(v.value, v.name, v.key) AS value, round(e.p, 4) AS p, e.rank AS rank,
       e.verdict AS verdict, e.current AS current, e.review AS review, e.run_id AS run, e.model AS model,
       e.rules AS rules_passed, e.violations AS needs_review_because, neighbours, e.text_evidence AS text_evidence,
       e.explanation AS explanation
ORDER BY current DESC, attribute, p DESC
