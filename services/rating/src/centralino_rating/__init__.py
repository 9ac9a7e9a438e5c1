"""Centralino rating: Rate decks, FLAT plans and bundles, subscriptions, the prepaid credit ledger, markups, rated CDRs and per-station spend."""
