"""The HTTP and WebSocket surface: one router per resource, each handler a thin call into the runtime.

Only this package speaks HTTP: it maps the server's errors to status codes (errors.py) and is
the only place HTTPException appears.
"""
