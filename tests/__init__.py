"""Keyway test suite."""
