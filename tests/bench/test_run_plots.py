"""`icf-bench plot REPORT` on a stream run's own report.json (+ the metrics.jsonl the run wrote): a real
pipeline run, then the plot. It used to exit 0 having written nothing."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main
from bench.run_plots import read_metrics, run_panels


def test_plot_a_pipeline_runs_report(tmp_path, capsys):
    from stream import PipelineConfig, run_pipeline
    from stream.graph.report import save_report

    cfg = PipelineConfig(source={"kind": "synthetic", "seconds": 1.0, "width": 160, "height": 120, "fps": 30, "pace": "fast"},
                         backend={"kind": "null", "image_size": [64, 64]}, transport="inproc", metrics=str(tmp_path / "metrics.jsonl"))
    report = run_pipeline(cfg)
    assert report["ok"], report["errors"]
    save_report(report, tmp_path / "report.json")
    assert main(["plot", str(tmp_path / "report.json")]) == 0
    png = tmp_path / "report_run.png"
    assert capsys.readouterr().out.strip() == str(png) and png.stat().st_size > 10_000
    panels = run_panels(json.loads((tmp_path / "report.json").read_text()), read_metrics(tmp_path / "metrics.jsonl"))
    assert len(panels["latency"]) == report["frames"]["processed"] > 0  # one latency per delivered frame
    assert {"inference", "to_sink"} <= {s[0] for s in panels["stages"]}
    assert panels["frames"]["processed"] == report["frames"]["processed"]


def test_plot_refuses_a_json_it_cannot_draw(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    assert main(["plot", str(tmp_path / "x.json")]) == 2
    assert "nothing to plot" in capsys.readouterr().err


@pytest.mark.parametrize("torn", ['{"seq": 3, "capture_to_mask_ms": 5.0, "pts_ms": 100.0}\n{"seq": 4, "capt'])
def test_metrics_reader_skips_a_torn_line(tmp_path, torn):
    (tmp_path / "m.jsonl").write_text(torn)
    assert [r["seq"] for r in read_metrics(tmp_path / "m.jsonl")] == [3]
