"""The assistants' door: an MCP server over the vault, on stdio or token-authenticated streamable HTTP."""
