-- Idempotency records (Store.ClaimIdempotency): the first response to a
-- request sent with an idempotency key, so that a retry is answered with
-- it instead of being carried out again, on whichever node it lands. key
-- identifies the caller and its key together; status 0 is a request still
-- running; response is sealed under the KEK by the kek.Store decorator (it
-- may hold a secret shown once) and empty while pending. Expired rows are
-- deleted by DeleteExpired.

-- +goose Up
CREATE TABLE idempotency (
    key         text PRIMARY KEY,
    fingerprint bytea NOT NULL,
    claim       text NOT NULL,
    status      integer NOT NULL,
    response    bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX idempotency_expires ON idempotency (expires_at);

-- +goose Down
DROP TABLE idempotency;
