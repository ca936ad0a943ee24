"""Structure strings: round trips, one dedicated error (with its position) per fault class, and fuzzing."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwnas.cli.main import main
from hwnas.errors import StructureError
from hwnas.models import zoo
from hwnas.models.builder import build
from hwnas.models.structure import parse

ZOO_STRINGS = sorted({str(m.structure) for m in zoo.models().values()})
RAW_ZOO = sorted({(zoo.data_dir() / f"{name}.txt").read_text().strip() for name in zoo.models()})


@pytest.mark.parametrize("text", RAW_ZOO)
def test_every_zoo_string_round_trips(text):
    s = parse(text)
    assert str(s) == text
    assert parse(str(s)) == s
    assert hash(parse(text)) == hash(s)


FAULTS = [
    # (text, position, words the message must contain)
    ("SuperFooK3(3,8,1,1)", 0, "unknown block"),
    ("SuperConvK4BNRELU(3,8,1,1)", 0, "kernel 4"),
    ("SuperResK3K5(3,8,1,8,1)", 0, "two different kernels"),
    ("SuperResIDWE3K3(3,8,1,8,1)", 0, "expansion 3"),
    ("SuperResK1K1K1(3,8,1,8,1)", 0, "kernel 1"),
    ("SuperConvK3BNRELU(3,8,1)", 17, "takes 4 arguments"),
    ("SuperResK3K3(3,8,1,1)", 12, "takes 5 arguments"),
    ("SuperConvK3BNRELU(3,0,1,1)", 20, "out channels 0"),
    ("SuperConvK3BNRELU(3,-8,1,1)", 20, "out channels -8"),
    ("SuperConvK3BNRELU(3,9000,1,1)", 20, "out channels 9000"),
    ("SuperConvK3BNRELU(3,12345678901,1,1)", 20, "out of range"),
    ("SuperResK3K3(3,8,1,0,1)", 19, "mid channels 0"),
    ("SuperConvK3BNRELU(3,8,3,1)", 22, "stride 3"),
    ("SuperConvK3BNRELU(3,8,1,0)", 24, "sub-layer count 0"),
    ("SuperConvK3BNRELU(3,8,1,1)SuperConvK1BNRELU(9,64,1,1)", 44, "previous block outputs 8"),
    ("SuperConvK3BNRELU", 17, "expected '('"),
    ("SuperConvK3BNRELU(3,8,1,1", 25, "expected ',' or ')'"),
    ("SuperConvK3BNRELU(3,8,,1)", 22, "expected an integer"),
    ("SuperConvK3BNRELU(3,8,1,1)#", 26, "expected a block name"),
    ("SuperConvK3BNRELU(3,8,1,1) SuperConvK1BNRELU(8,64,1,1)", 26, "expected a block name"),
    ("", 0, "empty string"),
]


@pytest.mark.parametrize("text,position,words", FAULTS)
def test_each_fault_has_a_dedicated_error_with_its_position(text, position, words):
    with pytest.raises(StructureError) as info:
        parse(text)
    assert info.value.position == position
    message = str(info.value)
    assert f"at position {position}" in message
    assert words in message


def test_non_string_input_is_a_structure_error():
    with pytest.raises(StructureError):
        parse(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------- fuzzing

_HUGE = ["0", "-1", "-8", "99999999", "123456789012", "8193", "65", "3", "2", "1", "7"]
_NAMES = ["SuperConvK3BNRELU", "SuperConvK9BNRELU", "SuperResK3K3", "SuperResK1K7K1", "SuperResIDWE6K7",
          "SuperResIDWE5K3", "SuperResK5K7", "ResNet", "superconvk3bnrelu", "SuperConvK3BNRELU2"]


@st.composite
def corrupted(draw):
    """A zoo string with one or two corruptions, or random grammar-alphabet text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet="SuperConvResKIDWEBNRLU0123456789(),-|~+ ", max_size=80))
    text = draw(st.sampled_from(ZOO_STRINGS))
    for _ in range(draw(st.integers(1, 2))):
        if not text:
            break
        kind = draw(st.integers(0, 7))
        i = draw(st.integers(0, len(text) - 1))
        if kind == 0:  # truncation
            text = text[:i]
        elif kind == 1 and i + 1 < len(text):  # swapped characters
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif kind == 2:  # a number replaced by a huge, negative, zero or small one
            digits = [j for j, ch in enumerate(text) if ch.isdigit() and (j == 0 or not text[j - 1].isdigit())]
            if digits:
                j = draw(st.sampled_from(digits))
                end = j
                while end < len(text) and text[end].isdigit():
                    end += 1
                text = text[:j] + draw(st.sampled_from(_HUGE)) + text[end:]
        elif kind == 3:  # an unknown or mangled block name
            j = text.find("Super", i)
            if j >= 0:
                end = text.find("(", j)
                text = text[:j] + draw(st.sampled_from(_NAMES)) + text[end:]
        elif kind == 4:  # deleted character
            text = text[:i] + text[i + 1:]
        elif kind == 5:  # inserted character
            text = text[:i] + draw(st.sampled_from(list("(),-0123456789KS ."))) + text[i:]
        elif kind == 6:  # a block repeated (breaks the channel chain unless in == out)
            j = text.find(")", i)
            start = text.rfind("Super", 0, j)
            if j >= 0 and start >= 0:
                text = text[:j + 1] + text[start:j + 1] + text[j + 1:]
        else:  # an argument dropped or added
            j = text.find(",", i)
            if j >= 0:
                text = text[:j] + (",1" if draw(st.booleans()) else "") + text[j:]
                if draw(st.booleans()):
                    k = text.find(",", j + 1)
                    text = text[:j] + text[k:] if k >= 0 else text
    return text


def _builds_or_structure_error(text: str, use_se: bool) -> bool:
    try:
        s = parse(text)
    except StructureError:
        return False
    assert parse(str(s)) == s
    with torch.device("meta"):
        net = build(s, num_classes=10, use_se=use_se)
    assert sum(p.numel() for p in net.parameters()) > 0
    return True


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=corrupted(), use_se=st.booleans())
def test_fuzz_parser_either_builds_or_raises_structure_error(text, use_se):
    _builds_or_structure_error(text, use_se)


def _run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as info:
            main(args)
    return info.value.code, out.getvalue(), err.getvalue()


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=corrupted())
def test_fuzz_cli_info_is_exit_0_or_one_line_and_exit_2(text):
    if not text.strip() or text.lstrip().startswith("-"):
        text = "(" + text  # keep it an argument, not an option; still a malformed structure
    code, out, err = _run_cli(["models", "info", text, "--json"])
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("hwnas: error: ")
    if "(" not in text:  # not an architecture string: a zoo name (exit 0) or a one-line error
        assert code in (0, 2)
        return
    try:
        parse(text)
        valid = True
    except StructureError:
        valid = False
    if valid:
        assert code == 0 and '"params"' in out and err == ""
    else:
        assert code == 2 and err.startswith("hwnas: error: invalid structure at position ")
