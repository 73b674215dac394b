"""Schema versions, applied in order at start and recorded in ``schema_version``."""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "accounts, catalogs, stacks, vocabularies",
        (
            """CREATE TABLE accounts (
                id TEXT PRIMARY KEY,
                email TEXT,
                status TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                data TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
            "CREATE UNIQUE INDEX accounts_email ON accounts (email)",
            """CREATE TABLE specs (
                owner TEXT NOT NULL,
                key TEXT NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (owner, key)
            )""",
            """CREATE TABLE stacks (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
                status TEXT NOT NULL,
                data TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
            "CREATE INDEX stacks_owner ON stacks (owner)",
            """CREATE TABLE stack_services (
                stack_id TEXT NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
                owner TEXT NOT NULL,
                service_key TEXT NOT NULL,
                PRIMARY KEY (stack_id, service_key)
            )""",
            "CREATE INDEX stack_services_key ON stack_services (service_key)",
            "CREATE TABLE vocabularies (name TEXT PRIMARY KEY, data TEXT NOT NULL)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    (
        2,
        "transfers, their files, staged blobs, exports and shovel heartbeats",
        (
            """CREATE TABLE transfers (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
                state TEXT NOT NULL,
                data TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
            "CREATE INDEX transfers_owner ON transfers (owner)",
            """CREATE TABLE transfer_files (
                transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
                path TEXT NOT NULL,
                size BIGINT NOT NULL,
                sha256 TEXT,
                clowder_id TEXT NOT NULL,
                state TEXT NOT NULL,
                error TEXT,
                PRIMARY KEY (transfer_id, path)
            )""",
            """CREATE TABLE blobs (
                source TEXT NOT NULL,
                clowder_id TEXT NOT NULL,
                size BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                PRIMARY KEY (source, clowder_id, size)
            )""",
            """CREATE TABLE exports (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
                state TEXT NOT NULL,
                data TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
            "CREATE INDEX exports_owner ON exports (owner)",
            """CREATE TABLE shovels (
                owner TEXT NOT NULL,
                stack_id TEXT NOT NULL,
                data TEXT NOT NULL,
                seen_at BIGINT NOT NULL,
                PRIMARY KEY (owner, stack_id)
            )""",
        ),
    ),
    (
        3,
        "dead letters: events no function could take",
        (
            """CREATE TABLE dead_letters (
                id TEXT PRIMARY KEY,
                event_type TEXT NOT NULL,
                data TEXT NOT NULL,
                received_at BIGINT NOT NULL
            )""",
            "CREATE INDEX dead_letters_received ON dead_letters (received_at)",
        ),
    ),
    (
        4,
        "stacks: the version of the model that wrote each stored document",
        # Rows from before stay NULL: of an older model, so they are read by validating them.
        ("ALTER TABLE stacks ADD COLUMN model_version TEXT",),
    ),
    (
        5,
        "resuming accepted work (what it needs, how often it was resumed); events already handled",
        (
            # ``work``: a transfer's request, an export's upload report; ``updated_at`` is the lease.
            "ALTER TABLE transfers ADD COLUMN work TEXT",
            "ALTER TABLE transfers ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX transfers_unfinished ON transfers (state, updated_at)",
            "ALTER TABLE exports ADD COLUMN work TEXT",
            "ALTER TABLE exports ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX exports_unfinished ON exports (state, updated_at)",
            """CREATE TABLE seen_events (
                source TEXT NOT NULL,
                id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                event_time BIGINT NOT NULL,
                claimed_at BIGINT NOT NULL,
                done INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (source, id)
            )""",
            "CREATE INDEX seen_events_time ON seen_events (event_time)",
        ),
    ),
    (
        6,
        "accounts: the generation of their tokens, an e-mail change awaiting verification; throttles",
        (
            # Rows from before get a generation at their next login (tokens from before carry none).
            "ALTER TABLE accounts ADD COLUMN token_generation TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE accounts ADD COLUMN pending_email TEXT",
            "ALTER TABLE accounts ADD COLUMN pending_email_token TEXT",
            "ALTER TABLE accounts ADD COLUMN pending_email_at BIGINT",
            """CREATE TABLE throttles (
                key TEXT PRIMARY KEY,
                hits INTEGER NOT NULL,
                window_ends BIGINT NOT NULL
            )""",
            "CREATE INDEX throttles_window_ends ON throttles (window_ends)",
        ),
    ),
    (
        7,
        "stack starts: when each was asked for and when it ended, for the start duration histogram",
        (
            # Milliseconds since the epoch; ``finished_at`` and ``succeeded`` stay NULL while it starts.
            """CREATE TABLE stack_starts (
                stack_id TEXT NOT NULL,
                started_at BIGINT NOT NULL,
                finished_at BIGINT,
                succeeded INTEGER,
                PRIMARY KEY (stack_id, started_at)
            )""",
        ),
    ),
    (
        8,
        "accounts: their last activity, and when their idle stacks' warning was sent",
        (
            "ALTER TABLE accounts ADD COLUMN last_active BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE accounts ADD COLUMN idle_warned_at BIGINT NOT NULL DEFAULT 0",
        ),
    ),
    (
        9,
        "transfers: the Clowder dataset each copied, to find a dataset's copies by index",
        (
            # Rows from before stay NULL: they are read and matched by their stored document.
            "ALTER TABLE transfers ADD COLUMN dataset_id TEXT",
            "CREATE INDEX transfers_dataset ON transfers (dataset_id)",
        ),
    ),
    (
        10,
        "transfer checks: a completed transfer's folder verified against its receipts (by a shovel)",
        (
            """CREATE TABLE transfer_checks (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
                transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
                state TEXT NOT NULL,
                data TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
            "CREATE INDEX transfer_checks_transfer ON transfer_checks (transfer_id, created_at)",
        ),
    ),
)
