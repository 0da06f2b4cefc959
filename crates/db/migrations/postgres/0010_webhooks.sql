-- Webhooks (per classroom: where to POST which events) and their outbox, which is also the
-- delivery log: one row per event and webhook, written when the event happens and sent
-- from there, so a restart loses nothing. Same semantics as
-- migrations/sqlite/0010_webhooks.sql. Times ending in `_ms` are Unix milliseconds by
-- the database's clock (so nodes with skewed clocks agree on what is due); `created_at`
-- of a webhook is Unix seconds like the other tables.

CREATE TABLE webhooks (
    id           TEXT    PRIMARY KEY NOT NULL,
    classroom_id TEXT    NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    url          TEXT    NOT NULL,
    -- The event names it receives, comma-separated (e.g. `session.started,member.joined`).
    events       TEXT    NOT NULL,
    -- The HMAC key deliveries are signed with. Stored as is: signing needs it.
    secret       TEXT    NOT NULL,
    created_by   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT  NOT NULL,
    -- FALSE once deleted: it gets no new deliveries, and its log stays readable to the server.
    active       BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE INDEX webhooks_by_classroom ON webhooks (classroom_id) WHERE active;

CREATE TABLE webhook_deliveries (
    -- Insertion order, for paging the log newest first.
    seq                BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The delivery id (`X-Lectern-Delivery`, the body's `id`).
    id                 TEXT    NOT NULL UNIQUE,
    webhook_id         TEXT    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event              TEXT    NOT NULL,
    -- The exact JSON body sent (and signed) at every attempt.
    body               TEXT    NOT NULL,
    created_at_ms      BIGINT  NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT  NOT NULL,
    state              TEXT    NOT NULL DEFAULT 'pending'
                               CHECK (state IN ('pending', 'delivered', 'failed')),
    -- A node sending it holds it until then; a dead node's claim simply expires.
    claimed_by         TEXT,
    claimed_until_ms   BIGINT,
    -- The last attempt: the receiver's HTTP status, or why there was none.
    last_status        INTEGER,
    last_error         TEXT,
    delivered_at_ms    BIGINT
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_ms)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);
