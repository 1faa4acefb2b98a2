"""Domain errors, each with its exit code: 1 general, 2 database, 3 external API, 4 backup auth."""

from __future__ import annotations


class AnglesError(Exception):
    """A failure an operator can act on; its message is one clear line."""

    exit_code = 1


class ConfigError(AnglesError):
    """A setting is malformed."""

    exit_code = 1


class ValidationError(AnglesError):
    """A record is not acceptable (empty text, unknown type, bad date)."""

    exit_code = 1


class NotFoundError(AnglesError):
    """No decision matches the id given."""

    exit_code = 1


class DatabaseError(AnglesError):
    """The database cannot be reached, migrated or queried."""

    exit_code = 2


class MigrationError(DatabaseError):
    """A migration failed or an applied migration was changed."""


class ExternalServiceError(AnglesError):
    """Notion, OpenAI or Supabase REST could not be reached or refused us."""

    exit_code = 3


class BackupAuthError(AnglesError):
    """The backup remote rejected our credentials."""

    exit_code = 4
