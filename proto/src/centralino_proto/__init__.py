"""Centralino contracts (events, envelope, JWT claims) and the plumbing that speaks them."""
