"""Decompress a compressed-tensors checkpoint into a plain bf16 one with the same names as
its unquantized base: the quantized model, emulated, servable where its kernels are not.

Run inside the llm-compressor runtime, by file path:
    python emulate_job.py QUANTIZED BASE DEST

The weights are loaded through compressed-tensors decompression (each weight dequantized
exactly as stored), and every tensor the base checkpoint has is written from it, in bf16;
scales and other quantization parameters are dropped. Activation quantization (NVFP4's
4-bit activations) is not carried: the emulation is of the weights only. Imports only the
standard library, torch, transformers and safetensors. The last stdout line is JSON:
{"event": "result", ...} or {"event": "error", "message": ...}.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json")
# Written afresh by the caller (the launch config, the folder manifest), or meaningless for
# the emulated folder (the recipe).
SKIP = ("vllm-config.yaml", "migration-manifest.json", "recipe.yaml")


def base_tensor_names(base: Path) -> list[str]:
    names: list[str] = []
    for file in sorted(base.glob("*.safetensors")):
        with open(file, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        names += [k for k in header if k != "__metadata__"]
    return names


def emulate(quantized: Path, base: Path, dest: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(
        str(quantized),
        dtype=torch.bfloat16,
        quantization_config=CompressedTensorsConfig(run_compressed=False),
    )
    state = model.state_dict()
    names = base_tensor_names(base)
    missing = [n for n in names if n not in state]
    if missing:
        raise RuntimeError(f"{len(missing)} base tensors absent after decompression: {missing[0]}")
    tensors = {n: state[n].detach().to(torch.bfloat16).contiguous() for n in names}
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "model.safetensors").chmod(0o644)  # written 0600
    for path in quantized.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name not in SKIP:
            shutil.copyfile(path, dest / path.name)
    config = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    scheme = config.pop("quantization_config", None)
    config["dtype"] = "bfloat16"
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return {"tensors": len(tensors), "format": (scheme or {}).get("format")}


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(json.dumps({"event": "error", "message": "usage: emulate_job.py Q BASE DEST"}))
        return 2
    try:
        result = emulate(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        print(json.dumps({"event": "result", **result}), flush=True)
        return 0
    except BaseException as exc:  # every failure must end in one JSON line
        traceback.print_exc(file=sys.stderr)
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
        print(json.dumps({"event": "error", "message": message}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
