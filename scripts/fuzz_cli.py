"""Drive every ``hwnas`` command (but ``tune``) in-process with generated bad option values.

Each case takes a cheap valid command line, replaces one or two of its options (or its argument) with a
generated value, runs ``hwnas.cli.main.main`` and records the exit status, whether a traceback escaped,
whether the case hung (a per-case alarm) and whether an error took more than one line. The library
function each command hands its work to is replaced by a stub (for ``search``, the evolution after
``prepare`` has checked the configuration) (``WorkReached``, counted as exit 0): what
is fuzzed is everything up to the work, which is where every input must be checked. ``hwnas score`` runs
for real with every proxy's ``evaluate`` stubbed, so the proxies' own checks run too.

    python scripts/fuzz_cli.py --cases 2000 --seed 0
    python scripts/fuzz_cli.py --sweep      # every hand-picked bad value in every option, once
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SMALL = "SuperConvK3BNRELU(3,8,2,1)SuperResK3K3(8,8,2,8,1)SuperConvK1BNRELU(8,16,1,1)"
EXIT_CODES = {0, 1, 2}


class WorkReached(Exception):
    """Raised by the stubs: the command got past every check to its work."""


class Hang(BaseException):
    """Raised by the per-case alarm."""


def _stop(*args, **kwargs):
    raise WorkReached()


def bad_files(folder: Path) -> dict[str, str]:
    """Paths every kind of bad path value draws from (created in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    (folder / "binary").write_bytes(bytes(range(256)) * 8)
    (folder / "empty").write_text("")
    (folder / "stem4.txt").write_text("SuperConvK3BNRELU(4,8,2,1)SuperConvK1BNRELU(8,16,1,1)\n")
    (folder / "dir").mkdir(exist_ok=True)
    rows = [f"{i},{50 + (i * 7) % 13},{i * 1000 + 5},{(i * 3) % 11 - 2.5}" for i in range(12)]
    (folder / "text.csv").write_text("accuracy,flops\nhigh,1\nlow,2\n")
    (folder / "scores.csv").write_text("index,accuracy,flops,zen\n" + "\n".join(rows) + "\n")
    return {"fifo": str(fifo), "binary": str(folder / "binary"), "empty": str(folder / "empty"),
            "stem4": str(folder / "stem4.txt"), "dir": str(folder / "dir"), "scores": str(folder / "scores.csv"),
            "text_csv": str(folder / "text.csv"), "missing": str(folder / "nonexistent" / "dir" / "x")}


def bad_values(files: dict[str, str]) -> list[str]:
    """Hand-picked values: the classes of issue 17 and their neighbours."""
    return ["", " ", "-1", "0", "1", "2.5", "-0", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e-320",
            "99999999999999999999999", "-99999999999999999999999", "4097", "65537", "2147483648", "0x10",
            "\uff13", "\u0668", "\u0663\u0662", "abc", "--json", "-", "@", "@/dev/zero", "/dev/zero", "/dev/null",
            "/proc/x", "/sys/x/y", "/", files["missing"], files["text_csv"], files["fifo"], "@" + files["fifo"],
            files["binary"],
            "@" + files["binary"], files["empty"], files["dir"], files["stem4"], "A" * 10_000, "a/" * 3000,
            "cuda", "cuda:7", "cuda:-1", "foo", "cpu:0", "mps", "meta", "alpha=abc", "alpha=nan", "alpha=1e999",
            "wz=nan", "beta=[1,2]", "x=1", "=", "se=1", "batches=0", "transform=sqrt", "device=foo", "device=cpu",
            "resolution=abc", "resolution=0", "resolution=99999", "batch_size=0", "seed=x", "repeat=2.5", "dtype=x",
            "SuperConvK3BNRELU(4,8,2,1)SuperConvK1BNRELU(8,16,1,1)",
            "SuperConvK3BNRELU(3,\uff18,2,1)SuperConvK1BNRELU(\uff18,16,1,1)", "SuperConvK3BNRELU(3,8,2,1",
            "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", "|x~9|", "zennet", "zen", "flops",
            "log(-1)", "zen+", "flops;;zen", "log(zen)", "zen*0", "accuracy", "index;flops;zen;accuracy",
            "__import__('os')", "runs", "imagenet224", "nb201", "cifar10", "onnx", "tensorrt"]


@dataclass(frozen=True)
class Command:
    """A cheap valid command line (``{arg}`` marks its argument, if any) and the options to fuzz."""

    base: tuple[str, ...]
    options: tuple[str, ...] = ()
    argument: str | None = None  # the valid argument that replaces {arg}
    flags: tuple[str, ...] = field(default=())


def commands(tmp: Path) -> list[Command]:
    out = str(tmp / "out")
    return [
        Command(("models", "info", "{arg}", "--space", "cifar32"), ("--space", "--resolution", "--num-classes"),
                SMALL, ("--se", "--json")),
        Command(("models", "list"), (), None, ("--json",)),
        Command(("models", "spaces"), (), None, ("--json",)),
        Command(("latency", "predict", "{arg}"), ("--profile",), SMALL, ("--json",)),
        Command(("latency", "validate", "--no-progress"), ("--profile", "--samples", "--seed", "--plot"), None,
                ("--published", "--repeatability", "--json")),
        Command(("latency", "recalibrate", "--no-progress"), ("--profile", "--networks"), None, ("--remeasure",)),
        Command(("profile-device", "--cpu", "--no-progress", "--out", out),
                ("--gpu", "--backend", "--precision", "--batch", "--threads", "--space", "--grid", "--networks",
                 "--seed", "--max-minutes", "--out", "--quick-from"), None, ("--cuda-graphs", "--quick", "--json")),
        Command(("profiles", "list"), (), None, ("--json",)),
        Command(("profiles", "import", "tinynas", "{arg}"),
                ("--precision", "--batch", "--space", "--convention", "--device", "--dataset", "--out"),
                str(tmp / "bad" / "empty"), ("--json",)),
        Command(("profiles", "import", "hw-nas-bench", "{arg}", "--device", "pixel3", "--dataset", "cifar10"),
                ("--device", "--dataset", "--out"), str(tmp / "bad" / "scores.csv"), ("--json",)),
        Command(("score", "--proxy", "zen", "{arg}", "--space", "cifar32", "--batch-size", "2"),
                ("--proxy", "--file", "--nb201", "--space", "--seed", "--resolution", "--batch-size", "--repeat",
                 "--device", "--dtype", "--bn-term", "--set"), SMALL, ("--se", "--json")),
        Command(("proxies", "list"), (), None, ("--json",)),
        Command(("proxies", "bench", "--dataset", "cifar10", "--proxies", "flops", "--sample", "3", "--no-progress",
                 "--no-cache"),
                ("--space", "--dataset", "--proxies", "--sample", "--seed", "--proxy-seed", "--out", "--cache",
                 "--resolution", "--batch-size", "--repeat", "--device", "--dtype", "--bn-term", "--set"), None,
                ("--se", "--json")),
        Command(("proxies", "fit", "{arg}", "--terms", "log(flops);zen"), ("--terms",), str(tmp / "bad" / "scores.csv"),
                ("--json",)),
        Command(("search", "--space", "cifar32", "--population", "2", "--iterations", "2", "--batch-size", "2",
                 "--no-progress", "--out", out),
                ("--latency-ms", "--flops", "--params", "--max-layers", "--rho-max", "--profile", "--space",
                 "--population", "--iterations", "--proxy", "--batch-size", "--repeat", "--wz", "--wd",
                 "--transform", "--beta", "--proxy-option", "--initial", "--early-batch", "--early-margin", "--seed",
                 "--workers", "--latency-batch", "--out", "--checkpoint-every", "--measure"), None,
                ("--resume", "--json")),
        Command(("curves", "--out", str(tmp / "c.png")),
                ("--space", "--profile", "--x", "--dataset", "--runs", "--out", "--csv", "--max-gflops",
                 "--cache-dir", "--trained"),
                None, ("--json", "--no-torchvision", "--no-progress")),
        Command(("sweep", "--space", "nb201", "--latency-ms", "0.5", "--population", "2", "--iterations", "2",
                 "--batch-size", "2", "--no-progress", "--out", out),
                ("--latency-ms", "--seeds", "--proxy", "--profile", "--space", "--population", "--iterations",
                 "--batch-size", "--repeat", "--proxy-option", "--flops", "--params", "--max-layers", "--rho-max",
                 "--initial", "--workers", "--checkpoint-every", "--measure", "--out"), None, ("--json",)),
        Command(("deploy", "{arg}", "--space", "cifar32", "--batch", "1", "--out", out),
                ("--format", "--precision", "--batch", "--weights", "--num-classes", "--resolution", "--space",
                 "--tolerance", "--timing-cache", "--out"), SMALL, ("--dynamic-batch", "--se", "--json")),
        Command(("deploy", "check", "{arg}"), ("--profile", "--tolerance", "--repeats"), str(tmp / "bad" / "dir"),
                ("--json",)),
        Command(("train", "{arg}", "--data", str(tmp / "bad" / "dir"), "--dataset", "imagefolder", "--out", out,
                 "--no-progress"),
                ("--data", "--dataset", "--epochs", "--batch-size", "--resolution", "--space", "--lr",
                 "--weight-decay", "--label-smoothing", "--warmup-epochs", "--workers", "--seed", "--out"), SMALL,
                ("--no-flip", "--resume", "--json")),
    ]


def _stubs() -> list:
    """Patches that replace each command's work (and every proxy's forward passes) with a stub."""
    import hwnas.search.curves  # noqa: F401 (the patch targets are looked up as attributes)
    import hwnas.search.sweep  # noqa: F401
    from hwnas.search.proxies.base import proxy_class, proxy_names

    targets = ["hwnas.search.evolution.Evolution", "hwnas.search.curves.curves", "hwnas.search.curves.sweep_curves",
               "hwnas.search.sweep.sweep", "hwnas.search.proxy_bench.run_bench",
               "hwnas.deploy.export", "hwnas.deploy.check", "hwnas.train.train_network",
               "hwnas.latency.profiler.profile_device", "hwnas.latency.profiler.recalibrate",
               "hwnas.latency.validate.validate", "hwnas.latency.validate.published"]
    patches = [mock.patch(t, _stop) for t in targets]
    patches += [mock.patch.object(proxy_class(n), "evaluate", lambda self, space, arch, g: (1.0, {}))
                for n in proxy_names()]
    return patches


@dataclass
class Outcome:
    argv: list[str]
    code: object
    output: str
    traceback: str | None = None
    hung: bool = False

    def problems(self) -> list[str]:
        found = []
        if self.hung:
            found.append("hang")
        if self.traceback or "Traceback" in self.output:
            found.append("traceback")
        if self.code not in EXIT_CODES:
            found.append(f"exit {self.code!r}")
        errors = [ln for ln in self.output.splitlines() if "error" in ln.lower()]
        if self.code == 2 and len([ln for ln in self.output.splitlines() if ln.strip()]) != 1:
            found.append("error of more than one line")
        elif len(errors) > 1:
            found.append("more than one error line")
        return found


def run(argv: list[str], timeout_s: int = 20) -> Outcome:
    """Run ``hwnas ARGV`` in-process: exit status, stdout+stderr, an escaped traceback, a hang."""
    import traceback

    from hwnas.cli.main import main

    buffer = io.StringIO()

    def alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout_s)
    code, tb, hung = 0, None, False
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if exit_.code is not None else 0
    except WorkReached:
        code = 0
    except Hang:
        hung, code = True, None
    except Exception:  # noqa: BLE001 - what the fuzzing looks for
        code, tb = 1, traceback.format_exc()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(list(argv), code, buffer.getvalue(), tb, hung)


