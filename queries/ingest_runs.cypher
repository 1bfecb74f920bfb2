// The most recent ingest runs and what each one did.
// param: limit: int = 20                at most this many runs
MATCH (r:IngestRun)
RETURN r.id AS id, r.file AS file, r.mapping AS mapping, r.status AS status, toString(r.started_at) AS started_at,
       r.rows_read AS rows_read, r.products_created AS created, r.products_updated AS updated,
       r.products_unchanged AS unchanged, r.facts_written AS facts_written, r.facts_retracted AS retracted,
       r.rows_rejected AS rejected, round(r.seconds, 1) AS seconds
ORDER BY r.started_at DESC
LIMIT $limit
