"""Open the storage backend the configuration selects."""

from __future__ import annotations

from angles.storage.base import Storage


def open_storage(settings, *, create: bool = True) -> Storage:
    """DATABASE_URL, then Supabase REST credentials, then the SQLite default.

    With create=False a missing SQLite file is read as an empty database and not made.
    """
    if settings.database_kind == "postgres":
        from angles.storage.postgres import PostgresStorage

        return PostgresStorage(settings.database_url)
    if settings.database_kind == "supabase":
        from angles.storage.supabase_rest import SupabaseStorage

        return SupabaseStorage(settings.supabase_url, settings.supabase_key, rpm=settings.supabase_rpm)
    from angles.storage.sqlite import SQLiteStorage

    return SQLiteStorage(settings.sqlite_path, create=create)


__all__ = ["Storage", "open_storage"]
