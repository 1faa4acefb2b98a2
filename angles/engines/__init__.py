"""Engines: the vault model, Notion sync, enrichment, the backup format, export and restore planning."""
