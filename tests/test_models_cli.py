"""``hwnas models list`` / ``hwnas models info``: output, defaults, and one-line errors with exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from hwnas.cli.main import main
from hwnas.models import zoo


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as info:
            main(list(args))
    return info.value.code, out.getvalue(), err.getvalue()


def test_models_list_json_and_table():
    code, out, err = run("models", "list", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list(zoo.models())
    for key in ("params", "flops", "layers", "resolution", "published_params_M", "published_flops_M", "top1",
                "latency_ms_v100_fp16_b64", "counted_with_se", "dataset"):
        assert key in rows[0]
    code, out, _ = run("models", "list")
    assert code == 0 and len(out.strip().splitlines()) == 16 and "latency08ms" in out


@pytest.mark.parametrize("m", [m for m in zoo.models().values() if not m.table_note], ids=lambda m: m.name)
def test_info_reproduces_the_published_rows(m):
    code, out, _ = run("models", "info", m.name, "--json")
    assert code == 0
    info = json.loads(out)
    for key in ("params", "flops", "layers", "resolution", "conv_linear_macs", "stages", "rho", "num_classes",
                "use_se"):
        assert key in info
    assert (info["resolution"], info["num_classes"], info["use_se"]) == (m.resolution, m.num_classes,
                                                                          m.counted_with_se)
    assert info["params"] / 1e6 == pytest.approx(m.params_m, rel=0.02)
    assert info["flops"] / 1e6 == pytest.approx(m.flops_m, rel=0.02)


def test_info_options_change_the_counts(tmp_path):
    base = json.loads(run("models", "info", "flops400M", "--json")[1])
    se = json.loads(run("models", "info", "flops400M", "--se", "--json")[1])
    assert se["use_se"] and se["params"] > base["params"]
    small = json.loads(run("models", "info", "flops400M", "--resolution", "112", "--num-classes", "10",
                           "--json")[1])
    assert small["resolution"] == 112 and small["num_classes"] == 10 and small["flops"] < base["flops"] / 3
    f = tmp_path / "arch.txt"
    f.write_text("\n" + str(zoo.get("flops400M").structure) + "\n")
    from_file = json.loads(run("models", "info", str(f), "--json")[1])
    assert from_file["params"] == base["params"] and from_file["resolution"] == 224
    cell = json.loads(run("models", "info", "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|"
                                            "skip_connect~2|", "--json")[1])
    assert cell["space"] == "nb201" and cell["params"] == 559386
    code, out, _ = run("models", "info", "latency08ms")
    assert code == 0 and "params" in out and "SuperResK1K5K1" in out


@pytest.mark.parametrize("args,words", [
    (["SuperConvK3BNRELU(3,8,1,1)SuperConvK1BNRELU(9,64,1,1)"], "at position 44"),
    (["SuperConvK3BNRELU(3,8,1,1"], "at position 25"),
    (["SuperResK3K3(3,8,3,8,1)"], "stride 3"),
    (["|none~0|+|none~0|none~1|"], "expected '+'"),
    (["no_such_model"], "not a zoo model name"),
    (["latency"], "ambiguous"),
    (["cifar10_model_size05M", "--resolution", "0"], "resolution"),
    (["cifar10_model_size05M", "--space", "mars"], "unknown space"),
    (["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--se"], "no SE option"),
])
def test_bad_input_is_one_line_and_exit_2(args, words):
    code, out, err = run("models", "info", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err


def test_bad_structure_in_a_real_process_is_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-c", "from hwnas.cli.main import main; main()", "models", "info",
                           "SuperConvK3BNRELU(3,8,1,1)SuperResK1K3K1(16,32,2,8,1)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("hwnas: error: invalid structure at position 41:")


@pytest.mark.parametrize("command", [["models"], ["models", "list"], ["models", "info"]])
def test_help_has_an_example(command):
    code, out, _ = run(*command, "--help")
    assert code == 0 and "Example" in out


def test_models_spaces_lists_the_registry():
    from hwnas.models.spaces.base import get_space, space_names

    code, out, _ = run("models", "spaces", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["space"] for r in rows] == space_names()
    for r in rows:
        space = get_space(r["space"])
        assert (r["resolution"], r["num_classes"]) == (space.resolution, space.num_classes)
        assert r["finite"] == hasattr(space, "all_archs")
    code, out, _ = run("models", "spaces")
    assert code == 0 and "nb201-imagenet16" in out


def test_info_of_a_search_run_folder_reads_its_space_and_input(tmp_path):
    text = "SuperConvK3BNRELU(3,8,1,1)SuperResK3K3(8,16,2,8,1)SuperConvK1BNRELU(16,32,1,1)"
    (tmp_path / "best.txt").write_text(text + "\n")
    (tmp_path / "config.json").write_text(json.dumps({"space": "cifar32", "resolution": 32, "num_classes": 100}))
    info = json.loads(run("models", "info", str(tmp_path), "--json")[1])
    assert (info["source"], info["space"], info["structure"]) == ("run", "cifar32", text)
    assert info["num_classes"] == 100
    same = json.loads(run("models", "info", text, "--space", "cifar32", "--num-classes", "100", "--json")[1])
    assert same["params"] == info["params"]
    code, _, err = run("models", "info", str(tmp_path), "--space", "imagenet224")
    assert code == 2 and "contradicts" in err and len(err.strip().splitlines()) == 1


def test_arguments_that_are_no_files_give_one_line_errors(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("x" * (2 << 20))
    cases = [
        ("y" * 10_000, "not a zoo model name"),  # too long to be a file name: never tried as one
        ("SuperConvK3BNRELU(3,8,1,1)" * 400 + "(", "invalid structure"),
        (str(big), "bytes"),
        ("/dev/null", "not a regular file"),
        (str(tmp_path), "no best.txt"),
    ]
    for arg, words in cases:
        code, out, err = run("models", "info", arg)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, arg
