"""Interlock for AI agents over the Model Context Protocol: list, propose and follow; never decide.

`server` holds the tools' handlers, `http` mounts them beside the intake, `command` is
`interlock mcp`. Nothing is imported here: the MCP SDK is slow to import and most commands
never need it.
"""

MCP_PATH = "/mcp"
