"""What Ollama does when a Modelfile and a request leave a parameter unset.

We follow Ollama's behaviour as of late 2026: `api.DefaultOptions()` (temperature 0.8,
top_k 40, top_p 0.9, min_p 0, repeat_penalty 1.0 (1.1 before mid-2026), repeat_last_n 64,
num_predict -1) and a default context of 4096 tokens unless the server sets
OLLAMA_CONTEXT_LENGTH (older releases used 2048). Users with older servers pass
`--ollama-num-ctx` / `--ollama-repeat-penalty`.
"""

from __future__ import annotations

from pydantic import BaseModel

DEFAULT_NUM_CTX = 4096


class OllamaDefaults(BaseModel):
    num_ctx: int = DEFAULT_NUM_CTX
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
