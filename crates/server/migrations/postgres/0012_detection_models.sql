-- Detection models the trainer fitted on stored events: every candidate with its evaluation
-- and whether it was promoted; the body only of promoted ones (the newest promoted model of a
-- kind is the one detection runs).

CREATE TABLE detection_models (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT NOT NULL,
    version         BIGINT NOT NULL,
    created_at      TEXT NOT NULL,
    trained_from_ms BIGINT NOT NULL,
    trained_to_ms   BIGINT NOT NULL,
    events          BIGINT NOT NULL,
    windows         BIGINT NOT NULL,
    applications    BIGINT NOT NULL,
    evaluation      TEXT NOT NULL, -- JSON: the candidate's and the current model's figures
    promoted        BOOLEAN NOT NULL,
    reason          TEXT NOT NULL,
    body            BYTEA,
    UNIQUE (kind, version)
);
