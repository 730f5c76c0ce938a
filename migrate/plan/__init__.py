"""The plan file: what each Ollama model becomes on vLLM, and why."""
