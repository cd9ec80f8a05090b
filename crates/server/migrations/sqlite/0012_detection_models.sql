-- Detection models the trainer fitted on stored events: every candidate with its evaluation
-- and whether it was promoted; the body only of promoted ones (the newest promoted model of a
-- kind is the one detection runs).

CREATE TABLE detection_models (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    trained_from_ms INTEGER NOT NULL,
    trained_to_ms   INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    windows         INTEGER NOT NULL,
    applications    INTEGER NOT NULL,
    evaluation      TEXT NOT NULL, -- JSON: the candidate's and the current model's figures
    promoted        INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    body            BLOB,
    UNIQUE (kind, version)
);
