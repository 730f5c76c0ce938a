"""Planning speed, in one run:

1. our GGUF header read vs gguf.GGUFReader on the SmolLM2 file (goal: >= 20x faster);
2. `build_plan` (what `migrate plan` runs) on a generated 20-model Ollama store, after
   imports (goal: under 1 s), and the whole `migrate plan` command with imports.

Usage: python bench/plan_speed.py [SMOLLM2_GGUF]
The store holds 20 distinct models (different SYSTEM/params, library, user and hf.co
names), all on the SmolLM2 weights, so every one needs its own GGUF header read.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from gguf_header_speed import find_smollm2_gguf, measure  # noqa: E402

from migrate.ollama.demo import write_model  # noqa: E402
from migrate.plan.build import PlanRequest, build_plan  # noqa: E402
from migrate.targets.choose import hardware_from_spec  # noqa: E402
from migrate.targets.gpus import lookup_gpu  # noqa: E402

N_MODELS = 20
GOAL_PLAN_S = 1.0


def build_store(store: Path, gguf: Path) -> None:
    for i in range(N_MODELS):
        if i % 3 == 0:
            name = f"smollm2:variant{i}"
        elif i % 3 == 1:
            name = f"team{i}/assistant:v{i}"
        else:
            name = f"hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1-{i}"
        write_model(
            store,
            name,
            gguf=gguf,
            system=f"You are assistant number {i}.",
            params={
                "num_ctx": 1024 * (1 + i % 4),
                "temperature": 0.1 * (i % 8),
                "stop": ["<|im_end|>"],
            },
        )


def main() -> None:
    gguf = Path(sys.argv[1]) if len(sys.argv) > 1 else find_smollm2_gguf()
    header = measure(gguf)
    print(
        f"header read: ours {header['ours_ms']:.1f} ms, gguf.GGUFReader {header['gguf_reader_ms']:.0f} ms, "
        f"{header['speedup']:.0f}x faster (goal >= 20x)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "models"
        build_store(store, gguf)
        request = PlanRequest(
            models_dir=store,
            hardware=hardware_from_spec(lookup_gpu("h100"), detected=False, vram_gib=None),
        )
        times = []
        for _ in range(5):
            start = time.perf_counter()
            plan = build_plan(request)
            times.append(time.perf_counter() - start)
        assert len(plan.models) == N_MODELS, len(plan.models)
        median = statistics.median(times)
        print(
            f"build_plan on a {N_MODELS}-model store: {median * 1000:.0f} ms median of 5 after imports "
            f"({median / GOAL_PLAN_S:.2f} of the 1 s goal)"
        )
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "migrate.cli.main",
                "plan",
                "--models-dir",
                str(store),
                "--gpu",
                "h100",
                "--out",
                str(Path(tmp) / "plan.json"),
            ],
            check=True,
            capture_output=True,
            cwd=REPO_ROOT,
        )
        print(
            f"`migrate plan` command, imports included: {(time.perf_counter() - start) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
