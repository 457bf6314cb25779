"""The Gradio Blocks UI: the page, the Chat tab, the Workflows tab, and the safe rendering of messages. Handlers call ChatService only."""
