"""The MCP server: five tools and one resource over the vault engine, the same rules as tools/decisions.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field
from pydantic import ValidationError as ArgumentError

from angles.assistants import tokens
from angles.engines import vault
from angles.errors import AnglesError, NotFoundError
from angles.logs import redactor

logger = logging.getLogger(__name__)

TEXT_LIMIT = 500
CALLER_KEY = "angles.caller"
INSTRUCTIONS = (
    "The Angles decision vault: the decisions a team and its assistants have made. Search it before deciding "
    "again; record a decision once it is made; supersede one that changed instead of recording a contradiction."
)

DecisionType = Literal["strategy", "technical", "architecture", "process", "security", "ethical", "product", "other"]
Priority = Literal["P0", "P1", "P2"]
LinkKind = Literal["depends_on", "relates_to", "conflicts_with", "refines"]


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token over HTTP (rate limited, maybe read-only), or the local stdio user."""

    name: str
    scope: str
    limited: bool


class Similar(BaseModel):
    id: str
    text: str
    score: float


class Recorded(BaseModel):
    id: str
    status: Literal["created", "already_recorded"]
    similar: list[Similar]


class Hit(BaseModel):
    id: str
    text: str
    type: str
    priority: str | None
    date: str
    active: bool
    superseded_by: str | None
    snippet: str


class Hits(BaseModel):
    hits: list[Hit]


class Linked(BaseModel):
    from_id: str
    to_id: str
    kind: str
    status: Literal["created", "already_linked"]


