"""bench/zoo_report.py: the Table II grid beside the paper's rows."""

import json


def test_zoo_report_quotes_the_grid_once_it_is_paired(bench_script, tmp_path):
    report = bench_script("zoo_report")
    path = tmp_path / "table2_fashion_mnist.json"
    assert report.table2_grid(path) is None  # no grid yet

    def row(design, label, mean, sd, params):
        return {
            "design": design,
            "label": label,
            "accuracy_mean": mean,
            "accuracy_sd": sd,
            "params": params,
            "recipes": ["fast"],
            "epochs": [5],
        }

    rows = [
        row("resnet_3_48", "ResNet 3-16", 92.6, 0.06, 300),
        row("sp_resnet", "SP-ResNet", 92.4, 0.17, 210),
    ]
    path.write_text(json.dumps({"rows": rows, "paired": None}))
    assert report.table2_grid(path) is None  # not paired over seeds yet

    paired = {
        "seeds": [0, 1, 2],
        "mean": -0.2,
        "sd": 0.15,
        "ci95": [-0.57, 0.2],
        "ci_excludes_zero": False,
    }
    path.write_text(json.dumps({"rows": rows, "paired": paired}))
    grid = report.table2_grid(path)
    assert grid["row"] == (
        "| fashion_mnist, 1/3 width: ResNet 3-16 as 3-48 (ours, `bench/table2.py`)"
        " | fast, 5 epochs (CPU), mean of 3 seeds | 92.60 ± 0.06 | 92.40 ± 0.17 |"
        " -0.20 (95% CI -0.57 to +0.20) | 300 | 210 | 0.700 |"
    )
    assert grid["sentence"].endswith(
        "it is -0.20 ± 0.15 points, paired by seed; the 95% interval includes zero."
    )
