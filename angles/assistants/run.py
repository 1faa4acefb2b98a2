"""Start the assistants' door on stdio or HTTP, after the checks that must pass first."""

from __future__ import annotations

import logging

import anyio

from angles.errors import ConfigError, DatabaseError
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)


def run_server(settings, *, http: bool = False, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until the client hangs up (stdio) or a signal stops the server (HTTP)."""
    from angles.assistants.http import is_loopback

    # create=False: an SQLite file that does not exist yet is made by run_migration.py, not by an assistant.
    with open_storage(settings, create=False) as storage:
        todo = migrations.pending(storage)
        if todo:
            raise DatabaseError(
                f"{storage.describe()} lacks {len(todo)} migration(s) (latest {todo[-1].version}); "
                "run `python run_migration.py` first"
            )
        if not http:
            from angles.assistants.server import build_server

            logger.info("MCP server on stdio as agent %s (%s)", settings.mcp_agent_name, storage.describe())
            anyio.run(build_server(settings, storage).run_stdio_async)
            return
        from angles.assistants.http import serve

        active = [t for t in storage.list_tokens() if t["revoked_at"] is None]
        if not active and not is_loopback(host):
            raise ConfigError(
                f"refusing to serve on {host}, beyond this machine, while no token exists: "
                "create one with `python tools/decisions.py token create NAME --scope write`"
            )
        if not active:
            logger.warning("no token exists yet: every request will get 401 until `tools/decisions.py token create`")
        serve(settings, storage, host=host, port=port)
