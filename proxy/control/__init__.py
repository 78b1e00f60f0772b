"""Control plane: HTTP API, web console, auth, audit, metrics."""
