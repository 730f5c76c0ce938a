#!/usr/bin/env bash
# The main job on the bundled demo: a real Ollama store holding SmolLM2, then `migrate plan`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
migrate demo-store demo/ollama-models
migrate plan --models-dir demo/ollama-models --gpu "${DEMO_GPU:-cpu}" --out demo/migration-plan.json
