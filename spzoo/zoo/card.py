"""Model cards of the zoo: a markdown card per model, built from its manifest entry.

```python
from spzoo.zoo import card

print(card.model_card("gated_cnn.fashion_mnist"))   # `spzoo zoo card NAME`
card.provenance()   # {"spzoo_version": "0.1.0", "git_commit": "...", ...}
```

A card says what the entry says, and "not recorded" where it does not:
intended use, limitations (the training budget, what the model was not
tested on), the papers to cite (their results quoted as theirs), accuracy
per shipped format, the threshold curve of gated models, and provenance
(command, seed, spzoo version, git commit, data hashes). The publisher
(`bench/zoo_publish.py`) calls `publish_card`, which records provenance in
the entry and writes `<name>.card.md` beside the model files.
"""

import dataclasses
import subprocess
from pathlib import Path

import spzoo
from spzoo.io import atomic_write_text
from spzoo.zoo.hub import info
from spzoo.zoo.manifest import REPOSITORY
from spzoo.zoo.text import percent, threshold_text

NOT_RECORDED = "not recorded"
SPECS = Path(__file__).resolve().parents[1] / "models" / "specs"  # named specs
CARD_SUFFIX = ".card.md"


@dataclasses.dataclass(frozen=True)
class Paper:
    """A paper of `../shared/papers/`, and its own headline result."""

    title: str | None
    authors: str | None
    file: str
    result: str

    def reference(self) -> str:
        """`Authors, *Title*`; for a text without them, what the paper is."""
        if self.title is None:
            return "The paper of the inhibition / excitation convolution cells"
        return f"{self.authors}, *{self.title}*"


PAPERS = {
    "lee_wang": Paper(
        title="Max and Coincidence Neurons in Neural Networks",
        authors="Albert Lee and Kang-L. Wang (University of California, Los Angeles)",
        file="max-coincidence-neurons-sp-resnet.txt",
        result="Their Table II reports, on CIFAR-10, 86.41% for SP-ResNet against "
        "86.28% for ResNet 3-48, with 1.64M against 2.12M parameters.",
    ),
    "nhn": Paper(
        title="Neuron Hierarchical Networks",
        authors="anonymous authors (paper under double-blind review)",
        file="neuron-hierarchical-networks.txt",
        result="Its Table 1 reports an NHN of 7.0M parameters with 3.72% test "
        "error on CIFAR-10 (3.48% with cutout), found in 46 GPU hours.",
    ),
    "inhibition": Paper(
        title=None,
        authors=None,
        file="inhibition-conv-cells.txt",
        result="Its text gives no title or authors. It reports, for its small "
        "CNN on CIFAR-10, a best accuracy of 73.13% at threshold -7 (about 4% "
        "higher than its reference model) with 67% of the reference MACs, and "
        "the reference accuracy at about 50% of the reference MACs.",
    ),
}
# The hard-concrete gates of the gated models come from this paper (not in
# ../shared/papers/).
L0_PAPER = (
    "Christos Louizos, Max Welling and Diederik P. Kingma, *Learning Sparse "
    "Neural Networks through L0 Regularization*, ICLR 2018 (the hard-concrete "
    "gates)."
)


def papers_of(entry: dict) -> list[Paper]:
    """The papers a model comes from: Lee & Wang for the ResNet family, the
    NHN paper for NHNs, the inhibition-cell paper for its CNNs and for any
    gated model."""
    keys = {"resnet": ["lee_wang"], "nhn": ["nhn"], "gated_cnn": ["inhibition"]}
    chosen = list(keys.get(entry["family"], []))
    if entry.get("threshold") and "inhibition" not in chosen:
        chosen.append("inhibition")
    return [PAPERS[key] for key in chosen]


