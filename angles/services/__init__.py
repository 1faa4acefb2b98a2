"""Clients of external services: one module per service, owning its retries, limits and error mapping."""
