"""Conversation data leaving and entering the app: JSON/Markdown export and import, and the pandas views the notebooks read."""
