"""Host side of quantization: run `job.py` in the llm-compressor runtime and read its result.

    result = quantize_checkpoint(src, dest, scheme="gptq-w4a16", python=RUNTIME_PYTHON,
                                 group_size=64, log_path=LOG)

`dest` is a folder the caller stages (e.g. inside a `StagingDir`); it must be absent or
empty, and on failure it may hold partial files the caller discards. The job writes the
compressed-tensors checkpoint there (config.json with `quantization_config`, which vLLM
detects by itself), the source's tokenizer files, chat template and generation config
verbatim, and llm-compressor's `recipe.yaml`. The caller writes `vllm-config.yaml`.

The job's JSON events go to `progress` as short lines; its whole output goes to
`log_path`. Any failure is a `QuantizationError` whose message is one line: what failed,
the job's own last words, and the log's path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from converters.errors import MigrateError, UsageError
from converters.quantize.calibration import (
    HELDOUT_MAX_TOKENS,
    builtin_calibration_path,
    builtin_heldout_path,
    count_parameters,
    default_budget,
    load_samples,
    parse_dataset_id,
)
from converters.quantize.recipes import needs_calibration, recipe_for, serving_note

JOB_SCRIPT = Path(__file__).with_name("job.py")
_NOISE = ("it/s]", "s/it]", "%|", "Warning", "warnings.warn", '{"event"')


class QuantizationError(MigrateError):
    """The llm-compressor job failed, timed out, or left no usable result."""


class QuantizeQuality(BaseModel):
    """The quality check on the held-out set (see job.py for how each figure is measured)."""

    model_config = ConfigDict(extra="ignore")

    perplexity_base: float
    perplexity_quant: float
    ppl_ratio: float
    mean_kl: float  # nats per token, KL(unquantized || quantized)
    top1_agreement: float  # share of positions where both models' argmax agree
    heldout_samples: int
    heldout_tokens: int
    kl_top_k: int


class QuantizeResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheme: str
    group_size: int | None
    samples: int  # calibration samples actually used (0 for schemes without calibration)
    calibration_tokens: int
    max_seq_len: int
    seconds: float  # wall time of the whole job, start-up included
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    quality: QuantizeQuality | None
    files: list[str]
    serving_note: str
    format: str | None  # compressed-tensors format written in config.json
    device: str
    dtype: str
    render_fallbacks: int = 0  # chat samples the template refused, rendered as plain text
    cpu_workarounds: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    log_path: str


def quantize_checkpoint(
    src: Path,
    dest: Path,
    *,
    scheme: str,
    python: Path,
    group_size: int | None,
    calibration: Path | None = None,
    dataset_id: str | None = None,
    samples: int | None = None,
    max_seq_len: int | None = None,
    cpu_workarounds: bool | None = None,
    log_path: Path,
    progress: Callable[[str], None] | None = None,
    timeout: float | None = None,
    heldout: Path | None = None,
    heldout_samples: int | None = None,
    heldout_max_tokens: int | None = None,
    evaluate: bool = True,
    dtype: str = "auto",
    extra_ignore: Sequence[str] = (),
    seed: int = 0,
) -> QuantizeResult:
    """Quantize the bf16 folder `src` into `dest` with `scheme`; see the module docstring.

    `calibration` (a JSONL file) or `dataset_id` (`ORG/NAME[:SPLIT]`, read in the job)
    replace the built-in calibration set; `samples` / `max_seq_len` default by model size
    (calibration.default_budget). `cpu_workarounds` None lets the job decide (on when it
    sees no accelerator). `heldout` replaces the built-in held-out set; `evaluate=False`
    skips the quality check. `timeout` (seconds) kills the job and raises.
    """
    src, dest, log_path = Path(src), Path(dest), Path(log_path)
    recipe = recipe_for(scheme, group_size=group_size, extra_ignore=extra_ignore)
    if not src.is_dir():
        raise UsageError(f"model folder {src} does not exist")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"output folder {dest} exists and is not empty")
    if not Path(python).exists():
        raise UsageError(
            f"llm-compressor runtime not found at {python}",
            hint="run `migrate runtime install llmcompressor`",
        )
    if dataset_id is not None and calibration is not None:
        raise UsageError("give a calibration file or a hub dataset, not both")

    budget = default_budget(count_parameters(src))
    n_samples = _positive("samples", samples if samples is not None else budget.samples)
    seq_len = _positive(
        "max_seq_len", max_seq_len if max_seq_len is not None else budget.max_seq_len
    )
    calibration_file: Path | None = None
    dataset: tuple[str, str] | None = None
    if needs_calibration(scheme):
        if dataset_id is not None:
            dataset = parse_dataset_id(dataset_id)
        else:
            calibration_file = Path(calibration) if calibration else builtin_calibration_path()
            load_samples(calibration_file)  # fail here, with the line number, not in the job
    heldout_file: Path | None = None
    if evaluate:
        heldout_file = Path(heldout) if heldout else builtin_heldout_path()
        load_samples(heldout_file)

    spec: dict[str, Any] = {
        "src": str(src.absolute()),
        "dest": str(dest.absolute()),
        "scheme": scheme,
        "recipe": recipe,
        "samples": n_samples,
        "max_seq_len": seq_len,
        "calibration_file": str(calibration_file.absolute()) if calibration_file else None,
        "dataset_id": dataset[0] if dataset else None,
        "dataset_split": dataset[1] if dataset else None,
        "heldout_file": str(heldout_file.absolute()) if heldout_file else None,
        "heldout_samples": heldout_samples,
        "heldout_max_tokens": _positive(
            "heldout_max_tokens", heldout_max_tokens or min(seq_len, HELDOUT_MAX_TOKENS)
        ),
        "cpu_workarounds": cpu_workarounds,
        "dtype": dtype,
        "seed": seed,
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantize-") as work:
        spec["result_path"] = str(Path(work) / "result.json")
        spec_path = Path(work) / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        env = _job_env(hub=dataset is not None)
        argv = [str(python), str(JOB_SCRIPT), str(spec_path)]
        started = time.monotonic()
        outcome = _run_job(argv, env, Path(work), log_path, spec, progress, timeout)
        elapsed = round(time.monotonic() - started, 1)
        if outcome.result is None:
            raise QuantizationError(_failure_message(scheme, outcome, log_path, timeout))
        raw = outcome.result
        if Path(spec["result_path"]).is_file():
            raw = json.loads(Path(spec["result_path"]).read_text(encoding="utf-8"))
    try:
        quality = QuantizeQuality.model_validate(raw["quality"]) if raw.get("quality") else None
        saved = raw.get("quantization_config") or {}
        return QuantizeResult(
            scheme=scheme,
            group_size=raw.get("group_size"),
            samples=int(raw["samples"]),
            calibration_tokens=int(raw.get("calibration_tokens", 0)),
            max_seq_len=int(raw["max_seq_len"]),
            seconds=elapsed,
            stage_seconds={k: float(v) for k, v in (raw.get("seconds") or {}).items()},
            quality=quality,
            files=sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()),
            serving_note=serving_note(scheme),
            format=saved.get("format"),
            device=str(raw.get("device", "?")),
            dtype=str(raw.get("dtype", "?")),
            render_fallbacks=int(raw.get("render_fallbacks", 0)),
            cpu_workarounds=list(raw.get("cpu_workarounds") or []),
            versions={k: str(v) for k, v in (raw.get("versions") or {}).items()},
            log_path=str(log_path),
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise QuantizationError(
            f"quantization to {scheme} finished but its result is unreadable: "
            f"{' '.join(str(exc).split())[:200]} (full log: {log_path})"
        ) from exc


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} must be a positive integer, not {value!r}")
    return value


def _job_env(*, hub: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
    )
    # OpenMP threads that spin while waiting collapse under CPU contention: measured here
    # (2 cores, load ~7) a forward pass took 23-96 s with 2 spinning threads, 4-5 s passive.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.pop("PYTHONPATH", None)  # the runtime venv must not see the toolkit's packages
    if not hub:
        env["HF_HUB_OFFLINE"] = "1"  # everything the job reads is local
        env["HF_DATASETS_OFFLINE"] = "1"
    return env


class _Outcome:
    def __init__(self) -> None:
        self.returncode: int | None = None
        self.stage = "start"
        self.error: str | None = None
        self.result: dict[str, Any] | None = None
        self.timed_out = False


def _run_job(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    spec: dict[str, Any],
    progress: Callable[[str], None] | None,
    timeout: float | None,
) -> _Outcome:
    outcome = _Outcome()
    with open(log_path, "ab") as log:
        header = f"$ {' '.join(argv)}\nspec: {json.dumps(spec)}\n"
        _write(log, header)
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group: a timeout kills it all
            )
        except OSError as exc:
            raise QuantizationError(
                f"cannot start the llm-compressor runtime {argv[0]}: {exc.strerror or exc}"
            ) from exc
        timer: threading.Timer | None = None
        if timeout is not None:

            def kill() -> None:
                outcome.timed_out = True
                _kill_group(process)

            timer = threading.Timer(timeout, kill)
            timer.daemon = True
            timer.start()
        try:
            assert process.stdout is not None
            for raw_line in process.stdout:
                _write(log, raw_line.decode("utf-8", "replace"))
                event = _parse_event(raw_line)
                if event is not None:
                    _handle(event, outcome, progress)
            outcome.returncode = process.wait()
        except BaseException:
            _kill_group(process)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if outcome.returncode != 0 or outcome.timed_out:
            outcome.result = None
        _write(log, f"job exit code {outcome.returncode}\n")
    return outcome


def _write(log: IO[bytes], text: str) -> None:
    log.write(text.encode("utf-8"))
    log.flush()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(process.pid), signal.SIGKILL)


def _parse_event(raw_line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw_line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def _handle(
    event: dict[str, Any], outcome: _Outcome, progress: Callable[[str], None] | None
) -> None:
    kind = event["event"]
    text: str | None = None
    if kind == "stage":
        outcome.stage = str(event.get("name"))
        text = outcome.stage + (f" ({event['samples']} samples)" if event.get("samples") else "")
    elif kind == "info":
        text = ", ".join(f"{k} {v}" for k, v in event.items() if k != "event")
    elif kind == "error":
        outcome.stage = str(event.get("stage") or outcome.stage)
        outcome.error = str(event.get("message") or "unknown error")
    elif kind == "result":
        outcome.result = {k: v for k, v in event.items() if k != "event"}
        quality = outcome.result.get("quality") or {}
        text = "done" + (
            f": perplexity {quality['perplexity_base']} -> {quality['perplexity_quant']},"
            f" KL {quality['mean_kl']}"
            if quality
            else ""
        )
    if text and progress is not None:
        progress(text)


def _failure_message(scheme: str, outcome: _Outcome, log_path: Path, timeout: float | None) -> str:
    if outcome.timed_out:
        what = f"quantization to {scheme} timed out after {timeout:.0f} s in stage {outcome.stage}"
    elif outcome.error:
        what = f"quantization to {scheme} failed in stage {outcome.stage}: {outcome.error}"
    elif outcome.returncode == 0:
        what = f"quantization to {scheme} ended without a result"
    else:
        what = (
            f"quantization to {scheme} failed in stage {outcome.stage}: "
            f"the job exited with code {outcome.returncode}"
        )
    tail = [] if outcome.returncode == 2 else _log_tail(log_path, skip=outcome.error)
    parts = [what, *tail, f"full log: {log_path}"]
    return " | ".join(" ".join(p.split()) for p in parts)


def _log_tail(path: Path, *, skip: str | None, lines: int = 2) -> list[str]:
    """The last meaningful lines of the log: no progress bars, warnings or event lines."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    useful: list[str] = []
    for line in reversed(text.replace("\r", "\n").splitlines()):
        line = line.strip()
        if (
            not line
            or line.startswith(("job exit code", "Traceback"))
            or any(n in line for n in _NOISE)
            or (skip and line in skip)
        ):
            continue
        useful.append(line[:200])
        if len(useful) == lines:
            break
    return list(reversed(useful))


def remove_partial(dest: Path) -> None:
    """Delete what a failed job left in `dest` (for callers that do not stage it)."""
    if dest.is_dir():
        shutil.rmtree(dest, ignore_errors=True)
