"""The HTTP side: an app factory and the API dialects, thin over the engine."""