def value_strategy(files: dict[str, str]):
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24)
    return st.one_of(st.sampled_from(bad_values(files)), text,
                     st.integers(-(10**30), 10**30).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))


def case_strategy(tmp: Path, files: dict[str, str]):
    """An argv: a command's cheap line with its argument and/or one or two options replaced by bad values."""
    cmds = commands(tmp)
    values = value_strategy(files)

    @st.composite
    def case(draw):
        cmd = draw(st.sampled_from(cmds))
        argv = list(cmd.base)
        if "{arg}" in argv:
            arg = draw(st.one_of(st.just(cmd.argument), values)) if cmd.options else draw(values)
            argv[argv.index("{arg}")] = arg
        for option in draw(st.lists(st.sampled_from(cmd.options), max_size=2, unique=True)) if cmd.options else []:
            argv += [option, draw(values)]
        argv += draw(st.lists(st.sampled_from(cmd.flags), max_size=1)) if cmd.flags else []
        if draw(st.integers(0, 9)) == 0:  # now and then a stray argument or unknown option
            argv.append(draw(values))
        return argv

    return case()


def command_name(argv: list[str]) -> str:
    """``models info``, ``score``, ``deploy export``, ...: the command a generated line runs."""
    if argv[0] in ("models", "latency", "profiles", "proxies"):
        return " ".join(argv[:2])
    if argv[0] == "deploy":
        return "deploy check" if argv[1] == "check" else "deploy export"
    return argv[0]


