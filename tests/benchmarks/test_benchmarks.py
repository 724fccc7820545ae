"""The benchmark runner: machine line, thread rows, floor columns, targets, hooks, docs writing.

Nothing here asserts a timing: the machine may be busy. The tests check that the runner
measures what it says (rows, columns, ratios present and positive) and reports what it could
not measure.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import ROOT
from torch import nn

from autotimm.losses import register_loss
from benchmarks import bench_cli, bench_losses, run
from benchmarks._machine import all_threads, cpu_info, machine_line, parse_cpuinfo
from benchmarks._table import COLUMNS, Row, meets, to_markdown
from benchmarks._timing import interleaved_many

X86_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16

processor\t: 1
model name\t: something else
"""

ARM_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes crc32 asimddp sve sve2 bf16 i8mm
CPU part\t: 0xd4f
"""


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(text: str) -> list[dict[str, str]]:
    """The markdown table in ``text`` as dicts keyed by column name."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = _cells(lines[0])
    assert tuple(header) == COLUMNS
    return [dict(zip(header, _cells(line), strict=True)) for line in lines[1:]]


# ----------------------------------------------------------------------------- machine line


def test_cpuinfo_gives_the_model_and_the_widest_vector_extension() -> None:
    x86 = parse_cpuinfo(X86_CPUINFO)
    assert x86.model == "AMD EPYC 9R14 96-Core Processor"  # the first processor's
    assert x86.vector_isa == "avx512f"
    assert x86.vector_flags == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                "avx512vl", "avx512_bf16"]  # fmt: skip
    arm = parse_cpuinfo(ARM_CPUINFO)
    assert arm.model == "0xd4f"
    assert arm.vector_isa == "sve2"
    assert {"asimd", "sve", "sve2", "bf16"} <= set(arm.vector_flags)
    unknown = parse_cpuinfo("processor: 0\n")
    assert unknown.vector_isa == "unknown" and unknown.vector_flags == []


def test_machine_line_names_cpu_vector_isa_torch_capability_and_threads() -> None:
    line = machine_line([1, 2])
    cpu = cpu_info()
    assert cpu.model in line
    assert f"vector ISA {cpu.vector_isa}" in line
    assert f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}" in line
    assert "at 1 and 2 threads" in line
    assert torch.__version__ in line


def test_all_threads_is_torchs_default_even_after_the_runner_changed_it() -> None:
    default = all_threads()
    torch.set_num_threads(1)
    try:
        assert all_threads() == default
        if default > 1:
            assert bench_losses.thread_label(default) == f"{default} (all)"
        assert bench_losses.thread_label(1) == "1"
    finally:
        torch.set_num_threads(default)


def test_thread_counts_parse_with_all_meaning_torchs_default() -> None:
    assert bench_losses.parse_threads("1,all") == sorted({1, all_threads()})
    assert bench_losses.parse_threads("2, 2,1") == [2, 1]


# ------------------------------------------------------------------------------ table rows


@pytest.mark.parametrize(
    ("value", "target", "expected"),
    [(0.35, "<= 0.35", True), (0.36, "<= 0.35", False), (1.99, "< 2", True), (2, "< 2", False)],
)
def test_targets_are_judged_as_written(value: float, target: str, expected: bool) -> None:
    assert meets(value, target) is expected


def test_a_malformed_target_is_refused() -> None:
    with pytest.raises(ValueError, match="target must look like"):
        meets(1.0, "about 1")


def test_row_result_reports_every_missed_target_and_what_was_not_measured() -> None:
    measured = Row("focal", "f", ratio=0.5, target="<= 0.35", floor_ratio=3.0, floor_target="<= 5")
    assert measured.result == "FAIL: ours/peer 0.50, target <= 0.35"
    measured.memory_mib = (200.0, 100.0)
    assert "memory above peer" in measured.result
    assert Row("focal", "f", ratio=0.3, target="<= 0.35").result == "pass"
    no_peer = Row("dice", "d", target="<= 0.8", floor_ratio=1.2, floor_target="<= 2")
    assert no_peer.result == "pass (ours/peer not measured)"
    assert Row("dice", "d", target="<= 0.8").result == "not measured: ours/peer"
    assert Row("x", "x", skipped="not yet").result == "skipped: not yet"
    assert Row("x", "x", error="boom").result == "ERROR: boom"
    assert Row("x", "x").result == "-"


def test_markdown_keeps_one_cell_per_column_whatever_the_text() -> None:
    rows = [Row("x", "a | b", note="line\nbreak"), Row("y", "y", ratio=1.234, floor_ratio=2)]
    table = _table(to_markdown(rows))
    assert table[0]["benchmark"] == "a / b" and table[0]["note"] == "line break"
    assert table[1]["ours / peer"] == "1.23" and table[1]["ours / floor"] == "2.00"


