"""The archive service: calls, turns and Retell's analysis kept in SQLite or PostgreSQL,
and read back by the CLI, the dashboard and replay."""
