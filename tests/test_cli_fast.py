"""The command line without TensorFlow: `--help`, `--version`, `--json` lists.

Each check runs `spzoo.cli.main` in a fresh interpreter, so that a module
imported by the test session does not hide an import by the command.
"""

import json
import os
import subprocess
import sys

import pytest

import spzoo
from spzoo import cli

RUN = """
import json, sys
from spzoo.cli import main
argvs = json.loads(sys.argv[1])
for argv in argvs:
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code in (0, None), (argv, code)
heavy = [m for m in ("tensorflow", "keras", "onnxruntime") if m in sys.modules]
print("IMPORTED", json.dumps(heavy))
"""


def run_commands(*argvs) -> tuple[str, str, list]:
    """Runs each argv through `main` in one fresh interpreter; returns stdout
    (without the last line), stderr and the heavy modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(argvs)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SPZOO_DEBUG": "1"},
    )
    out, _, last = result.stdout.rstrip("\n").rpartition("\n")
    assert last.startswith("IMPORTED "), result.stdout[-500:]
    return out, result.stderr, json.loads(last.removeprefix("IMPORTED "))


def subcommands() -> list[list[str]]:
    """Every command path of the parser: ["zoo", "list"], ["train"], ..."""
    import argparse

    def walk(parser, prefix):
        paths = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths += walk(sub, [*prefix, name]) or [[*prefix, name]]
        return paths

    return walk(cli.build_parser(), [])


def test_every_help_and_version_run_without_tensorflow():
    paths = subcommands()
    assert ["zoo", "card"] in paths and ["infer"] in paths and ["train"] in paths
    argvs = [["--help"], ["--version"]] + [[*path, "--help"] for path in paths]
    out, err, heavy = run_commands(*argvs)
    assert heavy == [] and err == ""
    assert "usage: spzoo" in out
    assert f"spzoo {spzoo.version()}" in out.splitlines()


def test_list_commands_print_json_without_tensorflow():
    out, err, heavy = run_commands(["zoo", "list", "--json"])
    from spzoo import zoo

    models = json.loads(out)
    assert [m["name"] for m in models] == zoo.list_models()
    gated = {m["name"]: m["gated"] for m in models}
    assert gated["gated_cnn.fashion_mnist"] and not gated["nhn.fashion_mnist"]
    assert {"accuracy", "params", "macs", "formats"} <= set(models[0])
    out, err, heavy2 = run_commands(["data", "list", "--json"])
    datasets = {d["name"]: d for d in json.loads(out)}
    assert datasets["fashion_mnist"]["input_shape"] == [28, 28, 1]
    assert datasets["fashion_mnist"]["ready"] is True
    assert datasets["fashion_mnist"]["sizes"] == {"train": 60000, "eval": 10000}
    assert heavy == heavy2 == [] and err == ""


def test_models_json(monkeypatch, capsys):
    import spzoo.models

    monkeypatch.setattr(spzoo.models, "list_architectures", lambda: ["gated_cnn"])
    argv = ["models", "--input-shape", "8,8,1", "--num-classes", "3", "--json"]
    assert cli.main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["input_shape"] == [8, 8, 1] and document["num_classes"] == 3
    (row,) = document["architectures"]
    assert row["name"] == "gated_cnn" and row["params"] > 0 and row["macs"] > 0


@pytest.mark.slow
def test_tensorflow_imports_without_start_up_lines():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.pop("SPZOO_DEBUG", None)
    code = (
        "from spzoo.quiet import import_tensorflow; tf = import_tensorflow(); "
        "print(float(tf.constant(2.0) + 1))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0 and result.stdout.strip() == "3.0"
    assert result.stderr == ""


@pytest.mark.parametrize("argv", [["zoo", "list", "--bogus"], ["nope"]])
def test_usage_errors_still_exit_2(argv):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2


def test_a_closed_pipe_is_not_an_error():
    """`spzoo zoo list --json | head`: a reader gone before the output ends
    gives no error line and exit 141."""
    code = "import sys; from spzoo.cli import main; sys.exit(main(sys.argv[1:]))"
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", code, "zoo", "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # before the child writes: its first write fails
    _, err = child.communicate()
    assert child.returncode == 141 and err == b""
