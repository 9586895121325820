"""`roadmap report`'s training-run sections: curves and accuracy per run, and compare results."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

from comparisons.report import plots
from comparisons.report.html import (
    Html,
    Num,
    Page,
    cell,
    chart_figure,
    esc,
    extras,
    fw_badge,
    generic,
    num,
    table,
)

TOOL_DIRS = ("compare", "bench", "ir")
RUN_FILES = ("summary.json", "metrics.jsonl", "config.json")
MAX_CURVES_PER_FRAMEWORK = 4
MAX_RECIPE_CHARTS = 4
# Config fields that do not change what a run learns: runs differing only in these share a
# recipe (and a chart). max_steps: a run stopped early and resumed is the same recipe.
NOT_RECIPE = {"__class__", "framework", "seed", "data_dir", "download", "max_steps", "log_every",
              "checkpoint_every", "eval_batch_size"}  # fmt: skip


def recipe_key(config: dict[str, Any]) -> str:
    """The recipe of a run: its config without the fields that do not change what it learns."""
    kept = {k: v for k, v in config.items() if k not in NOT_RECIPE}
    return json.dumps(kept, sort_keys=True, default=str)


def recipe_labels(keys: list[str]) -> dict[str, str]:
    """A short name per recipe: the fields in which the recipes differ (the model first)."""
    configs = {k: json.loads(k) for k in keys}
    fields = sorted({f for c in configs.values() for f in c})
    differ = [f for f in fields if len({json.dumps(c.get(f)) for c in configs.values()}) > 1]
    differ.sort(key=lambda f: (f != "model", f))
    labels = {}
    for key, config in configs.items():
        parts = [f"{f} {config.get(f)}" for f in differ[:5]]
        more = f" (+{len(differ) - 5} more fields)" if len(differ) > 5 else ""
        labels[key] = ", ".join(parts) + more if parts else "one recipe"
    return labels


def _read_metrics(page: Page, path: Path) -> tuple[list[dict[str, Any]], list[Html]]:
    """Rows of metrics.jsonl; unparsable lines (a torn last line) are skipped and counted."""
    if not path.is_file():
        return [], []
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    note = f"{page.show(path)}: skipped {bad} unparsable line(s)"
    return rows, [page.note(note, error=True)] if bad else []


def _discover_runs(page: Page, pdir: Path) -> list[dict[str, Any]]:
    """Every run folder runs/<project>/<framework>/<run-id>/ with what it holds."""
    runs = []
    fdirs = [d for d in pdir.iterdir() if d.is_dir() and d.name not in TOOL_DIRS]
    for fdir in sorted(d for d in fdirs if not d.name.startswith(".")):
        for rdir in sorted(d for d in fdir.iterdir() if d.is_dir()):
            present = [rdir / f for f in RUN_FILES if (rdir / f).is_file()]
            if not present:
                continue
            metrics, notes = _read_metrics(page, rdir / "metrics.jsonl")
            loaded = {}
            for name in ("summary", "config"):
                data, note = page.load_json(rdir / f"{name}.json", missing="")
                loaded[name] = data if isinstance(data, dict) else {}
                notes += [note] if data is None and (rdir / f"{name}.json").is_file() else []
            if not (rdir / "summary.json").is_file():
                notes.append(Html('<span class="muted wrap">running or stopped: no summary</span>'))
            summary, config = loaded["summary"], loaded["config"]
            framework = config.get("framework") or summary.get("framework") or fdir.name
            mtime = max(p.stat().st_mtime for p in present)
            runs.append(dict(framework=str(framework), run_id=rdir.name, path=rdir, **loaded))
            runs[-1].update(metrics=metrics, notes=notes, mtime=mtime)
    return runs


def _history(run: dict[str, Any]) -> list[dict[str, Any]]:
    history = run["summary"].get("history")
    if isinstance(history, list) and history:
        return [h for h in history if isinstance(h, dict)]
    # No summary yet: rebuild the per-epoch records from metrics.jsonl (test/loss -> test_loss).
    epochs: dict[Any, dict[str, Any]] = {}
    for r in (r for r in run["metrics"] if r.get("split") in ("val", "test")):
        values = {
            f"{r['split']}_{k}": v for k, v in r.items() if k not in ("split", "step", "epoch")
        }
        epochs.setdefault(r.get("epoch"), {"epoch": r.get("epoch")}).update(values)
    return list(epochs.values())


def _project_metric(name: str, runs: list[dict[str, Any]]) -> tuple[str, str]:
    """(history key, format) a project is judged by: its runs' Task, else the registry's."""
    for run in sorted(runs, key=lambda r: r["mtime"], reverse=True):
        headline = _run_headline(run, None)
        if headline is not None:
            return headline
    try:
        from comparisons.registry import get_project

        project = get_project(name)
        return project.metric, project.task().format_of(project.task().headline)
    except Exception:  # noqa: BLE001 - unknown folders are judged by accuracy
        return "test_accuracy", "pct"


def images_section(page: Page, runs: list[dict[str, Any]]) -> Html:
    """The pictures a project writes into its runs (`images/<name>_epoch<N>.png`).

    For the newest run of each framework, the last epoch's picture of every name, side by
    side, so the two frameworks' samples can be compared at a glance.
    """
    newest: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r["mtime"]):
        if (run["path"] / "images").is_dir():
            newest[run["framework"]] = run
    if not newest:
        return Html("")
    by_name: dict[str, dict[str, Path]] = {}
    for framework, run in sorted(newest.items()):
        for name, path in last_epoch_images(run["path"] / "images").items():
            by_name.setdefault(name, {})[framework] = path
    parts = []
    for name, paths in sorted(by_name.items()):
        figures = "".join(
            f"<figure>{image_tag(path, f'{fw} {name}')}"
            f"<figcaption>{fw_badge(fw)} {esc(name)}: {page.link(path, path.name)}"
            f"</figcaption></figure>"
            for fw, path in paths.items()
        )
        parts.append(f'<div class="images">{figures}</div>')
    heading = "<p><b>pictures</b> (the newest run of each framework, its last epoch)</p>"
    return Html(heading + "".join(parts))


_IMAGE_NAME = re.compile(r"^(?P<name>.+?)_epoch(?P<epoch>\d+)\.png$")


def last_epoch_images(folder: Path) -> dict[str, Path]:
    """{picture name: path of its highest epoch} in a run's images/ folder."""
    best: dict[str, tuple[int, Path]] = {}
    for path in folder.glob("*.png"):
        match = _IMAGE_NAME.match(path.name)
        name, epoch = (match["name"], int(match["epoch"])) if match else (path.stem, -1)
        if name not in best or epoch > best[name][0]:
            best[name] = (epoch, path)
    return {name: path for name, (_, path) in best.items()}


