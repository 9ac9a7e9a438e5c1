"""Centralino gateway: Public API."""
