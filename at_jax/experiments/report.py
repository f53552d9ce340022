"""An experiment's results: test error per method over seeds, as the paper's Table 1 (results.json / .md).

Error is ``100 * (1 - accuracy)`` on the test set. Each method's cell is the median over its finished
seeds with the min–max range, as the paper reports "median of 5 runs"; the teacher is one run. The paper's
numbers are shown beside ours only when the experiment's base config matches the setting they were
measured in (``paper_reference.setting``).
"""
from __future__ import annotations

import json

from typing import Any, Mapping, Sequence

import numpy as np

from at_jax.losses import method_label
from at_jax.run_files import as_path, write_text

DASH = "–"


def error_percent(accuracy: float) -> float:
    """Test error in percent: ``100 * (1 - accuracy)``."""
    return 100.0 * (1.0 - float(accuracy))


def error_statistics(errors: Sequence[float]) -> dict:
    """``median`` (numpy's: the mean of the two middle values for an even count), ``min``, ``max``."""
    if not errors:
        return {"median": None, "min": None, "max": None}
    values = np.asarray(errors, np.float64)
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max())}


def _lookup(tree: Mapping, dotted: str) -> Any:
    value: Any = tree
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return "<unset>"
        value = value[part]
    return value


def _leaves(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def setting_differences(base: Mapping, setting: Mapping) -> list[str]:
    """``key: ours vs paper`` for each value of ``setting`` (nested) that ``base`` does not share."""
    differences = []
    for key, paper_value in _leaves(setting).items():
        ours = _lookup(base, key)
        same = ours == paper_value or (isinstance(ours, (list, tuple)) and isinstance(paper_value, (list, tuple))
                                       and list(ours) == list(paper_value))
        if not same:
            differences.append(f"{key} {ours!r} here, {paper_value!r} in the paper")
    return differences


def build_results(*, name: str, description: str, base: Mapping, teacher_model: str, teacher_workdir: str,
                  teacher_summary: Mapping | None, methods: Sequence[str], seeds: Sequence[int],
                  student_summaries: Mapping[str, Mapping[int, Mapping]], parameter_counts: Mapping[str, Any],
                  labels: Mapping[str, str], paper_errors: Mapping[str, float],
                  paper_setting: Mapping) -> dict:
    """The results dict written to ``results.json`` (plain JSON types only)."""
    differences = setting_differences(base, paper_setting) if paper_errors else []
    paper_applies = bool(paper_errors) and not differences
    method_results = {}
    for method in methods:
        per_seed = {seed: error_percent(summary["accuracy"])
                    for seed, summary in sorted(student_summaries.get(method, {}).items())
                    if summary.get("accuracy") is not None}
        method_results[method] = {
            "label": labels.get(method, method_label(method)),
            "errors": {str(seed): error for seed, error in per_seed.items()},
            **error_statistics(list(per_seed.values())),
            "finished_seeds": len(per_seed), "planned_seeds": len(seeds),
            "paper": paper_errors.get(method),
        }
    teacher_accuracy = (teacher_summary or {}).get("accuracy")
    return {
        "name": name, "description": description, "dataset": _lookup(base, "dataset.name"),
        "eval_split": _lookup(base, "dataset.eval_split"),
        "student_model": base.get("model"), "teacher_model": teacher_model,
        "parameters": {model: count for model, count in parameter_counts.items() if count is not None},
        "seeds": list(seeds),
        "teacher": {"workdir": teacher_workdir, "accuracy": teacher_accuracy,
                    "error": None if teacher_accuracy is None else error_percent(teacher_accuracy),
                    "paper": paper_errors.get("teacher")},
        "methods": method_results,
        "paper": {"applies": paper_applies, "differences": differences, "errors": dict(paper_errors)},
    }


def _number(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def format_count(count: int) -> str:
    """A parameter count as the paper prints it: 0.69M; small ones as 7.8k or 514."""
    if count >= 10_000:
        return f"{count / 1e6:.2f}M"
    return f"{count / 1e3:.1f}k" if count >= 1000 else str(count)


def _model_cell(model: str | None, parameters: Mapping[str, int]) -> str:
    count = parameters.get(model or "")
    return f"{model} ({format_count(count)})" if count else str(model)


def format_cell(result: Mapping) -> str:
    """``median (min–max)``, with ``[k/n seeds]`` while seeds are missing."""
    if result["median"] is None:
        return DASH
    cell = _number(result["median"])
    if result["finished_seeds"] > 1:
        cell += f" ({_number(result['min'])}{DASH}{_number(result['max'])})"
    if result["finished_seeds"] < result["planned_seeds"]:
        cell += f" [{result['finished_seeds']}/{result['planned_seeds']} seeds]"
    return cell


def format_markdown(results: Mapping) -> str:
    """results.md: the Table 1 row (ours, and the paper's where the setting matches) and the per-seed errors."""
    methods = results["methods"]
    parameters = results["parameters"]
    lines = [f"# {results['name']}", ""]
    if results["description"]:
        lines += [results["description"], ""]
    num_seeds = len(results["seeds"])
    measured = "Validation error" if results.get("eval_split") == "val" else "Test error"
    lines += [f"{measured} (%) on {results['dataset']}: median over {num_seeds} seed{'s' * (num_seeds != 1)} "
              f"(min{DASH}max); the teacher is one run.", ""]
    header = ["", "student net", "teacher net"] + [m["label"] for m in methods.values()] + ["teacher"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    ours = ["at_jax", _model_cell(results["student_model"], parameters),
            _model_cell(results["teacher_model"], parameters)]
    ours += [format_cell(m) for m in methods.values()] + [_number(results["teacher"]["error"])]
    lines.append("| " + " | ".join(ours) + " |")
    paper = results["paper"]
    if paper["applies"]:
        row = ["paper", "", ""] + [_number(m["paper"]) for m in methods.values()]
        row.append(_number(results["teacher"]["paper"]))
        lines.append("| " + " | ".join(row) + " |")
    elif paper["errors"]:
        lines += ["", "The paper's numbers are not shown: this setting differs from theirs ("
                  + "; ".join(paper["differences"]) + ")."]
    lines += ["", "## Per seed", "", "| method | " + " | ".join(f"seed {s}" for s in results["seeds"]) + " |",
              "|---|" + "---|" * len(results["seeds"])]
    for method, result in methods.items():
        cells = [_number(result["errors"].get(str(seed))) for seed in results["seeds"]]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines + paired_lines(results)) + "\n"


def paired_differences(results: Mapping) -> dict[str, dict[str, float]]:
    """method -> {seed: error of the method - error of the first method with that seed} (percentage points),
    for every method after the first and every seed both finished: the seeds are paired (the same seed is the
    same initialisation and batch order for every method)."""
    methods = list(results["methods"].items())
    if len(methods) < 2:
        return {}
    reference = methods[0][1]["errors"]
    return {method: {seed: result["errors"][seed] - reference[seed]
                     for seed in map(str, results["seeds"]) if seed in result["errors"] and seed in reference}
            for method, result in methods[1:]}


def paired_lines(results: Mapping) -> list[str]:
    """The "Paired differences" section of results.md (empty with fewer than two methods)."""
    differences = paired_differences(results)
    if not differences:
        return []
    first = next(iter(results["methods"]))
    lines = ["", f"## Paired differences from {first}", "",
             f"Error of the method minus the error of {first} with the same seed (percentage points; negative: "
             "the method is better).", "",
             "| method | " + " | ".join(f"seed {s}" for s in results["seeds"]) + " | median | better in |",
             "|---|" + "---|" * (len(results["seeds"]) + 2)]
    for method, by_seed in differences.items():
        cells = [_signed(by_seed.get(str(seed))) for seed in results["seeds"]]
        values = list(by_seed.values())
        median = _signed(float(np.median(values))) if values else "–"
        better = f"{sum(value < 0 for value in values)}/{len(values)}"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {median} | {better} |")
    return lines


def _signed(value: float | None) -> str:
    return DASH if value is None else f"{value:+.2f}"


def write_results(workdir: str, results: Mapping) -> None:
    """Writes ``results.json`` and ``results.md`` into ``workdir`` (atomically)."""
    for filename, text in (("results.json", json.dumps(results, indent=2) + "\n"),
                           ("results.md", format_markdown(results))):
        write_text(as_path(workdir) / filename, text)
