"""HTTP routes: each module validates a request and hands it to the shared generation path (server.generation)."""
