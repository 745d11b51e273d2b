"""Models: the catalog, what is on disk, GGUF headers, and the starter models."""