@contextlib.contextmanager
def fuzz_environment(tmp: Path):
    """cwd in ``tmp`` (defaults like runs/search land there), the stubs on, bad files made; yields the files."""
    files = bad_files(tmp / "bad")
    cwd = os.getcwd()
    os.chdir(tmp)
    with contextlib.ExitStack() as stack:
        for patch in _stubs():
            stack.enter_context(patch)
        try:
            yield files
        finally:
            os.chdir(cwd)


def fuzz(cases: int, seed: int, tmp: Path, timeout_s: int = 20,
         codes: Counter | None = None) -> tuple[int, list[Outcome]]:
    """Run ``cases`` generated command lines; return (cases run, outcomes with problems). ``codes``, if given,
    counts the exit statuses by command."""
    found: list[Outcome] = []
    count = 0
    with fuzz_environment(tmp) as files:

        @settings(max_examples=cases, derandomize=False, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case_strategy(tmp, files))
        def one(argv):
            nonlocal count
            count += 1
            outcome = run(argv, timeout_s)
            if codes is not None:
                codes[(command_name(argv), outcome.code)] += 1
            if outcome.problems():
                found.append(outcome)

        from hypothesis import seed as hypothesis_seed

        hypothesis_seed(seed)(one)()
    return count, found


def sweep(tmp: Path, timeout_s: int = 20, codes: Counter | None = None) -> tuple[int, list[Outcome]]:
    """Every hand-picked bad value in every option (and the argument) of every command, once each."""
    found: list[Outcome] = []
    count = 0
    with fuzz_environment(tmp) as files:
        for cmd in commands(tmp):
            slots = list(cmd.options) + (["{arg}"] if "{arg}" in cmd.base else []) + [None]
            for slot in slots:
                for value in bad_values(files):
                    argv = [cmd.argument if a == "{arg}" else a for a in cmd.base]
                    if slot == "{arg}":
                        argv[cmd.base.index("{arg}")] = value
                    elif slot is None:
                        argv.append(value)  # a stray argument
                    else:
                        argv += [slot, value]
                    outcome = run(argv, timeout_s)
                    count += 1
                    if codes is not None:
                        codes[(command_name(argv), outcome.code)] += 1
                    if outcome.problems():
                        found.append(outcome)
    return count, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python scripts/fuzz_cli.py --cases 2000 --seed 0")
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true",
                        help="instead of --cases: every hand-picked bad value in every option of every command")
    parser.add_argument("--codes", action="store_true", help="print how many cases of each command exited how")
    parser.add_argument("--timeout", type=int, default=20, help="seconds per case before it counts as a hang")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwnas-fuzz-") as tmp:
        codes: Counter = Counter()
        if args.sweep:
            count, found = sweep(Path(tmp), args.timeout, codes)
        else:
            count, found = fuzz(args.cases, args.seed, Path(tmp), args.timeout, codes)
    seconds = time.perf_counter() - start
    kinds: dict[str, int] = {}
    for outcome in found:
        for problem in outcome.problems():
            kinds[problem] = kinds.get(problem, 0) + 1
        shown = [a if len(a) < 80 else a[:60] + f"...({len(a)} chars)" for a in outcome.argv]
        print(f"{outcome.problems()}: hwnas {shown}", file=sys.stderr)
        print("    " + (outcome.traceback or outcome.output).strip().splitlines()[-1][:300] if (
            outcome.traceback or outcome.output).strip() else "    (no output)", file=sys.stderr)
    if args.codes:
        for (command, code), n in sorted(codes.items(), key=str):
            print(f"{command:24s} exit {code}: {n}")
    print(f"{count} cases in {seconds:.0f} s: {kinds.get('traceback', 0)} tracebacks, {kinds.get('hang', 0)} "
          f"hangs, {len(found)} cases with a problem ({kinds})")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
