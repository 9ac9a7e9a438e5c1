"""Centralino routing: Each tenant's dial plan."""
