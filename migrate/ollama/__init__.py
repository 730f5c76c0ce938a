"""Reading Ollama's model store, on disk or over its API."""