def image_tag(path: Path, alt: str) -> Html:
    """An <img> with the PNG embedded, so the page stays one self-contained file."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return Html(
        f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}" '
        'style="image-rendering: pixelated; max-width: 320px">'
    )


def _run_headline(run: dict[str, Any], fallback: Any) -> tuple[str, str] | Any:
    """(history key, format) of the metric this run's own Task judged it by."""
    task = run["summary"].get("task")
    if isinstance(task, dict) and isinstance(task.get("headline"), str):
        short = task["headline"].removeprefix("test_")
        return task["headline"], (task.get("formats") or {}).get(short, "f4")
    return fallback


def runs_section(page: Page, name: str, pdir: Path) -> Html:
    """HTML of one project's training runs: curves, pictures and the per-run table.

    A project's headline may depend on the config (regression: MSE for linear, accuracy for
    the classifiers), so each run is judged by its own Task; the curves show the runs that
    share the newest run's headline.
    """
    runs = _discover_runs(page, pdir)
    metric, kind = _project_metric(name, runs)
    headlines = {id(r): _run_headline(r, (metric, kind)) for r in runs}
    mixed = len({h for h, _ in headlines.values()}) > 1
    if not runs:
        return page.note(
            f"no training runs under {page.show(page.runs_dir / name)}: run "
            f"`roadmap run {name} --framework jax` (and torch), or `roadmap compare {name}`"
        )
    parts = [_curves(page, name, runs, metric, headlines)]
    rows = []
    # The test loss gets its own column unless it already is the headline (the VAE's).
    loss_column = metric != "test_loss"
    for run in sorted(runs, key=lambda r: (r["framework"], r["run_id"])):
        s, history = run["summary"], _history(run)
        last = history[-1] if history else {}
        planned = run["config"].get("epochs")
        epochs = f"{len(history)}" + (f"/{planned}" if planned and planned != len(history) else "")
        rows.append(
            [
                fw_badge(run["framework"]),
                page.link(run["path"], run["run_id"]),
                cell(run["config"].get("model")),
                Num(esc(epochs)),
                _headline_cell(last, *headlines[id(run)], mixed),
                *([num(last.get("test_loss"), "f4")] if loss_column else []),
                num(s.get("train_examples_per_s"), "rate"),
                num(s.get("first_step_s"), "f2"),
                num(s.get("wall_s"), "f1"),
                num(s.get("num_params"), "int"),
            ]
            + ([Html(" ".join(run["notes"]))] if any(r["notes"] for r in runs) else [])
        )
    final = "final test headline" if mixed else f"final {metric.replace('_', ' ')}"
    headers = ["framework", "run id", "model", "epochs", final]
    headers += ["test loss"] * loss_column
    headers += ["train examples/s", "first step (compile) s", "wall s", "params", "notes"]
    parts.append(table(headers[: len(rows[0])], rows))
    parts.append(evals_section(page, runs))
    parts.append(images_section(page, runs))
    return Html("".join(parts))


