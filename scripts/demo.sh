#!/usr/bin/env bash
# The main job on the bundled demo: a real Ollama store holding SmolLM2, planned for
# vLLM, converted (rebuilt from its GGUF), served by vLLM, asked a question under the
# name Ollama clients used, and validated against the Ollama side. No Ollama server can
# run here, so llama.cpp (Ollama's engine) serves the store's GGUF in its place.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --runtimes
export PATH="$PWD/.venv/bin:$PATH"
export MIGRATE_PLAN=demo/migration-plan.json
migrate demo-store demo/ollama-models
migrate plan --models-dir demo/ollama-models --gpu "${DEMO_GPU:-cpu}"
migrate convert --out demo/models --from-gguf
trap 'migrate serve --stop' EXIT
url=$(migrate serve --detach | head -n 1 | cut -d' ' -f1)
python - "$url" <<'PY'
import json, sys, urllib.request
body = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0, "max_tokens": 64}
request = urllib.request.Request(sys.argv[1] + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=300))
print("smollm2:135m on vLLM says:", answer["choices"][0]["message"]["content"])
PY
source=$(migrate serve-gguf --detach)
# A quick run (12 prompts x 32 tokens); drop the limits for the full 54-prompt suite.
migrate validate --source "$source" --max-prompts 12 --max-tokens 32 --report demo/validation-report
