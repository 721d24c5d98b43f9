"""The provenance of a run that continues an earlier one.

`spzoo train --init-from FILE.keras` and `spzoo calibrate FILE.keras` start
from a model that an earlier `spzoo train` (or `spzoo calibrate`) wrote,
with its record `FILE.json` beside it. The new record keeps that history,
so a model that took several runs still says how to reproduce it:

- `recipe["command"]` chains the earlier command (with the folder it wrote
  to) and this run's: `EARLIER --output-dir FOLDER && THIS`;
- `recipe["stages"]` lists the earlier runs' recipes, first run first, each
  with its own `train_seconds` and `eval_accuracy`;
- `train_seconds_total` sums every stage.
"""

import shlex
from pathlib import Path

from spzoo.io import read_json


def earlier_record(model_path: str | Path) -> dict:
    """The record beside `model_path` (`<stem>.json`), or `{}` when there
    is none (a zoo name, or a file without its record)."""
    path = Path(model_path)
    if path.suffix != ".keras":
        return {}
    record_path = path.with_suffix(".json")
    if not record_path.is_file():
        return {}
    return read_json(record_path, "training record")


def chain_command(earlier: str, folder: str | Path, command: str) -> str:
    """`earlier`, writing to `folder`, then `command`."""
    return f"{earlier} --output-dir {shlex.quote(str(folder))} && {command}"


def _own_seconds(record: dict) -> float:
    """The training seconds of `record`'s last run alone: a resumed run's
    whole time (`train_seconds_total` without stages), else `train_seconds`."""
    if record["recipe"].get("stages"):
        return record["train_seconds"]
    return record.get("train_seconds_total", record["train_seconds"])


def continue_record(record: dict, earlier: dict, folder: str | Path) -> dict:
    """`record` (a `spzoo train` result) with the history of `earlier`, the
    record of the model it started from, written to `folder`.

    Returns:
        A new dict; `record` is not changed. `earlier` without a recipe
        command (not a `spzoo train` record) leaves `record` as it is.
    """
    previous = dict(earlier.get("recipe") or {})
    if not previous.get("command") or "train_seconds" not in earlier:
        return record
    stages = list(previous.pop("stages", []))
    stages.append(
        {
            **previous,
            "train_seconds": _own_seconds(earlier),
            "eval_accuracy": earlier.get("eval_accuracy"),
        }
    )
    recipe = dict(record["recipe"])
    recipe["command"] = chain_command(previous["command"], folder, recipe["command"])
    recipe["stages"] = stages
    total = earlier.get("train_seconds_total", earlier["train_seconds"])
    total = round(total + record["train_seconds"], 1)
    note = (
        f"{len(stages) + 1} stages; train_seconds_total = the sum of the stages' "
        "train_seconds and this run's."
    )
    if earlier.get("train_seconds_note"):
        note += f" Earlier: {earlier['train_seconds_note']}"
    return {
        **record,
        "recipe": recipe,
        "train_seconds_total": total,
        "train_seconds_note": note,
    }
