"""Host side of emulation: a quantized folder decompressed to bf16, for hardware without
the scheme's kernels (NVFP4 off Blackwell). See emulate_job.py for what is emulated."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from converters.errors import UsageError
from converters.quantize.run import QuantizationError, _log_tail

JOB_SCRIPT = Path(__file__).with_name("emulate_job.py")


def emulate_checkpoint(
    quantized: Path, base: Path, dest: Path, *, python: Path, log_path: Path, timeout: float = 1800
) -> int:
    """Write the bf16 emulation of `quantized` into `dest` (absent or empty); returns the
    tensor count. `base` is the unquantized folder whose tensor names are written."""
    for folder, what in ((quantized, "quantized"), (base, "bf16 base")):
        if not (folder / "config.json").is_file():
            raise UsageError(f"the {what} folder {folder} has no config.json")
    if not Path(python).exists():
        raise UsageError(
            f"llm-compressor runtime not found at {python}",
            hint="run `migrate runtime install llmcompressor`",
        )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("PYTHONPATH", None)  # the runtime must not see the toolkit's packages
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(python), str(JOB_SCRIPT), str(quantized), str(base), str(dest)]
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            done = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=log, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise QuantizationError(
                f"emulating {quantized.name} timed out after {timeout:.0f} s (full log: {log_path})"
            ) from None
        log.write(done.stdout)
    last = (done.stdout.decode("utf-8", "replace").strip().splitlines() or ["{}"])[-1]
    try:
        event = json.loads(last)
    except ValueError:
        event = {}
    if done.returncode != 0 or event.get("event") != "result":
        why = event.get("message") or " | ".join(_log_tail(log_path, skip=None))
        raise QuantizationError(
            f"emulating {quantized.name} in bf16 failed: {why} (full log: {log_path})"
        )
    return int(event["tensors"])
