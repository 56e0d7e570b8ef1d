"""The HTML report: every figure the page references exists and is a PNG; sections for every figure kind."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from support.lake_sample import SCENARIOS, write_run_set
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.errors import KdgatError
from kdgat.lake import append_runs, build_lake
from kdgat.stages.report import run as write_report

PNG = b"\x89PNG\r\n\x1a\n"
LABELS = ("vgae_large", "gat_large", "vgae_small_kd", "gat_small_kd", "gat_small", "fusion_dqn_small_kd", "eval")


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def referenced(index: Path) -> list[str]:
    parser = _Images()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.sources


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    lake = root / "lake"
    for dataset, seed in (("alpha", 1), ("beta", 2)):
        paths = write_run_set(root / dataset, dataset=dataset, seed=seed)
        append_runs([paths[k] for k in LABELS], lake)
    build_lake(lake)
    return lake


@pytest.fixture(scope="module")
def report(lake, tmp_path_factory) -> Path:
    return Path(write_report(lake, tmp_path_factory.mktemp("out") / "report").summary["index"])


def test_every_referenced_figure_is_a_non_empty_png(report):
    assert report.name == "index.html"
    sources = referenced(report)
    for src in sources:
        path = report.parent / src
        assert path.is_file(), src
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG), src
    names = " ".join(sources)
    for kind in ("leaderboard-alpha", "leaderboard-beta", "confusion-alpha", "training-beta", "kd-impact",
                 "parameters", "dqn-policy"):  # fmt: skip
        assert kind in names, kind
    for scenario in SCENARIOS:  # ROC and PR per test scenario, per dataset
        assert f"roc-pr-alpha-{scenario}" in names and f"roc-pr-beta-{scenario}" in names
    assert sorted(p.name for p in (report.parent / "figures").iterdir()) == sorted(Path(s).name for s in sources)


def test_cli_report_rewrites_cleanly_and_shows_the_leaderboard(lake, report):
    from kdgat.lake import leaderboard

    out = report.parent
    (out / "figures" / "stale.png").write_bytes(b"old")
    result = CliRunner().invoke(app, ["report", "--lake", str(lake), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"report: {report}"
    text = report.read_text(encoding="utf-8")
    best = leaderboard(lake, "alpha").to_pylist()[0]
    assert f"{best['val_f1_mean']:.3f} (one value)" in text and f"{best['selected_test_f1']:.4f}" in text  # one seed
    assert "Knowledge distillation impact" in text and "Per test scenario" in text
    assert "(seed 1, " in text and "(seed 2, " in text  # whose curves each dataset's section shows
    fusions = text.split('<section id="dqn">')[1].split("</section>")[0]  # one row per dataset: these are runs
    assert "fallbacks and the novel-ID rule" in fusions and "<th>n_novel_alert</th>" in fusions  # made before it
    assert fusions.count("<td>fusion_dqn_small_kd</td>") == 2 and "<td>alpha</td>" in fusions
    assert not (out / "figures" / "stale.png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert all((out / src).is_file() for src in referenced(report))


def test_report_of_an_empty_lake_is_an_error(tmp_path):
    from kdgat.lake.store import open_lake

    open_lake(tmp_path / "lake", create=True)
    with pytest.raises(KdgatError, match="the lake has no runs"):
        write_report(tmp_path / "lake", tmp_path / "out")
    assert not (tmp_path / "out" / "index.html").exists()


def test_the_parameter_chart_draws_the_yardsticks_apart_from_teachers_and_students():
    """hgb and novelty are 'large' runs but no teacher of any student: their bars are the yardsticks'."""
    from kdgat.report.figures import size_role

    def role(family, scale, kd=False):
        return size_role({"family": family, "scale": scale, "has_kd": kd})

    assert [role("hgb", "large"), role("novelty", "large")] == ["yardstick", "yardstick"]
    assert [role("gat", "large"), role("vgae", "small"), role("gat", "small", True)] == [
        "teacher", "student", "student_kd"
    ]  # fmt: skip
    assert role("fusion_dqn", "small", True) == "student_kd"


def test_a_report_that_fails_while_drawing_keeps_the_earlier_one_whole(lake, report, monkeypatch):
    """It removed its manifest before drawing: a figure that failed left a report folder no manifest vouched for."""
    import kdgat.stages.report as stage

    out = report.parent
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(con, figures):
        raise RuntimeError("a figure failed")

    monkeypatch.setattr(stage, "sections", broken)
    with pytest.raises(RuntimeError, match="a figure failed"):
        write_report(lake, out)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
