"""A public Gradio share link (https://*.gradio.live) to the locally running server.

Gradio's tunnel client is used as Blocks.launch(share=True) uses it; we call it ourselves
because we serve the app with our own uvicorn (see web/app.py). It needs internet access to
Gradio's share server, and downloads its frpc binary on first use.
"""

from __future__ import annotations

import secrets

from gradio import networking


def open_share_link(host: str, port: int) -> str:
    """Open the tunnel; returns the public URL or raises RuntimeError saying why not."""
    local_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        url = networking.setup_tunnel(local_host=local_host, local_port=port,
                                      share_token=secrets.token_urlsafe(32),
                                      share_server_address=None,
                                      share_server_tls_certificate=None)
    except Exception as exc:  # the tunnel library raises many kinds; report the reason
        cause = exc.__cause__ or exc
        raise RuntimeError(f"could not create a share link ({type(cause).__name__}: {cause}); "
                           "the app still runs locally. Check internet access to gradio.live, "
                           "or put the app behind your own reverse proxy (docs/security.md)")
    return url.replace("http://", "https://", 1)
