#!/usr/bin/env bash
# The main job on the bundled demo: a real Ollama store holding SmolLM2, planned for
# vLLM, converted (rebuilt from its GGUF), then served by vLLM and asked a question.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --runtimes
export PATH="$PWD/.venv/bin:$PATH"
migrate demo-store demo/ollama-models
migrate plan --models-dir demo/ollama-models --gpu "${DEMO_GPU:-cpu}" --out demo/migration-plan.json
migrate convert --plan demo/migration-plan.json --out demo/models --from-gguf
