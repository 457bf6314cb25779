"""The one web server of a process: the REST API and the Gradio UI on the same port.

A FastAPI app carries the REST routes and mounts the Gradio Blocks at "/". We run uvicorn
ourselves (app.py) rather than through Blocks.launch(), so that the workflows, the database pool
and every request share one event loop, and DBOS is launched before the server accepts anything.
"""

from __future__ import annotations

from typing import Callable

import gradio as gr
from fastapi import FastAPI

from .rest_api import build_rest_api
from .service import ChatService


def build_web_app(service: ChatService, ui: gr.Blocks,
                  mount_kwargs: dict[str, object] | None = None) -> FastAPI:
    app = FastAPI(title="Durable chat", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    get_service: Callable[[], ChatService] = lambda: service
    app.include_router(build_rest_api(get_service))
    return gr.mount_gradio_app(app, ui, path="/", **(mount_kwargs or {}))  # type: ignore[arg-type]
