// The most recent completion runs: status, mode, model, counts and time.
// param: limit: int = 20                at most this many runs
MATCH (r:CompletionRun)
RETURN r.id AS id, r.status AS status, r.mode AS mode, r.model AS model, toString(r.started_at) AS started_at,
       toString(r.finished_at) AS finished_at, r.products_scored AS scored, r.products_skipped AS skipped,
       r.accepted AS accepted, r.needs_review AS needs_review, r.written AS written, r.error AS error
ORDER BY r.started_at DESC
LIMIT $limit
