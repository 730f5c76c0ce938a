"""Mapping an Ollama model to its HuggingFace original, with a stated confidence."""
