"""Load generation and side-by-side measurement of two OpenAI-compatible endpoints.

- `stream`: a raw asyncio HTTP/1.1 + SSE client, cheap per event;
- `prompts`: distinct prompts of a given length in tokens;
- `generator`: requests at a concurrency level or a rate, bounded in count and time;
- `metrics`: TTFT, TPOT, ITL, E2E, throughput and goodput, as vLLM's benchmark defines them;
- `sweep`: both endpoints through the same sweep, then side by side;
- `report`: JSON, CSV, HTML and PNG.
"""