# ---------------------------------------------------------------------------------- timing


def test_interleaving_rotates_the_order_and_keeps_one_sample_per_round() -> None:
    calls: list[str] = []
    timing = interleaved_many(
        [lambda: calls.append("a"), lambda: calls.append("b"), lambda: calls.append("c")],
        rounds=3,
        warmup=1,
        numbers=[1, 1, 1],
    )
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # after one warm-up each
    assert [len(samples) for samples in timing.samples] == [3, 3, 3]
    assert timing.ratio(0, 1) > 0 and timing.median(2) > 0


def test_fast_callables_are_repeated_within_a_sample() -> None:
    timing = interleaved_many([lambda: None, lambda: None], rounds=2, min_sample=0.001)
    assert min(timing.numbers) > 1


# ------------------------------------------------------------------------------- loss rows


def test_each_loss_runs_at_every_thread_count_with_its_floor_and_peer() -> None:
    rows = bench_losses.run(
        rounds=1, warmup=1, names=["cross_entropy", "focal_pixelwise"], threads=[1, 2],
        min_sample=0,
    )  # fmt: skip
    assert [(row.key, row.threads.split()[0]) for row in rows] == [
        ("cross_entropy", "1"),
        ("cross_entropy", "2"),
        ("focal_pixelwise", "1"),
        ("focal_pixelwise", "2"),
    ]
    for row in rows:
        assert row.floor.startswith("softmax(x, 1).sum() ")
        assert row.floor_ratio is not None and row.floor_ratio > 0
        assert row.error is None and row.skipped is None
    ce_one_thread, ce_two_threads = rows[0], rows[1]
    assert ce_one_thread.ratio is not None and ce_one_thread.ratio > 0  # torch's CE, same run
    assert ce_one_thread.memory_mib is not None and "MiB peak" in ce_one_thread.ours
    assert ce_two_threads.memory_mib is None  # memory is measured once, at the first count
    assert rows[2].ratio is None and rows[2].peer == "-"  # focal_pixelwise has no peer
    assert rows[2].floor_target == "<= 2"


def test_every_loss_row_states_its_floor() -> None:
    floors = {case.name: case.floor for case in bench_losses.CASES}
    for name in ("focal", "bce_with_logits", "asymmetric", "quality_focal", "varifocal"):
        assert floors[name] is bench_losses.SIGMOID, name
    for name in ("dice", "cross_entropy", "focal_pixelwise", "lovasz", "weighted_sum"):
        assert floors[name] is bench_losses.SOFTMAX, name
    for name in ("giou", "diou", "ciou"):
        assert floors[name] is bench_losses.BOX, name
    pred, target = bench_losses._box_inputs()
    assert bench_losses.BOX.fn(pred, target) > 0  # some of the random pairs overlap


def test_a_row_that_raises_is_an_error_row_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> Any:
        return lambda pred, target: pred.sum() + torch.tensor([1.0, 2.0])[5]

    bad = bench_losses.Case(
        "cross_entropy", "raises", bench_losses._class_index_inputs, broken, bench_losses.SOFTMAX
    )
    good = next(case for case in bench_losses.CASES if case.name == "giou")
    monkeypatch.setattr(bench_losses, "CASES", [bad, good])
    rows = bench_losses.run(rounds=1, warmup=1, threads=[1], min_sample=0)
    assert rows[0].error is not None and rows[0].result.startswith("ERROR: IndexError")
    assert rows[1].key == "giou" and rows[1].error is None and rows[1].ratio is not None


def test_rows_of_losses_not_registered_yet_are_listed_as_skipped_with_their_targets() -> None:
    from autotimm.losses import get_loss_registry

    registry = get_loss_registry()  # restored after the test
    for name in ("weighted_sum", "asymmetric"):
        if registry.has_loss(name):  # as before they existed
            registry.unregister(name)
    rows = bench_losses.run(rounds=1, names=["weighted_sum", "asymmetric"], threads=[1])
    by_key = {row.key: row for row in rows}
    assert by_key["weighted_sum"].skipped == "get_loss('weighted_sum') does not exist yet"
    assert by_key["weighted_sum"].target == "<= 1.05"
    assert by_key["asymmetric"].skipped == "get_loss('asymmetric') does not exist yet"
    assert by_key["asymmetric"].target == "<= 1.0"


