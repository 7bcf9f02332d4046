"""Standalone scripts for the helper container: fetch.py (job inputs), filter.py (results)."""
