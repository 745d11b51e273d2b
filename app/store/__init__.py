"""Chat history in one SQLite file (WAL), schema upgraded in order by PRAGMA user_version."""
