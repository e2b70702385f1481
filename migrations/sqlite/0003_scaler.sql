-- The microscaler's inputs and history (see src/store/scaler.rs).
--
-- `scaler_loads`: one row per running web instance, rewritten by the instance once a second
-- with its requests in flight and its monotonic totals (requests finished, their summed
-- latency in microseconds). The supervisor reads the rows that are fresh; an instance that
-- stops deletes its row, and rows not rewritten for a minute (a crashed instance) are pruned
-- on every write.
CREATE TABLE scaler_loads (
    instance               TEXT    PRIMARY KEY,
    service                TEXT    NOT NULL,
    in_flight              INTEGER NOT NULL CHECK (in_flight >= 0),
    requests_total         INTEGER NOT NULL CHECK (requests_total >= 0),
    latency_micros_total   INTEGER NOT NULL CHECK (latency_micros_total >= 0),
    updated_at             INTEGER NOT NULL
);
CREATE INDEX scaler_loads_updated_at ON scaler_loads (updated_at);

-- `scaler_decisions`: every decision the supervisor made, as the JSON of
-- `scaler::Decision` (inputs, desired and granted counts, clamps with their reasons), kept
-- for an hour: rows older than that are pruned on every write.
CREATE TABLE scaler_decisions (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    decision TEXT    NOT NULL
);
CREATE INDEX scaler_decisions_at ON scaler_decisions (at);
