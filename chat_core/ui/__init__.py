"""The Gradio Blocks UI. Handlers call ChatService only: no SQL and no LLM calls here.

    page.py          the page: header, the two tabs, the CSS (`build_ui`)
    chat/            the Chat tab (its package docstring says where to start)
    workflows_tab.py the Workflows tab: every turn as the DBOS workflow it is
    render.py        stored messages turned into safe HTML for the chat pane
"""
