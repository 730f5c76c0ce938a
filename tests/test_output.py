"""Tests for converters.output: atomic model folders, manifests, stale partials, disk space."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from converters.errors import DiskSpaceError, MigrateError, UsageError
from converters.output import (
    MANIFEST_NAME,
    StagingDir,
    check_disk_space,
    clean_stale_partials,
    format_bytes,
    is_complete,
    model_slug_dir,
    read_manifest,
)


def _write_model(folder: Path, weights: bytes = b"w" * 3_000_000) -> None:
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.txt").write_text("x")


def _partials(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".partial-" in p.name)


def test_staging_success_publishes_whole_folder(tmp_path: Path) -> None:
    with StagingDir(
        tmp_path,
        "smollm2-135m",
        source_digest="sha256:abc",
        tool_versions={"ollama-vllm-migrate": "0.1.0"},
        extra={"target": "bf16"},
    ) as stage:
        assert stage.path.name.startswith(".smollm2-135m.partial-")
        assert not stage.final.exists()
        _write_model(stage.path)
        stage.set_extra(parity="ok")
    final = tmp_path / "smollm2-135m"
    assert stage.final == final and final.is_dir()
    assert _partials(tmp_path) == []
    manifest = json.loads((final / MANIFEST_NAME).read_text())
    assert manifest["schema"] == 1
    assert manifest["source_digest"] == "sha256:abc"
    assert manifest["tool_versions"] == {"ollama-vllm-migrate": "0.1.0"}
    assert manifest["extra"] == {"target": "bf16", "parity": "ok"}
    by_path = {f["path"]: f for f in manifest["files"]}
    assert sorted(by_path) == ["config.json", "model.safetensors", "sub/extra.txt"]
    weights = (final / "model.safetensors").read_bytes()
    assert by_path["model.safetensors"]["size"] == len(weights)
    assert by_path["model.safetensors"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert is_complete(final) and is_complete(final, verify=True)
    parsed = read_manifest(final)
    assert parsed is not None and parsed.source_digest == "sha256:abc"


def test_crash_midway_leaves_nothing_complete(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), StagingDir(tmp_path, "m") as stage:
        _write_model(stage.path)
        raise RuntimeError("converter died")
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == []


def test_is_complete_detects_damage(tmp_path: Path) -> None:
    with StagingDir(tmp_path, "m") as stage:
        _write_model(stage.path)
    final = stage.final
    assert is_complete(final)
    weights = final / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF  # same size, different bytes: only verify=True sees it
    weights.write_bytes(bytes(data))
    assert is_complete(final) and not is_complete(final, verify=True)
    weights.write_bytes(bytes(data[:-1]))
    assert not is_complete(final)
    (final / MANIFEST_NAME).unlink()
    assert not is_complete(final)
    assert not is_complete(tmp_path / "missing")


def test_is_complete_rejects_manifest_escaping_folder(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (tmp_path / "outside").write_text("x")
    manifest = {
        "schema": 1,
        "slug": "m",
        "created": "2026-01-01T00:00:00+00:00",
        "files": [{"path": "../outside", "size": 1, "sha256": "0" * 64}],
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert not is_complete(folder)


def test_rerun_skip_and_existing_refused_without_force(tmp_path: Path) -> None:
    with StagingDir(tmp_path, "m") as stage:
        _write_model(stage.path)
    assert is_complete(stage.final)  # a rerun checks this and skips
    with pytest.raises(UsageError, match="already exists"), StagingDir(tmp_path, "m"):
        pass
    assert is_complete(stage.final)
    assert _partials(tmp_path) == []


def test_force_replaces_existing_folder(tmp_path: Path) -> None:
    with StagingDir(tmp_path, "m", source_digest="sha256:old") as stage:
        _write_model(stage.path)
        (stage.path / "old-only.txt").write_text("old")
    with StagingDir(tmp_path, "m", force=True, source_digest="sha256:new") as stage:
        _write_model(stage.path, weights=b"new")
    final = tmp_path / "m"
    assert not (final / "old-only.txt").exists()
    assert (final / "model.safetensors").read_bytes() == b"new"
    manifest = read_manifest(final)
    assert manifest is not None and manifest.source_digest == "sha256:new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_force_failure_keeps_old_folder(tmp_path: Path) -> None:
    with StagingDir(tmp_path, "m") as stage:
        _write_model(stage.path)
    with pytest.raises(RuntimeError), StagingDir(tmp_path, "m", force=True) as stage:
        raise RuntimeError("boom")
    assert is_complete(tmp_path / "m", verify=True)


def test_symlinks_refused(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    target.write_text("x")
    out = tmp_path / "out"
    with pytest.raises(MigrateError, match="symlink"), StagingDir(out, "m") as stage:
        (stage.path / "model.safetensors").symlink_to(target)
    assert list(out.iterdir()) == []


_DIE_WHILE_STAGING = """
import os, signal, sys
from pathlib import Path
from converters.output import StagingDir
with StagingDir(Path(sys.argv[1]), "m") as stage:
    (stage.path / "half.safetensors").write_bytes(b"x" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs, as with kill -9 or the OOM killer
"""


def test_stale_partial_from_killed_run_is_cleaned(tmp_path: Path) -> None:
    repo_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    cmd = [sys.executable, "-c", _DIE_WHILE_STAGING, str(tmp_path)]
    process = subprocess.run(cmd, env=env, timeout=60, check=False)
    assert process.returncode == -signal.SIGKILL
    leftovers = _partials(tmp_path)
    assert any(name.endswith(".lock") for name in leftovers)
    assert any(not name.endswith(".lock") for name in leftovers)
    with StagingDir(tmp_path, "m") as stage:  # the next run cleans up first
        (stage.path / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_live_partial_is_left_alone(tmp_path: Path) -> None:
    with StagingDir(tmp_path, "a") as stage:
        (stage.path / "x").write_text("x")
        assert clean_stale_partials(tmp_path) == []
        assert stage.path.is_dir()
        with StagingDir(tmp_path, "b") as other:  # a second run beside a live one
            (other.path / "y").write_text("y")
        assert stage.path.is_dir()
    assert is_complete(tmp_path / "a") and is_complete(tmp_path / "b")


def test_replaced_folder_restored_when_run_died_between_renames(tmp_path: Path) -> None:
    aside = tmp_path / ".m.partial-0123456789ab.replaced"
    aside.mkdir()
    (aside / "config.json").write_text("{}")
    clean_stale_partials(tmp_path)
    assert (tmp_path / "m" / "config.json").is_file()
    assert not aside.exists()


@pytest.mark.parametrize(
    "slug",
    ["", ".", "..", "../evil", "a/b", "a\\b", "/abs", ".hidden", "x\x00y", "tab\tname", " pad"],
)
def test_slug_path_tricks_rejected(tmp_path: Path, slug: str) -> None:
    with pytest.raises(UsageError):
        model_slug_dir(tmp_path, slug)
    with pytest.raises(UsageError):
        StagingDir(tmp_path, slug)


def test_model_slug_dir_ok(tmp_path: Path) -> None:
    assert (
        model_slug_dir(tmp_path, "qwen2.5-7b_instruct")
        == tmp_path.absolute() / "qwen2.5-7b_instruct"
    )


def test_disk_space_error(tmp_path: Path) -> None:
    with pytest.raises(DiskSpaceError) as info:
        check_disk_space(tmp_path / "not-yet" / "deeper", 1 << 60)
    line = info.value.one_line()
    assert line.startswith(
        f"not enough disk at {tmp_path / 'not-yet' / 'deeper'}: need 1073741824.0 GiB, "
    )
    assert line.endswith("GiB free (free space or use --out DIR elsewhere)")
    assert check_disk_space(tmp_path, 1) > 0


def test_format_bytes() -> None:
    assert format_bytes(int(1.2 * (1 << 30))) == "1.2 GiB"
    assert format_bytes(int(0.3 * (1 << 30))) == "0.3 GiB"
    assert format_bytes(50 << 20) == "50.0 MiB"
    assert format_bytes(2048) == "2.0 KiB"
    assert format_bytes(12) == "12 B"
