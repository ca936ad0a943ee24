"""Issue 17: every bad input is one line and exit status 2 before any work; degenerate networks are
ProxyErrors; a seeded fuzz of every command (but tune) finds no traceback and no hang."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest

from hwnas.errors import HwnasError, ProxyError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_cli", ROOT / "scripts" / "fuzz_cli.py")
fuzz_cli = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_cli"] = fuzz_cli  # its dataclasses look their module up
_spec.loader.exec_module(fuzz_cli)

SMALL = fuzz_cli.SMALL
# Four stride-2 blocks after a stride-2 stem: the last feature map of a 32x32 input is 1x1.
ONE_BY_ONE = "SuperConvK3BNRELU(3,8,2,1)" + "SuperResK3K3(8,8,2,8,1)" * 4 + "SuperConvK1BNRELU(8,8,1,1)"
# Two 64-sub-layer blocks beside 1-sub-layer ones: the depth variance is far above exp's float64 range.
DEEP = "SuperConvK3BNRELU(3,8,2,1)SuperResK3K3(8,8,1,8,64)SuperResK3K3(8,8,1,8,64)SuperConvK1BNRELU(8,8,1,1)"


@pytest.fixture
def env(tmp_path):
    with fuzz_cli.fuzz_environment(tmp_path) as files:
        yield tmp_path, files


def refused(argv, *fragments):
    """Run hwnas ARGV; assert exit 2 with one line naming every fragment."""
    outcome = fuzz_cli.run(argv)
    assert outcome.traceback is None, outcome.traceback
    assert outcome.code == 2, outcome.output
    lines = [ln for ln in outcome.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hwnas: error: "), outcome.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_over_long_structure_argument_is_not_tried_as_a_file(env):
    refused(["models", "info", "A" * 10_000], "is not a zoo model name")
    refused(["latency", "predict", "A" * 10_000], "is not a zoo model name")


def test_stem_must_read_three_channels(env):
    stem4 = "SuperConvK3BNRELU(4,8,2,1)SuperConvK1BNRELU(8,16,1,1)"
    refused(["models", "info", stem4], "stem takes 4 input channels; expected 3")
    refused(["score", "--proxy", "zen", stem4, "--space", "cifar32"], "expected 3")
    _, files = env
    refused(["score", "--proxy", "zen", "--file", files["stem4"], "--space", "cifar32"], "expected 3")


@pytest.mark.parametrize("digits", ["\uff13", "\u0668"])  # fullwidth 3, Arabic-Indic 8
def test_non_ascii_digits_are_no_channel_counts(env, digits):
    refused(["models", "info", f"SuperConvK3BNRELU({digits},8,2,1)SuperConvK1BNRELU(8,16,1,1)"],
            "expected an integer argument")
    refused(["search", "--population", digits, "--out", "o"], "ASCII digits")


@pytest.mark.parametrize("setting", ["alpha=abc", "alpha=nan", "alpha=1e999", "wz=[1]", "se=1"])
def test_proxy_settings_are_checked(env, setting):
    refused(["score", "--proxy", "incorporated", "--set", setting, SMALL, "--space", "cifar32"],
            f"option {setting.split('=')[0]}=")


def test_seed_and_device_are_checked_before_work(env):
    refused(["score", "--proxy", "zen", SMALL, "--seed", "1180591620717411303424"], "--seed", "4294967295")
    refused(["search", "--seed", "-1", "--out", "o"], "--seed")
    refused(["score", "--proxy", "zen", SMALL, "--device", "foo"], "not a torch device")
    refused(["score", "--proxy", "zen", SMALL, "--device", "cuda:7"], "cuda:7")


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "binary", "dir"])
def test_input_files_are_regular_bounded_text(env, kind):
    _, files = env
    path = files.get(kind, kind)
    message = refused(["score", "--proxy", "zen", "--file", path], path)
    assert ("not a regular file" in message) or ("not UTF-8 text" in message) or ("is a directory" in message)
    refused(["search", "--initial", "@" + path, "--out", "o"], path)
    refused(["proxies", "fit", path, "--terms", "flops"], path)


@pytest.mark.parametrize("out", ["/proc/x", "/dev/null", "/sys/x/y", ""])
def test_output_folders_are_checked_before_work(env, out):
    tmp, _ = env
    before = sorted(os.listdir(tmp))
    refused(["search", "--out", out], "--out")
    refused(["proxies", "bench", "--dataset", "cifar10", "--proxies", "flops", "--out", out], "--out")
    refused(["proxies", "bench", "--dataset", "cifar10", "--proxies", "flops", "--cache", out], "--cache")
    assert sorted(os.listdir(tmp)) == before  # nothing written, not even into the current folder


def test_check_output_dir_probes_without_leaving_anything(tmp_path):
    from hwnas.files import check_output_dir

    check_output_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(HwnasError, match="lies under"):
        check_output_dir(tmp_path / "f" / "g")


@pytest.mark.parametrize("option,value", [
    ("--batch-size", "99999999999999999999999"), ("--early-batch", "99999999999999999999999"),
    ("--repeat", "99999999999999999999999"), ("--iterations", "0"), ("--population", "0"),
    ("--checkpoint-every", "0"), ("--checkpoint-every", "-1"), ("--checkpoint-every", "nan"),
    ("--checkpoint-every", "inf"), ("--early-margin", "nan"), ("--early-margin", "-1"), ("--early-margin", "inf"),
    ("--latency-ms", "1e308"), ("--flops", "nan"), ("--params", "-1"), ("--rho-max", "inf"), ("--profile", ""),
])
def test_search_numbers_are_bounded_at_parse_time(env, option, value):
    refused(["search", option, value, "--out", "o"], option)


def test_deploy_resolution_is_bounded(env):
    refused(["deploy", SMALL, "--resolution", "100000", "--out", "d"], "--resolution", "4096")


@pytest.mark.parametrize("address", ["", "x", "host:0", "host:70000", "host:port", "ray://", "a b:1"])
def test_ray_address_is_checked_at_parse_time(env, address):
    refused(["search", "--ray", address, "--out", "o"], "--ray", "host:port")


def test_timing_cache_must_be_a_writable_file(env):
    tmp, _ = env
    refused(["deploy", SMALL, "--timing-cache", str(tmp), "--out", "d"], "--timing-cache", "folder")


def test_a_one_by_one_feature_map_at_batch_one_is_a_proxy_error():
    from hwnas.models.spaces.base import get_space
    from hwnas.search.proxies.base import get_proxy

    space = get_space("cifar32")
    arch = space.parse(ONE_BY_ONE)
    for name in ("zen", "incorporated", "grad_norm", "snip", "naswot"):
        with pytest.raises(ProxyError, match="batch size of at least 2"):
            get_proxy(name, batch_size=1).score(space, arch)
    assert math.isfinite(get_proxy("zen", batch_size=2).score(space, arch).value)


def test_incorporated_entropy_beyond_float64_is_rejected_not_an_overflow():
    from hwnas.models.spaces.base import get_space
    from hwnas.search.proxies.base import get_proxy
    from hwnas.search.proxies.incorporated import entropy_score

    space = get_space("cifar32")
    arch = space.parse(DEEP)
    depths = [1, 64, 64, 1]  # sub-layers per block, at least
    mean = sum(depths) / 4
    assert sum((d - mean) ** 2 for d in depths) / 4 > 709  # exp() of it overflows float64
    e = entropy_score(arch, 32)
    assert e["q"] == math.inf and e["e_score"] == -math.inf
    with pytest.raises(ProxyError, match="E_score"):
        get_proxy("incorporated", batch_size=1).score(space, arch)


def test_the_search_records_such_a_candidate_as_rejected():
    from hwnas.search.workers import Scorer

    scorer = Scorer("cifar32", "zen", {}, batch_size=1, repeat=1, run_seed=0)
    score, parts, reason = scorer(ONE_BY_ONE)
    assert score is None and parts == {} and "batch size of at least 2" in reason


def test_fuzz_every_command(tmp_path):
    """A few hundred generated command lines, seeded: exit status 0, 1 or 2, no traceback, no hang, and every
    error one line."""
    count, found = fuzz_cli.fuzz(cases=300, seed=17, tmp=tmp_path, timeout_s=30)
    assert count == 300
    assert [(o.problems(), o.argv, (o.traceback or o.output)[-300:]) for o in found] == []


def test_common_proxy_settings_have_their_own_flags(env):
    refused(["score", "--proxy", "zen", SMALL, "--set", "resolution=abc"], "use --resolution")
    refused(["score", "--proxy", "zen", SMALL, "--set", "device=foo"], "use --device")
    refused(["search", "--proxy-option", "batch_size=0", "--out", "o"], "--batch-size")
    refused(["search", "--proxy-option", "resolution=abc", "--out", "o"], "resolution must be an integer")


@pytest.mark.parametrize("name", ["A" * 10_000, "a/" * 3000])
def test_names_too_long_to_look_up_are_one_line(env, name):
    refused(["deploy", "check", name], "File name too long")
    refused(["latency", "predict", SMALL, "--profile", name], "no profile")
    refused(["search", "--out", name], "--out")


def test_proxies_fit_refuses_what_it_cannot_fit(env):
    _, files = env
    refused(["proxies", "fit", files["scores"], "--terms", "1e308"], "cannot be fitted")
    refused(["proxies", "fit", files["text_csv"], "--terms", "flops"], "not numeric")
    refused(["proxies", "fit", files["empty"], "--terms", "flops"], "not a readable CSV")
