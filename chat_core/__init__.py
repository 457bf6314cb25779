"""Durable chat core: configuration, PostgreSQL access, the LLM client, the DBOS turn workflow
and the one service API (ChatService) that the UI, the REST API and notebooks call."""
