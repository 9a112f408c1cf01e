-- Rollups of the events: counts per minute, ten minutes, hour and UTC day (`span_ms`), and a histogram of
-- latencies, kept in the transaction that stores or prunes the events. The dashboard's
-- summary and chart read these instead of counting a window's events. Keyed by what the
-- summary groups by, with '' for an unmarked processing status and -1 for no verdict, so the
-- key has no NULLs. The events already stored are counted into them by the migration.
CREATE TABLE event_counts (
    project TEXT NOT NULL,
    span_ms BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    provider TEXT NOT NULL,
    status_class BIGINT NOT NULL,
    processing_status TEXT NOT NULL,
    signature_valid BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (project, span_ms, start_ms, provider, status_class, processing_status,
        signature_valid, outcome)
);
-- `le_ms`: the largest latency of the bin (exact below 64 ms, then 16 bins per doubling).
CREATE TABLE event_latency (
    project TEXT NOT NULL,
    span_ms BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    le_ms BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (project, span_ms, start_ms, le_ms)
)
