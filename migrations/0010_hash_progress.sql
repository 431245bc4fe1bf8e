-- Bounded scans (docs/configuration.md, "File-backed sources"): a scan reads at most
-- max_hash_bytes_per_scan and hashes for at most max_hash_seconds_per_scan. A file it
-- could not finish keeps here how far it got — the SHA-256 state after whole 64-byte
-- blocks — and the next scans go on from there, as long as the file is the same one
-- (device, inode), with the same size and mtime.
CREATE TABLE source_hash_progress (
    drain        text NOT NULL,
    path         text NOT NULL,          -- relative to the source's dir; the item's key
    device       bigint NOT NULL,
    inode        bigint NOT NULL,
    size         bigint NOT NULL,
    mtime        timestamptz NOT NULL,   -- to the microsecond
    hashed_bytes bigint NOT NULL CHECK (hashed_bytes >= 0 AND hashed_bytes % 64 = 0),
    state        bytea NOT NULL CHECK (length(state) = 32),
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (drain, path)
);