def _git(*args: str, cwd: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


# The code a zoo file depends on; the publisher's own outputs (saved_models/,
# bench/results/) changing under it do not make the commit "dirty".
CODE_PATHS = ("spzoo", "export", "tuners", "bench/*.py", "pyproject.toml")


def provenance(repository: str | Path | None = None) -> dict:
    """What the publisher records of the code that made a zoo entry.

    Args:
        repository: The source checkout (default: the one holding spzoo).

    Returns:
        `{"spzoo_version", "git_commit", "git_dirty"}`; the git fields are
        None outside a git checkout. `git_dirty` says whether tracked code
        (`CODE_PATHS`) differs from the commit: models, manifests and
        results being written do not count.
    """
    folder = Path(repository or REPOSITORY)
    commit = _git("rev-parse", "HEAD", cwd=folder)
    status = _git(
        "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS, cwd=folder
    )
    return {
        "spzoo_version": spzoo.version(),
        "git_commit": commit or None,
        "git_dirty": None if commit is None or status is None else bool(status),
    }


def data_sha256(dataset: str) -> dict:
    """The sha256 of the training and evaluation splits of `dataset` as
    spzoo loads them (`spzoo.data.fingerprint`): `{"train": ..., "eval": ...}`.
    """
    from spzoo.data import fingerprint

    return {split: fingerprint(dataset, split) for split in ("train", "eval")}


def _percent(value) -> str:
    return percent(value, NOT_RECORDED)


def _intended_use(entry: dict) -> list[str]:
    shape = "x".join(map(str, entry["input"]["shape"]))
    arch = entry["arch"]
    if not (SPECS / f"{arch}.json").is_file():  # e.g. a searched NHN
        arch = "SPEC.json"
        arch_note = " (SPEC.json: the entry's `spec`, `spzoo zoo info NAME --json`)"
    else:
        arch_note = ""
    lines = [
        "## Intended use",
        "",
        f"- Classifying {entry['dataset']} inputs ({shape} "
        f"{entry['input']['dtype']}, {entry['input'].get('layout', 'NHWC')}) "
        f"into its {len(entry['classes'])} classes: "
        f"{', '.join(entry['classes'])}.",
        f"- Inputs preprocessed as in training: {entry['input']['preprocessing']}",
        "- A reference artifact for the architecture and its exports (Keras, "
        "ONNX Runtime, TensorFlow SavedModel, LiteRT), and a starting point "
        f"for fine-tuning (`spzoo.zoo.load({entry['name']!r}, num_classes=K)`, "
        f"`spzoo train {arch} --dataset D --init-from {entry['name']}`"
        f"{arch_note}).",
    ]
    if entry.get("threshold"):
        lines.append(
            "- Trading accuracy for computation at run time through the "
            "threshold on the gates' log-alpha (curve below)."
        )
    lines.append(
        "- Not for decisions about people, nor for use without measuring it "
        "on your own data first."
    )
    return lines


def _budget(recipe: dict) -> str:
    parts = [recipe.get("optimizer") or recipe.get("description")]
    if recipe.get("budget"):
        parts.append(f"budget {recipe['budget']}")
    if recipe.get("train_seconds") is not None:
        parts.append(f"{recipe['train_seconds'] / 60:.0f} min of training")
    if recipe.get("trained_on"):
        parts.append(f"trained on {recipe['trained_on']}")
    return "; ".join(p for p in parts if p) or NOT_RECORDED


def _limitations(entry: dict) -> list[str]:
    examples = entry.get("eval_examples")
    scored = f"{examples:,} examples of " if examples else ""
    lines = [
        "## Limitations",
        "",
        f"- Training budget: {_budget(entry['recipe'])}. A CPU budget, far "
        "below the papers' schedules.",
        f"- Evaluated on {scored}the {entry['eval_split']} split of "
        f"{entry['dataset']} only. Not tested on: other datasets (the papers' "
        "own, such as CIFAR-10, included), inputs outside this dataset's "
        "distribution (other sensors, resolutions, framing, real-world "
        "photographs or recordings), corrupted or adversarial inputs, "
        "calibration of its scores, or fairness across groups.",
        "- The accuracy below is this model's, not the papers': the papers' "
        "results (quoted under Citation) were measured on their datasets with "
        "their budgets.",
    ]
    if "synth" in entry["dataset"]:
        lines.append(
            "- Trained and evaluated on synthetic data only; accuracy on real "
            "recordings was not measured for this model."
        )
    if "effective_params" in entry:
        lines.append(
            f"- Stores {entry['params']:,} weights of which "
            f"{entry['effective_params']:,} are in kept kernels (the NHN paper's "
            "count); the pruned kernels are stored masked."
        )
    return lines


def _metrics(entry: dict) -> list[str]:
    examples = entry.get("eval_examples")
    lines = [
        "## Metrics",
        "",
        f"Top-1 accuracy on the {entry['eval_split']} split of {entry['dataset']}"
        + (f" ({examples:,} examples)" if examples else "")
        + ", measured from each shipped file; max |logit diff| against the "
        "Keras model on the export's parity examples. "
        f"Params {entry['params']:,}; MACs {entry['macs']:,} per example "
        "(every channel computed).",
        "",
        "| format | file | size | weights | accuracy | max abs logit diff |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for format, record in entry["files"].items():
        diff = record.get("max_abs_diff")
        weights = "int8" if "quantization" in record else record.get("weights")
        lines.append(
            f"| {format} | {record['file']} | {record['size'] / 1e6:.2f} MB | "
            f"{weights or 'float32'} | {_percent(record.get('accuracy'))}"
            f" | {'-' if diff is None else f'{diff:.1e}'} |"
        )
    quantized = [f for f, r in entry["files"].items() if "quantization" in r]
    if quantized:
        lines += [
            "",
            f"{', '.join(quantized)}: int8 weights and activations (float32 "
            "input and output), checked by top-1 agreement with Keras rather "
            "than logit parity; the max abs logit diff is int8 rounding.",
        ]
    for format in quantized:
        curve = entry["files"][format].get("curve")
        if curve:
            lines.append(
                f"{format} accuracy by threshold: "
                + ", ".join(
                    f"{threshold_text(row['threshold'])} {_percent(row['accuracy'])}"
                    for row in curve
                )
                + "."
            )
    return lines


def _curve(entry: dict) -> list[str]:
    threshold = entry.get("threshold")
    if not threshold:
        return []
    lo, hi = threshold["range"]
    lines = [
        "## Threshold curve",
        "",
        f"Default threshold {threshold_text(threshold['default'])}; trained "
        f"log-alpha range [{lo:g}, {hi:g}]. Expected MACs: what a runtime that "
        "skips closed channels computes.",
        "",
    ]
    calibration = (entry.get("recipe") or {}).get("batch_norm_calibration")
    if calibration:
        levels = ", ".join(f"{t:g}" for t in calibration["levels"])
        lines += [
            "Batch norm keeps one set of statistics per threshold level (no "
            f"threshold, then from {levels}), calibrated after training on "
            f"{calibration['examples']:,} training examples at each level's "
            "threshold (`spzoo calibrate`); no weight was trained for it.",
            "",
        ]
    curve = threshold.get("curve")
    if not curve:
        return lines + [f"Curve: {NOT_RECORDED}."]
    lines += [
        "| threshold | accuracy | expected MACs | % of MACs |",
        "| --- | --- | --- | --- |",
    ]
    for row in curve:
        lines.append(
            f"| {threshold_text(row['threshold'])} | {_percent(row['accuracy'])} | "
            f"{row['macs']:,.0f} | {100 * row['macs'] / entry['macs']:.1f} |"
        )
    return lines


def _citation(entry: dict) -> list[str]:
    lines = ["## Citation", ""]
    papers = papers_of(entry)
    if not papers:
        return lines + [f"Papers: {NOT_RECORDED} for family {entry['family']!r}."]
    for paper in papers:
        lines.append(
            f"- {paper.reference()} (text: `../shared/papers/{paper.file}`). "
            f"{paper.result}"
        )
    if entry.get("threshold"):
        lines.append(f"- {L0_PAPER}")
    return lines


def _provenance(entry: dict) -> list[str]:
    recipe = entry["recipe"]
    recorded = entry.get("provenance") or {}
    dirty = recorded.get("git_dirty")
    commit = recorded.get("git_commit") or NOT_RECORDED
    if recorded.get("git_commit") and dirty:
        commit += " (with uncommitted changes)"
    data = recorded.get("data_sha256") or {}
    rows = [
        ("command", f"`{recipe['command']}`"),
        ("seed", recipe.get("seed", NOT_RECORDED)),
        ("spzoo version", recorded.get("spzoo_version") or NOT_RECORDED),
        ("git commit", commit),
        ("training data sha256", data.get("train") or NOT_RECORDED),
        ("evaluation data sha256", data.get("eval") or NOT_RECORDED),
        ("measured on", entry.get("measured_on") or NOT_RECORDED),
        ("license", entry["license"]),
    ]
    return ["## Provenance", "", "| field | value |", "| --- | --- |"] + [
        f"| {key} | {value} |" for key, value in rows
    ]


def render(entry: dict) -> str:
    """The markdown card of a manifest entry."""
    description = entry["spec"].get("description")
    lines = [f"# Model card: {entry['name']}", ""]
    lines.append(
        f"Family {entry['family']}, architecture `{entry['arch']}`, trained on "
        f"{entry['dataset']}; top-1 accuracy {_percent(entry['accuracy'])}."
        + (f" {description}" if description else "")
    )
    for section in (
        _intended_use,
        _limitations,
        _metrics,
        _curve,
        _citation,
        _provenance,
    ):
        part = section(entry)
        if part:
            lines += [""] + part
    return "\n".join(lines) + "\n"


def model_card(name: str, manifest=None) -> str:
    """The markdown card of zoo model `name` (see `spzoo.zoo.list_models`)."""
    return render(info(name, manifest=manifest))


def card_path(folder: str | Path, name: str) -> Path:
    """Where the card of model `name` goes in a zoo folder."""
    return Path(folder) / f"{name}{CARD_SUFFIX}"


def publish_card(entry: dict, folder: str | Path, repository=None) -> dict:
    """Records `provenance()` in `entry` (keeping any field already there;
    the data hashes of `data_sha256` when none are recorded) and writes its
    card beside the model files in `folder`, atomically.

    Returns:
        The entry, updated in place.
    """
    recorded = provenance(repository)
    recorded.update(entry.get("provenance") or {})
    if not recorded.get("data_sha256"):
        recorded["data_sha256"] = data_sha256(entry["dataset"])
    entry["provenance"] = recorded
    atomic_write_text(card_path(folder, entry["name"]), render(entry))
    return entry
