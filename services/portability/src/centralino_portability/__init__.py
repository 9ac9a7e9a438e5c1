"""Centralino portability: Number port-in requests under the Italian migration rules, their timeline, attachments and consent documents, donor-operator adapters, the business calendar."""
