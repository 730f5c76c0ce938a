"""ollama-vllm-migrate: move local LLMs from Ollama to vLLM, keeping clients working."""

__version__ = "0.1.0"