def evals_section(page: Page, runs: list[dict[str, Any]]) -> Html:
    """The runs' re-evaluations (`roadmap evaluate`: `<run>/evals/*.json`), one row each."""
    rows = []
    for run in sorted(runs, key=lambda r: (r["framework"], r["run_id"])):
        folder = run["path"] / "evals"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            data, note = page.load_dict(path, "")
            if data is None:
                rows.append([fw_badge(run["framework"]), run["run_id"], path.stem, "", note])
                continue
            test = data.get("test") if isinstance(data.get("test"), dict) else {}
            shown = ", ".join(f"{k} {v:.4g}" for k, v in test.items() if isinstance(v, int | float))
            rows.append(
                [
                    fw_badge(run["framework"]),
                    page.link(run["path"], run["run_id"]),
                    page.link(path, ", ".join(data.get("overrides") or []) or "as trained"),
                    cell(data.get("step")),
                    cell(shown),
                ]
            )
    if not rows:
        return Html("")
    heading = "<p><b>re-evaluations</b> (<code>roadmap evaluate</code>, newest checkpoint)</p>"
    return Html(heading + table(["framework", "run id", "settings", "step", "test"], rows))


def _curves(page: Page, name: str, runs: list[dict[str, Any]], metric: str, headlines) -> Html:
    """One chart per recipe (newest recipes first), both frameworks overlaid in each.

    Runs of different recipes (the fast and the short CIFAR-10 runs, ResNet-18) would make
    one chart unreadable; runs of one recipe in the two frameworks are the comparison.
    """
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: r["mtime"], reverse=True):
        if headlines[id(run)][0] == metric:  # another kind of number: its table row says which
            by_recipe.setdefault(recipe_key(run["config"]), []).append(run)
    labels = recipe_labels(list(by_recipe))
    parts, capped = [], False
    for key, recipe_runs in list(by_recipe.items())[:MAX_RECIPE_CHARTS]:
        curves, shown = [], {}
        for run in recipe_runs:
            shown[run["framework"]] = shown.get(run["framework"], 0) + 1
            if shown[run["framework"]] > MAX_CURVES_PER_FRAMEWORK:
                capped = True
                continue
            train = [
                (r.get("step"), r.get("loss")) for r in run["metrics"] if r.get("split") == "train"
            ]
            curves.append(
                {
                    "framework": run["framework"],
                    "label": f"{run['framework']} {run['run_id']}",
                    "train": train,
                    "test": [(h.get("epoch"), h.get(metric)) for h in _history(run)],
                }
            )
        curves.sort(key=lambda c: c["label"])
        if len(by_recipe) > 1:
            parts.append(f"<p><b>recipe</b>: {esc(labels[key])}</p>")
        draw = lambda c: plots.training_curves(c, metric)  # noqa: E731
        parts.append(chart_figure(page, f"the {name} curves ({labels[key]})", draw, curves))
    if capped or len(by_recipe) > MAX_RECIPE_CHARTS:
        parts.append(
            f'<p class="muted">charts show the {MAX_RECIPE_CHARTS} newest recipes and, in each, '
            f"the {MAX_CURVES_PER_FRAMEWORK} newest runs per framework; the table lists every "
            "run.</p>"
        )
    return Html("".join(parts))


def _headline_cell(last: dict[str, Any], metric: str, kind: str, named: bool) -> Html:
    """The run's final headline value, named when the table mixes kinds of headline."""
    value = num(last.get(metric), kind)
    return Num(f"{esc(metric.removeprefix('test_'))} {value}") if named else value


_COMPARE_KNOWN = {"project", "run_id", "config", "date", "versions", "frameworks", "runs", "rows"}
_COMPARE_KNOWN |= {"initial_outputs_max_abs_diff", "workdirs", "total_wall_s", "table", "out_dir"}


def compare_section(page: Page, name: str, cdir: Path) -> Html:
    """HTML of one project's compare results, newest first."""
    ids = sorted((d for d in cdir.iterdir() if d.is_dir()), reverse=True) if cdir.is_dir() else []
    if not ids:
        return page.note(f"no comparisons yet: run `roadmap compare {name}`")
    parts = []
    for d in ids:
        parts.append(f"<h4>{esc(d.name)}</h4>")
        missing = f"compare.json missing in {page.show(d)}: an interrupted compare?"
        data, note = page.load_dict(d / "compare.json", missing)
        parts.append(
            note if data is None else page.guard(f"compare {d.name}", _compare_one, d, data)
        )
    return Html("".join(parts))


