"""Unit tests: no broker, no database."""
