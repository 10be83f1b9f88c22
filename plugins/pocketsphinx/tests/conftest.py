"""Pytest set-up for the pocketsphinx plugin tests (nothing shared yet)."""
