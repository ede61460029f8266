"""Refreshing credentials before they expire: the policy, the provider calls, the single-flight service."""