def cut(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


@contextmanager
def tool_errors() -> Iterator[None]:
    """A domain error becomes the tool error the assistant reads: its one line, nothing of a traceback."""
    try:
        yield
    except AnglesError as exc:
        text = str(exc).strip()
        raise ToolError(redactor()(text.splitlines()[0] if text else type(exc).__name__)) from None


class VaultDoor:
    """The tools, bound to one storage and the settings (agent name, write limit)."""

    def __init__(self, settings, storage):
        self.settings = settings
        self.storage = storage

    def caller(self, ctx: Context) -> Caller:
        request = ctx.request_context.request
        if request is None:
            return Caller(self.settings.mcp_agent_name, "write", limited=False)
        caller = request.scope.get(CALLER_KEY)
        if caller is None:
            # Only the token guard puts a caller in the scope; an HTTP request without one was never checked.
            raise ToolError("this request carries no verified token")
        return caller

    def writer(self, ctx: Context) -> Caller:
        caller = self.caller(ctx)
        if caller.scope != "write":
            raise ToolError("this token may only read")
        if caller.limited:
            with tool_errors():
                tokens.take_write(self.storage, caller.name, self.settings.mcp_writes_per_minute)
        return caller

    def done(self, caller: Caller, action: str, details: str) -> None:
        # Not durable: a database crash right after a write may lose its activity row, never the decision.
        self.storage.record_activity(caller.name, action, "completed", details, durable=False)

    def record_decision(
        self,
        ctx: Context,
        text: Annotated[str, Field(description="the decision, in full")],
        type: DecisionType = "other",
        priority: Priority | None = None,
        tags: list[str] = [],  # noqa: B006 - pydantic copies defaults; the schema shows []
        comment: str | None = None,
        supersedes: Annotated[str | None, Field(description="id of a decision this one replaces")] = None,
    ) -> Recorded:
        """Record a decision. An exact duplicate is not stored twice; the most similar decisions are named."""
        caller = self.writer(ctx)
        fields = {"decision": text, "type": type, "priority": priority, "tags": list(tags), "comment": comment}
        with tool_errors():
            result = vault.record(self.storage, fields, source=f"agent:{caller.name}", supersedes=supersedes)
            self.done(caller, "record_decision", f"{result['status']} {result['id']}")
        similar = [Similar(id=s["id"], text=cut(s["text"]), score=s["score"]) for s in result["similar"]]
        return Recorded(id=result["id"], status=result["status"], similar=similar)

    def search_decisions(
        self,
        ctx: Context,
        query: Annotated[str, Field(description='words (all must match), "a phrase", -excluded, OR')],
        type: DecisionType | None = None,
        include_inactive: Annotated[bool, Field(description="also superseded and inactive ones")] = False,
        limit: Annotated[int, Field(ge=1, le=50)] = 10,
    ) -> Hits:
        """Search decisions by what they say; best matches first."""
        self.caller(ctx)
        with tool_errors():
            found = vault.search(self.storage, query, type=type, include_inactive=include_inactive, limit=limit)
        return Hits(
            hits=[
                Hit(
                    id=h["id"],
                    text=cut(h["text"]),
                    type=h["type"],
                    priority=h["priority"],
                    date=h["date"],
                    active=h["active"],
                    superseded_by=h["superseded_by"],
                    snippet=h["snippet"],
                )
                for h in found
            ]
        )

    def get_decision(
        self, ctx: Context, id: Annotated[str, Field(description="a full id or its first 8 characters")]
    ) -> dict[str, Any]:
        """One decision with every field, its history, its links and its supersede chain."""
        self.caller(ctx)
        with tool_errors():
            return vault.describe(self.storage, id)

    def supersede_decision(
        self,
        ctx: Context,
        old_id: str,
        new_text: Annotated[str | None, Field(description="the replacing decision, recorded now")] = None,
        new_id: Annotated[str | None, Field(description="or an existing decision that replaces it")] = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Replace a decision: the old one stays, inactive, pointing to the new one."""
        caller = self.writer(ctx)
        with tool_errors():
            result = vault.supersede(
                self.storage,
                old_id,
                new_id=new_id,
                new_fields=None if new_text is None else {"decision": new_text},
                reason=reason,
                source=f"agent:{caller.name}",
            )
            self.done(caller, "supersede_decision", f"superseded {result['old_id']} by {result['new_id']}")
        return result

    def link_decisions(self, ctx: Context, from_id: str, to_id: str, kind: LinkKind) -> Linked:
        """Link two decisions: from_id depends_on, relates_to, conflicts_with or refines to_id."""
        caller = self.writer(ctx)
        with tool_errors():
            result = vault.link(self.storage, from_id, to_id, kind, source=f"agent:{caller.name}")
            self.done(caller, "link_decisions", f"{result['status']} {result['from_id']} {kind} {result['to_id']}")
        return Linked(from_id=result["from_id"], to_id=result["to_id"], kind=result["kind"], status=result["status"])

    def decision_resource(self, id: str) -> str:
        """One decision as JSON: every field, history, links and supersede chain."""
        try:
            described = vault.describe(self.storage, id)
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except AnglesError as exc:
            raise ResourceError(redactor()(str(exc))) from None
        return json.dumps(described, ensure_ascii=False, default=str)


READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


class ArgumentCheck:
    """Server middleware: arguments that do not fit a tool's schema get one readable sentence, not pydantic's dump."""

    def __init__(self, tools: Mapping[str, Tool]):
        self.tools = tools

    async def __call__(self, ctx, call_next):
        params = ctx.params
        if ctx.method == "tools/call" and isinstance(params, Mapping):
            tool = self.tools.get(params.get("name"))
            arguments = params.get("arguments") or {}
            if tool is not None and isinstance(arguments, Mapping):
                try:
                    tool.fn_metadata.validate_arguments(dict(arguments))
                except ArgumentError as exc:
                    text = explain(tool.name, exc)
                    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return await call_next(ctx)


def explain(tool: str, exc: ArgumentError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "arguments"
    if first["type"] == "missing":
        return f"Error executing tool {tool}: argument {where!r} is required."
    message = first["msg"][:1].lower() + first["msg"][1:]
    more = f" ({len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"Error executing tool {tool}: argument {where!r} is invalid: {message}{more}."


def build_server(settings, storage) -> MCPServer:
    """The MCP server over one storage; run it on stdio or wrap its HTTP app with the token guard."""
    door = VaultDoor(settings, storage)
    tools = [
        Tool.from_function(door.record_decision, annotations=WRITES),
        Tool.from_function(door.search_decisions, annotations=READ_ONLY),
        Tool.from_function(door.get_decision, annotations=READ_ONLY),
        Tool.from_function(door.supersede_decision, annotations=WRITES),
        Tool.from_function(door.link_decisions, annotations=WRITES),
    ]
    server = MCPServer(
        "angles-vault",
        instructions=INSTRUCTIONS,
        tools=tools,
        middleware=[ArgumentCheck({t.name: t for t in tools})],
    )
    server.resource("decision://{id}", name="decision", mime_type="application/json")(door.decision_resource)
    return server
