"""The files the Chat tab hands out (exports) and takes in (imports)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from chat_core.data.conversation_export import MAX_IMPORT_BYTES
from chat_core.errors import ChatError
from chat_core.web.gradio_guard import is_uploaded_file

EXPORT_KEEP_SEC = 600.0
_export_root: list[Path] = []  # created at the first export


def export_path(name: str) -> Path:
    """A fresh path for an exported file. Gradio serves its own copy of it, so ours only has to
    outlive the request: exports older than ten minutes go at the next export, and all of them
    when the process exits, instead of piling up in the temp directory."""
    if not _export_root:
        _export_root.append(Path(tempfile.mkdtemp(prefix="durable-chat-exports-")))
        atexit.register(shutil.rmtree, _export_root[0], True)
    cutoff = time.time() - EXPORT_KEEP_SEC
    for old in _export_root[0].iterdir():
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    folder = _export_root[0] / uuid.uuid4().hex  # one per export: the file keeps a clean name
    folder.mkdir()
    return folder / name


def write_export(conversation_id: str, fmt: str, data: Any) -> Path:
    """The export as a file named after the conversation (Markdown text, or JSON)."""
    suffix = ".md" if fmt == "markdown" else ".json"
    path = export_path(f"conversation-{conversation_id}{suffix}")
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2,
                                                                  ensure_ascii=False))
    return path


def read_import(file: Any) -> Any:
    """The JSON of a file uploaded with the Import button. Only a file in Gradio's upload
    folder is read: the event is a public API, and its input could name any server path."""
    path = file if isinstance(file, str) else getattr(file, "name", None)
    if not path or not is_uploaded_file(str(path)):
        raise ChatError("choose a .json file exported from this app to import it")
    try:
        raw = Path(str(path)).read_bytes()
    except OSError as exc:
        raise ChatError(f"the uploaded file could not be read ({exc.strerror}); "
                        "upload it again") from None
    if len(raw) > MAX_IMPORT_BYTES:
        raise ChatError(f"the file is larger than {MAX_IMPORT_BYTES // 1_000_000} MB")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ChatError(f"the file is not valid JSON ({str(exc)[:120]})") from None
