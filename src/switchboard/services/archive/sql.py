"""The archive's schema and statements, written once for SQLite and PostgreSQL.

Placeholders are ``?``; the PostgreSQL backend rewrites them to ``$n``. Only syntax both
accept: ``INSERT ... ON CONFLICT``, ``CASE``, ``COALESCE``. Booleans are integers 0/1
and times RFC 3339 text, so both stores hold the same values.
"""

from __future__ import annotations

import re

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS processed_events (
        event_id TEXT PRIMARY KEY,
        applied_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS calls (
        call_id TEXT PRIMARY KEY,
        started_at TEXT,
        ended_at TEXT,
        node_id TEXT,
        end_how TEXT,
        disconnection_reason TEXT,
        sentiment TEXT,
        successful INTEGER,
        summary TEXT,
        analysis TEXT,
        escalated_rule TEXT,
        escalation_action TEXT)""",
    """CREATE TABLE IF NOT EXISTS turns (
        event_id TEXT PRIMARY KEY,
        call_id TEXT NOT NULL,
        response_id BIGINT NOT NULL,
        kind TEXT NOT NULL,
        caller_line TEXT NOT NULL,
        reply TEXT NOT NULL,
        ttfb_ms DOUBLE PRECISION,
        ttc_ms DOUBLE PRECISION,
        cache_hit INTEGER NOT NULL,
        fallback_reason TEXT,
        superseded INTEGER NOT NULL,
        at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS turns_by_call ON turns (call_id, response_id)",
    """CREATE TABLE IF NOT EXISTS archive_counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL)""",
)

#: Columns added after the first release, as (table, column, type): both backends add
#: the ones a database lacks when they connect (``end_call`` and the rest let
#: ``switchboard replay`` compare actions; the call's variables let it send them again).
ADDED_COLUMNS = (
    ("turns", "end_call", "INTEGER"),
    ("turns", "transfer_number", "TEXT"),
    ("turns", "digits", "TEXT"),
    ("calls", "dynamic_variables", "TEXT"),
    ("calls", "metadata", "TEXT"),
)

#: PostgreSQL databases made before ``response_id`` was ``BIGINT`` (``INTEGER`` there is
#: 32-bit; SQLite's ``INTEGER`` is already 64-bit). Run at connect, under the schema lock.
POSTGRES_MIGRATIONS = (
    """DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'turns' AND column_name = 'response_id'
                   AND data_type = 'integer') THEN
            ALTER TABLE turns ALTER COLUMN response_id TYPE BIGINT;
        END IF;
    END $$""",
)

INSERT_TURN = (
    "INSERT INTO turns (event_id, call_id, response_id, kind, caller_line, reply, ttfb_ms,"
    " ttc_ms, cache_hit, fallback_reason, superseded, at, end_call, transfer_number, digits)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
UPSERT_STARTED = (
    "INSERT INTO calls (call_id, started_at, node_id) VALUES (?, ?, ?)"
    " ON CONFLICT (call_id) DO UPDATE SET"
    " started_at = CASE WHEN calls.started_at IS NULL OR excluded.started_at < calls.started_at"
    " THEN excluded.started_at ELSE calls.started_at END,"
    " node_id = excluded.node_id"
)
UPSERT_ENDED = (
    "INSERT INTO calls (call_id, ended_at, end_how, dynamic_variables, metadata)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET"
    " dynamic_variables = COALESCE(excluded.dynamic_variables, calls.dynamic_variables),"
    " metadata = COALESCE(excluded.metadata, calls.metadata),"
    " end_how = CASE WHEN calls.ended_at IS NULL OR excluded.ended_at >= calls.ended_at"
    " THEN excluded.end_how ELSE calls.end_how END,"
    " ended_at = CASE WHEN calls.ended_at IS NULL OR excluded.ended_at >= calls.ended_at"
    " THEN excluded.ended_at ELSE calls.ended_at END"
)
UPSERT_RETELL_ENDED = (
    "INSERT INTO calls (call_id, disconnection_reason) VALUES (?, ?)"
    " ON CONFLICT (call_id) DO UPDATE SET"
    " disconnection_reason = COALESCE(excluded.disconnection_reason, calls.disconnection_reason)"
)
UPSERT_ANALYZED = (
    "INSERT INTO calls (call_id, sentiment, successful, summary, analysis)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET"
    " sentiment = COALESCE(excluded.sentiment, calls.sentiment),"
    " successful = COALESCE(excluded.successful, calls.successful),"
    " summary = COALESCE(excluded.summary, calls.summary),"
    " analysis = excluded.analysis"
)
UPSERT_ESCALATED = (
    "INSERT INTO calls (call_id, escalated_rule, escalation_action) VALUES (?, ?, ?)"
    " ON CONFLICT (call_id) DO UPDATE SET"
    " escalated_rule = COALESCE(calls.escalated_rule, excluded.escalated_rule),"
    " escalation_action = COALESCE(calls.escalation_action, excluded.escalation_action)"
)
ADD_COUNTER = (
    "INSERT INTO archive_counters (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = archive_counters.value + excluded.value"
)

_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """``?`` -> ``$1, $2 ...`` (PostgreSQL). Our statements hold no literal ``?``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)
