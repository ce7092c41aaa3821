"""Store access: SQLite (embedded default) and Cassandra/ScyllaDB, plus migrations."""
