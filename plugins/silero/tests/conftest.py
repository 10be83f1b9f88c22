"""Pytest set-up for the silero plugin tests (nothing shared yet)."""