def _compare_one(page: Page, cdir: Path, data: dict[str, Any]) -> Html:
    page.add_versions(f"compare {cdir.name}", data.get("versions"))
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    summaries = data.get("runs") if isinstance(data.get("runs"), dict) else {}
    frameworks = data.get("frameworks") or list(summaries)
    keys = ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "schedule", "seed")
    facts = [f"{k} {config[k]}" for k in keys if k in config]
    meta = [esc(data.get("date", "")), esc(", ".join(facts))]
    diff = data.get("initial_outputs_max_abs_diff")
    if isinstance(diff, int | float):
        meta.append(f"same initial weights: max |output diff| before training {diff:.2e}")
    links = [page.link(cdir / "compare.md")] if (cdir / "compare.md").is_file() else []
    workdirs = data.get("workdirs") if isinstance(data.get("workdirs"), dict) else {}
    for fw, path in workdirs.items():
        # Written relative to where compare ran; the runs folder's own layout is the fallback.
        tries = (Path(path), page.runs_dir.parent / path, cdir.parent.parent / fw / cdir.name)
        found = next((p for p in tries if p.is_dir()), None)
        links += [page.link(found, f"{fw} run")] if found else []
    parts = [f'<p class="meta">{" · ".join(m for m in meta if m)}</p>']
    if links:
        parts.append(f'<p class="meta">files: {" · ".join(links)}</p>')
    rows = data.get("rows")
    if not isinstance(rows, list):
        rows = _derive_rows(summaries)
        parts.append('<p class="muted">no "rows" in compare.json: derived from runs.</p>')
    frameworks = [str(f) for f in frameworks] or sorted(
        {k for r in rows for k in r if k not in ("metric", "kind")}
    )
    versus = set(frameworks) == {"jax", "torch"}
    headers = ["metric", *frameworks] + ["jax vs torch"] * versus
    body = []
    for row in (r for r in rows if isinstance(r, dict)):
        kind = row.get("kind", "auto")
        cells = [cell(row.get("metric")), *(num(row.get(fw), kind) for fw in frameworks)]
        if versus:
            cells.append(_versus(row.get("jax"), row.get("torch"), kind))
        body.append(cells)
    parts.append(table([fw_badge(h) if h in frameworks else h for h in headers], body))
    parts.append(extras(data, _COMPARE_KNOWN))
    if config:
        parts.append(f"<details><summary>config</summary>{generic(config)}</details>")
    return Html("".join(parts))


def _versus(jax_value: Any, torch_value: Any, kind: str) -> Num:
    """Accuracy and loss as a difference (jax - torch); speeds and times as a ratio."""
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (jax_value, torch_value)):
        return num(None)
    if kind in ("rate", "f2", "f1") and torch_value:
        return Num(f"{jax_value / torch_value:.2f}&times;")
    if kind == "pct":
        return Num(f"{100 * (jax_value - torch_value):+.2f} pp")
    if kind == "int":
        return Num("equal" if jax_value == torch_value else f"{jax_value - torch_value:+,}")
    return Num(f"{jax_value - torch_value:+.4f}")


def _derive_rows(summaries: dict[str, Any]) -> list[dict[str, Any]]:
    """compare.json without rows: per-epoch and whole-run rows from runs.*.history."""
    summaries = {fw: s for fw, s in summaries.items() if isinstance(s, dict)}
    histories = {fw: s.get("history") or [] for fw, s in summaries.items()}
    rows = []
    for e in range(max((len(h) for h in histories.values()), default=0)):
        metrics = (("test_accuracy", "pct"), ("test_loss", "f4"), ("train_loss", "f4"))
        task = next((s.get("task") for s in summaries.values() if s.get("task")), None)
        if isinstance(task, dict):  # the project's own metrics, as its runs declared them
            formats = task.get("formats") or {}
            metrics = tuple((f"test_{m}", formats.get(m, "f4")) for m in task["metrics"])
            metrics += (("train_loss", "f4"),)
        for key, kind in metrics:
            row = {"metric": f"epoch {e + 1} {key.replace('_', ' ')}", "kind": kind}
            for fw, h in histories.items():
                row[fw] = h[e].get(key) if e < len(h) and isinstance(h[e], dict) else None
            rows.append(row)
    run_keys = {"train_examples_per_s": "rate", "first_step_s": "f2", "num_params": "int"}
    for key, kind in (run_keys | {"wall_s": "f2"}).items():
        rows.append({"metric": key, "kind": kind} | {fw: s.get(key) for fw, s in summaries.items()})
    return rows
