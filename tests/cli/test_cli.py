"""The `spaner` command: help, listing, a train/extend/eval round, and clean error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spaner.cli.main import main

SPANER = [sys.executable, "-m", "spaner.cli.main"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("cmd", ["train", "extend", "eval", "encoders", "datasets"])
def test_every_subcommand_has_help(cmd):
    proc = subprocess.run([*SPANER, cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: spaner" in proc.stdout


def test_encoders_lists_text_image_audio(capsys):
    code, out, _ = run_cli(["encoders"], capsys)
    assert code == 0
    for name in (
        "openclip-vit-b-32-image",
        "hubert-base-audio",
        "minilm-l6-text",
        "tiny-clip-text",
    ):
        assert name in out
    code, out, _ = run_cli(["encoders", "--json"], capsys)
    rows = json.loads(out)
    assert {r["modality"] for r in rows} >= {"text", "image", "audio"}
    assert all({"name", "modality", "width", "weights"} <= set(r) for r in rows)


@pytest.mark.slow
def test_train_extend_eval_round_trip(trimodal_set, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    code, out, err = run_cli(
        [
            "-q",
            "train",
            "--manifest",
            str(trimodal_set),
            "--profile",
            "tiny",
            "--modalities",
            "text,image",
            "--encoder",
            "text=tiny-bert-text",
            "--shots",
            "3",
            "--epochs",
            "5",
            "--out",
            str(ckpt),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    assert record["train"]["epochs_run"] >= 1 and "text->image" in record["test"]["retrieval"]
    assert (ckpt / "model.safetensors").is_file()
    ext = tmp_path / "ext"
    code, out, err = run_cli(
        [
            "extend",
            "--checkpoint",
            str(ckpt),
            "--modality",
            "audio",
            "--encoder",
            "tiny-wav2vec2-audio",
            "--manifest",
            str(trimodal_set),
            "--epochs",
            "3",
            "--shots",
            "3",
            "--audio-augment",
            "0",
            "--out",
            str(ext),
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert "extended 'audio'" in out
    code, out, err = run_cli(
        [
            "eval",
            "--manifest",
            str(trimodal_set),
            "--checkpoint",
            str(ext),
            "--shots",
            "3",
            "--epochs",
            "3",
            "--methods",
            "spaner,linear_adapter",
            "--audio-augment",
            "0",
            "--json",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert set(report["methods"]) == {"checkpoint", "spaner", "linear_adapter"}
    assert "audio->image" in report["methods"]["checkpoint"]
    code, out, err = run_cli(
        [
            "eval",
            "--manifest",
            str(trimodal_set),
            "--profile",
            "tiny",
            "--shots",
            "2",
            "--epochs",
            "2",
            "--methods",
            "spaner",
            "-q",
        ],
        capsys,
    )
    assert code == 0 and "| spaner | text->image |" in out and "modality gap" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--manifest", "/nonexistent/m.jsonl", "--out", "x"], "manifest not found"),
        (
            ["train", "--manifest", "{m}", "--out", "{tmp}/o", "--profile", "tiny", "--shots", "0"],
            "--shots must be >= 1",
        ),
        (
            [
                "train",
                "--manifest",
                "{m}",
                "--out",
                "{tmp}/o",
                "--profile",
                "tiny",
                "--shots",
                "2",
                "--fraction",
                "0.5",
            ],
            "not both",
        ),
        (
            [
                "train",
                "--manifest",
                "{m}",
                "--out",
                "{tmp}/o",
                "--profile",
                "tiny",
                "--encoder",
                "image=nope",
            ],
            "unknown encoder 'nope'",
        ),
        (
            [
                "train",
                "--manifest",
                "{m}",
                "--out",
                "{tmp}/o",
                "--profile",
                "tiny",
                "--encoder",
                "image=tiny-clip-text",
            ],
            "is a text encoder",
        ),
        (
            [
                "train",
                "--manifest",
                "{m}",
                "--out",
                "{tmp}/o",
                "--profile",
                "tiny",
                "--weights",
                "image=/no/such/file",
            ],
            "no such file",
        ),
        (
            [
                "train",
                "--manifest",
                "{m}",
                "--out",
                "{tmp}/o",
                "--profile",
                "tiny",
                "--modalities",
                "text",
            ],
            "at least two modalities",
        ),
        (
            ["train", "--manifest", "{bad}", "--out", "{tmp}/o", "--profile", "tiny"],
            "bad.jsonl:2: not valid JSON",
        ),
        (
            [
                "extend",
                "--checkpoint",
                "{tmp}",
                "--modality",
                "audio",
                "--manifest",
                "{m}",
                "--out",
                "{tmp}/o",
            ],
            "not a SPANER checkpoint",
        ),
        (
            ["eval", "--manifest", "{m}", "--profile", "tiny", "--methods", "magic"],
            "unknown method 'magic'",
        ),
        (["encoders", "--modality", "smell"], None),
    ],
)
def test_error_paths_are_clean(args, message, trimodal_set, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{oops\n')
    args = [a.format(m=trimodal_set, tmp=tmp_path, bad=bad) for a in args]
    code, out, err = run_cli(args, capsys)
    if message is None:  # an empty listing is not an error
        assert code == 0
        return
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_argparse_errors_exit_2_without_traceback():
    proc = subprocess.run(
        [*SPANER, "train", "--profile", "nonesuch"], capture_output=True, text=True, timeout=120
    )
    assert (
        proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "spaner"
    assert exe.is_file(), "pip install -e . should install the `spaner` console script"


def test_datasets_synthetic_builds_a_manifest_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "syn"
    code, _, err = run_cli(
        ["datasets", "synthetic", "--out", str(out), "--concepts", "3", "--per-concept", "2"],
        capsys,
    )
    assert code == 0, err
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 * 3  # concepts x per concept x modalities
    code, _, err = run_cli(["datasets", "synthetic", "--out", str(out)], capsys)
    assert code == 2 and "not empty" in err
    code, _, err = run_cli(
        ["datasets", "synthetic", "--out", str(tmp_path / "b"), "--concepts", "99"], capsys
    )
    assert code == 2 and "concepts must be" in err
