-- Tsunagu server schema, version 1 (SQLite).
CREATE TABLE IF NOT EXISTS units (
    mac                      TEXT PRIMARY KEY,
    serial                   TEXT NOT NULL,
    hardware_version         TEXT NOT NULL,
    isp_method               TEXT NOT NULL,
    isp_username             TEXT,
    isp_password             TEXT,
    ip_address               TEXT,
    domain                   TEXT,
    vpn                      TEXT,
    global_ip                TEXT,
    subscriber               TEXT,
    state                    TEXT NOT NULL,
    pattern                  TEXT,
    target_pattern           TEXT,
    applied_config_revision  INTEGER,
    inventory                TEXT,
    wan_address              TEXT,
    last_seen                TEXT,
    last_error               TEXT,
    created_at               TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS challenges (
    id          TEXT PRIMARY KEY,
    mac         TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS patterns (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    hardware_version  TEXT NOT NULL,
    os_version        TEXT NOT NULL,
    applications      TEXT NOT NULL,
    status            TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS update_programs (
    id               TEXT PRIMARY KEY,
    from_pattern     TEXT NOT NULL REFERENCES patterns(id),
    to_pattern       TEXT NOT NULL REFERENCES patterns(id),
    importance       INTEGER NOT NULL CHECK (importance BETWEEN 1 AND 5),
    priority         INTEGER NOT NULL,
    artifact_sha256  TEXT NOT NULL,
    artifact_size    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_configs (
    name      TEXT PRIMARY KEY,
    document  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unit_configs (
    mac        TEXT NOT NULL REFERENCES units(mac),
    revision   INTEGER NOT NULL,
    document   TEXT NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (mac, revision)
);
CREATE TABLE IF NOT EXISTS update_reports (
    mac        TEXT NOT NULL,
    update_id  TEXT NOT NULL,
    success    INTEGER NOT NULL,
    error      TEXT,
    pattern    TEXT,
    at         TEXT NOT NULL,
    PRIMARY KEY (mac, update_id, success)
);
CREATE TABLE IF NOT EXISTS operators (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT
);
CREATE INDEX IF NOT EXISTS units_pattern ON units(pattern);
CREATE INDEX IF NOT EXISTS units_state ON units(state);
