"""The HTTP side: the FastAPI app that mounts the UI, the REST API, the request guards in front of both, login throttling and share links."""
