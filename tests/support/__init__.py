"""Test helpers: a LangSmith-like sender, a live local server, payload builders."""
