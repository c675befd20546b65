"""``dispatch``: the command line client of a Dispatch server.

It speaks only the public HTTP API (README "Using the API", docs/protocol.md#5-http-api) over httpx, so it works
against any Dispatch server it can reach; it never imports the server's code.
"""
