"""The browser-facing authorization flows: sessions, authorization URLs, callbacks."""
