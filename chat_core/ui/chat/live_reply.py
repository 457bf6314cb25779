"""The reply being written, drawn by the page itself from the app's own event stream.

Gradio's queue does work for every update of an event's outputs (it post-processes the whole
pane and works out what changed), which made a streamed token cost the chat tab about twice
what it costs the REST API (docs/performance.md). So while a reply is written the page takes
it from GET /api/turns/{id}/events?render=html (the same stream API clients re-attach to, the
reply rendered and sanitized by the server, ui/render.py) and draws it into its place in the
pane; Gradio handles the message's send before and the turn's end after (events.py,
handlers.finish), not the tokens.

Its place is the pane's pending entry (`placeholder`), a block whose element id names the
turn (Gradio's own sanitizer keeps an `id`, not a data- attribute). A page follows one reply
at a time: opening another conversation (or the same one again) ends the stream the page had
open, and the reply goes on (opening its conversation follows it again). The browser re-opens
a dropped stream by itself; each `html` event carries the whole reply so far, so nothing is
lost. The HTML comes from the server's allow-list sanitizer only, the one line that keeps
model output inert on the page (set as innerHTML, without Gradio's second sanitizer:
tests/test_browser.py and tests/test_render_browser.py prove it in Chromium while a reply
streams)."""

from __future__ import annotations

import html
import json

from chat_core.ui.chat.view import PENDING_TEXT, RESTARTING_NOTICE

LIVE_CLASS = "live-reply"
LIVE_ID_PREFIX = "live-"


def placeholder(turn_id: str) -> dict[str, str]:
    """The pane's entry for the reply of `turn_id` until its turn ends."""
    element = html.escape(LIVE_ID_PREFIX + turn_id, quote=True)
    return {"role": "assistant",
            "content": f'<div class="{LIVE_CLASS}" id="{element}">{PENDING_TEXT}</div>'}


# The chain step between a turn's start and its end (events.py). It follows the turn named by
# the page's `live` value and resolves with that id (which tells handlers.finish the chain it
# ends) and the page's notice when the reply could not be followed to its end (the app
# stopping). A page follows one reply at a time: a newer chain's step ends an older one's
# stream and fails that chain's step, so that its finish step never runs (Gradio runs a
# `.then()` step only after a step that succeeded). With no turn to follow (a page opened on a
# conversation whose replies have ended, a new chat, a refused message) the step fails too:
# nothing is left to finish, and a finish step answering "nothing" would cost a request in
# which Gradio rebuilds each of its outputs (events.py). A refused stream (404, 401) ends the
# step at once: finish then reads the turn itself. While the pane is scrolled to its end it stays
# there as the reply grows (the Chatbot scrolls only when its value changes). STOP_JS ends the
# page's stream, for the steps that show a conversation with nothing to follow.
STOP_JS = "() => { const page = window.__durableChatLive; if (page && page.stop) page.stop(); }"
FOLLOW_JS = """
async (turnId) => {
  const page = window.__durableChatLive || (window.__durableChatLive = {stop: null});
  if (page.stop) page.stop();
  if (!turnId) throw new Error('no reply to follow');
  const url = new URL('api/turns/' + encodeURIComponent(turnId) + '/events?render=html',
                      location.href);
  let latest = null;
  let queued = false;
  const draw = (tries) => {
    queued = false;
    const block = document.getElementById(%(prefix)s + turnId);
    if (!block) {
      // The pane may not have drawn the pending entry yet (it renders asynchronously).
      if (tries > 0) { queued = true; requestAnimationFrame(() => draw(tries - 1)); }
      return;
    }
    if (block.liveHtml === latest) return;
    const log = block.closest('[role="log"]');
    const atEnd = log && log.scrollHeight - log.scrollTop - log.clientHeight < 100;
    block.innerHTML = latest;
    block.liveHtml = latest;
    if (atEnd) log.scrollTop = log.scrollHeight;
  };
  return await new Promise((resolve, reject) => {
    const source = new EventSource(url);
    let open = true;
    const close = (outcome) => {
      if (!open) return;
      open = false;
      source.close();
      if (page.stop === stop) page.stop = null;
      outcome();
    };
    const stop = () => close(() => reject(new Error('a newer chain follows this page')));
    const end = (notice) => close(() => resolve([turnId, notice || undefined]));
    page.stop = stop;
    source.addEventListener('html', (event) => {
      latest = JSON.parse(event.data).html;
      if (!queued) { queued = true; requestAnimationFrame(() => draw(30)); }
    });
    source.addEventListener('done', (event) => end(JSON.parse(event.data).notice));
    source.addEventListener('error', (event) => {
      if (event.data) {
        end(JSON.parse(event.data).code === 'shutting_down' ? %(restarting)s : undefined);
      } else if (source.readyState === EventSource.CLOSED) {
        end();
      }
    });
  });
}
""" % {"prefix": json.dumps(LIVE_ID_PREFIX), "restarting": json.dumps(RESTARTING_NOTICE)}