def test_the_weighted_sum_and_asymmetric_rows_fill_in_once_the_losses_exist() -> None:
    from autotimm.losses import get_loss

    @register_loss("weighted_sum", task="segmentation", override=True)
    class StandInWeightedSum(nn.Module):
        def __init__(self, *, terms: list[dict[str, Any]]) -> None:
            super().__init__()
            self.terms = [(get_loss(t["name"]), t.get("weight", 1.0)) for t in terms]

        def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return sum((w * loss(pred, target) for loss, w in self.terms), torch.zeros(()))

    # asymmetric is built in (issue 12): its row is measured as it stands
    rows = bench_losses.run(
        rounds=1, warmup=1, names=["weighted_sum", "asymmetric"], threads=[1], min_sample=0
    )
    assert [row.key for row in rows] == ["weighted_sum", "asymmetric"]
    for row in rows:
        assert row.skipped is None and row.error is None, row.result
        assert row.ratio is not None and row.floor_ratio is not None
    if importlib.util.find_spec("timm"):
        assert "MiB peak" in rows[1].peer  # timm's AsymmetricLossMultiLabel measured


def test_the_fit_row_is_skipped_while_autotimm_fit_does_not_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_cli, "_fit_exists", lambda: False)
    (row,) = bench_cli.run(rounds=1)
    assert row.skipped == "`autotimm fit` does not exist yet"
    assert row.target == "<= 1.5"


@pytest.mark.parametrize(("status", "measured"), [(2, True), (0, False), (1, False)])
def test_the_fit_row_times_a_bad_config_that_exits_2_and_flags_any_other_status(
    status: int, measured: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ``autotimm fit``: ``--help`` works, a config run exits with ``status``."""
    fake_fit = tmp_path / "fake_fit.py"
    fake_fit.write_text(
        "import pathlib, sys\n"
        "if '--help' in sys.argv: sys.exit(0)\n"
        "assert 'smoth' in pathlib.Path(sys.argv[sys.argv.index('--config') + 1]).read_text()\n"
        f"sys.exit({status})\n"
    )
    monkeypatch.setattr(bench_cli, "FIT", [sys.executable, str(fake_fit)])
    monkeypatch.setattr(bench_cli, "BASELINE", [sys.executable, "-c", "pass"])
    (row,) = bench_cli.run(rounds=1)
    if measured:
        assert row.error is None and row.ratio is not None and row.ratio > 0
        assert row.ours.endswith(" ms") and row.peer.endswith(" ms")
    else:
        assert row.error is not None and f"exit status {status}, expected 2" in row.error


# --------------------------------------------------------------------------- runner, docs


def test_write_docs_replaces_only_the_table_section(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Title\n\nbefore\n\n{run.BEGIN}\nold table\n{run.END}\n\nafter\n")
    run.write_docs("Machine: here.\n\n| new |", page)
    text = page.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "old table" not in text and f"{run.BEGIN}\n\nMachine: here.\n\n| new |" in text


def test_the_docs_page_has_the_table_markers_and_says_figures_vary() -> None:
    text = run.DOCS.read_text()
    assert run.BEGIN in text and run.END in text
    assert "differ across CPUs" in text


def test_summary_counts_results() -> None:
    rows = [Row("a", "a", ratio=1.0, target="< 2"), Row("b", "b", skipped="later"), Row("c", "c")]
    assert run.summary(rows) == "3 rows: 1 pass, 0 FAIL, 1 skipped, 0 ERROR"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "fokal"], "--only: unknown ['fokal']"),
        (["--only", "focal", "--write-docs"], "--write-docs writes the whole table"),
    ],
)
def test_the_runner_refuses_bad_arguments_before_measuring(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_python_m_benchmarks_quick_prints_the_machine_line_and_every_row(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    shutil.copy(ROOT / "docs" / "benchmarks.md", docs)
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--write-docs", "--docs", str(docs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Machine: ")
    assert "vector ISA" in result.stdout.splitlines()[0]
    rows = _table(result.stdout)
    benchmarks = "\n".join(row["benchmark"] for row in rows)
    for expected in [
        "get_loss('focal'",
        "import autotimm.losses",
        "dice forward+backward",
        "focal forward+backward",
        "giou forward+backward",
        "lovasz forward+backward",
        "weighted_sum",
        "asymmetric",
        "SemanticSegmentor",
        "autotimm fit --config bad.yaml",
    ]:
        assert expected in benchmarks, expected
    focal = [row for row in rows if row["benchmark"].startswith("focal forward")]
    threads = {1, torch.get_num_threads()}
    assert {int(row["threads"].split()[0]) for row in focal} == threads
    for row in focal:
        assert float(row["ours / floor"]) > 0 and float(row["ours / peer"]) > 0
        assert row["floor"].startswith("sigmoid(x).sum()")
    for row in rows:
        assert not row["result"].startswith("ERROR"), row
        for column in ("ours / peer", "ours / floor"):
            if row[column] != "-":
                assert float(row[column]) > 0, row
    written = docs.read_text().split(run.BEGIN)[1].split(run.END)[0]
    assert "Command: `python -m benchmarks --write-docs --quick`" in written
    assert result.stdout.splitlines()[0] in written  # the machine line
    assert _table(written) == rows
