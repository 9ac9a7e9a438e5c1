"""Centralino registrar: SIP edge."""
