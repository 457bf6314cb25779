"""PostgreSQL: the connection pool, migrations, the embedded server, and every query on conversations and messages (ChatStore)."""
