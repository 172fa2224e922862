"""API keys (stored as SHA-256 digests), scopes per route prefix, and a per-key token-bucket rate limit
shared across replicas through Redis. One pure-ASGI middleware (`middleware.AuthMiddleware`) applies them
to every route, the ASGI fast path of POST /v1/recommend included.

Kept import-free: `service.settings` imports `service.auth.keys` for the key entry model.
"""
