"""Framework-free text and graph tools of `roadmap ir`: normalise IR text, read HLO, draw graphs.

Nothing here imports jax or torch: the functions take IR text (StableHLO, HLO, jaxpr, FX code,
TorchScript, Inductor output code) or plain node/edge lists, so the same code serves both sides.
The pictures are drawn by comparisons/ir/pictures.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from comparisons.ir.pictures import draw_graph


def failure(err: BaseException) -> str:
    """`Type: message` of an exception in one line (two for wrapped errors), for named failures."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()][:2]
    return f"{type(err).__name__}: {' '.join(lines)[:400]}"


class Section:
    """Files, results and named failures of one (framework, what) part of a dump."""

    def __init__(self, root: Path, framework: str, what: str, render: bool = True):
        self.root, self.framework, self.what = Path(root), framework, what
        self.render = render  # False: graphs get their .dot source only, no SVG
        self.data: dict[str, Any] = {"files": [], "errors": {}, "timings_s": {}, "notes": []}

    def write(self, name: str, text: str, normalize=None) -> Path:
        """Write `framework/name` (and its `.norm.txt` through `normalize`); record the files."""
        path = self.root / self.framework / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.data["files"].append(f"{self.framework}/{name}")
        if normalize is not None:
            stem = name.rsplit(".", 1)[0]
            norm = path.with_name(f"{stem}.norm.txt")
            norm.write_text(normalize(text), encoding="utf-8")
            self.data["files"].append(f"{self.framework}/{norm.name}")
        return path

    def draw(self, stem: str, nodes, edges, title: str) -> None:
        """Draw a graph to `framework/stem`.svg (and .dot); notes go in the section."""
        stem_path = self.root / self.framework / stem
        drawn = draw_graph(nodes, edges, stem_path, title, render=self.render)
        self.data["files"] += [f"{self.framework}/{f}" for f in drawn["files"]]
        if drawn["renderer"]:
            self.data["picture_renderer"] = drawn["renderer"]
        for text in (drawn["note"], drawn["error"]):
            if text:
                self.data["notes"].append(f"{stem}: {text}")

    def draw_step(self, stem: str, step, title: str) -> None:
        """Draw a whole-step StepGraph (comparisons/ir/step.py) to `framework/stem`.svg."""
        from comparisons.ir.step import draw_step

        drawn = draw_step(step, self.root / self.framework / stem, title, render=self.render)
        self.data["files"] += [f"{self.framework}/{f}" for f in drawn["files"]]
        for text in (drawn["note"], drawn["error"]):
            if text:
                self.data["notes"].append(f"{stem}: {text}")


# ---------------------------------------------------------------- normalised, diff-friendly text


def _strip_balanced(text: str, opener: str, open_ch: str, close_ch: str) -> str:
    """Remove every `opener ... close_ch` span whose brackets balance (e.g. ` loc(...)`)."""
    out, i = [], 0
    while True:
        j = text.find(opener, i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        depth, k = 0, j + len(opener) - 1
        while k < len(text):
            if text[k] == open_ch:
                depth += 1
            elif text[k] == close_ch:
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1


def _rename(text: str, token: str, names: list[str], prefix: str) -> str:
    """Replace each name of `names` (in first-seen order) by `prefix0`, `prefix1`, ..."""
    mapping: dict[str, str] = {}
    for name in names:
        mapping.setdefault(name, f"{prefix}{len(mapping)}")
    return re.sub(token, lambda m: m.group(1) + mapping.get(m.group(2), m.group(2)), text)


def normalize_mlir(text: str) -> str:
    """StableHLO/MLIR: drop loc(...) and #loc lines, rename %values in order, elide big dense<>."""
    text = "\n".join(line for line in text.splitlines() if not line.startswith("#loc"))
    text = _strip_balanced(text, " loc(", "(", ")")
    text = re.sub(r"dense<(\"0x[0-9A-Fa-f]+\"|\[[^>]{24,}\])>", "dense<...>", text)
    names = re.findall(r"%([A-Za-z_0-9][\w$.]*)", text)
    return _tidy(_rename(text, r"(%)([A-Za-z_0-9][\w$.]*)", names, "v"))


_HLO_SECTIONS = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")
_HLO_DEF = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s")
_HLO_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*(?:\(|\{)")
_HLO_TOKEN = r"(?<![\w.\-%])(%?)([A-Za-z_][\w.\-]*)(?![\w.\-(])"


def normalize_hlo(text: str) -> str:
    """HLO: drop metadata, backend_config, stack-frame tables; rename instructions, computations."""
    lines, skipping = [], False
    for line in text.splitlines():
        if line.strip() in _HLO_SECTIONS:
            skipping = True
        if skipping:
            skipping = bool(line.strip())
            continue
        lines.append(line)
    text = "\n".join(lines)
    for attr in ("metadata={", "backend_config={", "frontend_attributes={", "origin={"):
        text = _strip_balanced(text, ", " + attr, "{", "}")
    text = re.sub(r", backend_config=\"[^\"]*\"", "", text)
    text = re.sub(r"/\*index=\d+\*/", "", text)
    text = re.sub(r"constant\(\{[^()]*\}\)", "constant({...})", text)
    comps, insts = [], []
    for line in text.splitlines():
        if (m := _HLO_DEF.match(line)) is not None:
            insts.append(m.group(1))
        elif not line.startswith((" ", "HloModule")) and (m := _HLO_COMP.match(line)):
            comps.append(m.group(1))
    text = _rename(text, _HLO_TOKEN, comps, "comp")
    return _tidy(_rename(text, _HLO_TOKEN, insts, "v"))


def normalize_jaxpr(text: str) -> str:
    """jaxpr: names are already sequential (a, b, ..., ba, ...); elide printed arrays, tidy."""
    return _tidy(re.sub(r"\[\[[^\]]{40,}\]+", "[...]", text))


def normalize_fx(code: str) -> str:
    """FX code (`gm.code` or print_readable): drop frees, comments, `torch.ops.`; rename values."""
    lines = []
    for line in code.splitlines():
        line = re.sub(r";\s+[\w\s=]+= None\s*$", "", line)
        if line.strip().startswith("#"):
            continue
        if line.strip():
            lines.append(line.replace("torch.ops.", ""))
    text = "\n".join(lines)
    names = []
    for m in re.finditer(r"def forward\(self,?\s*(.*?)\):", text):
        params = re.sub(r':\s*"[^"]*"', "", m.group(1))
        names += [a.strip() for a in params.split(",") if a.strip()]
    names += re.findall(r'^\s+(\w+)\s*(?::\s*"[^"]*")?\s*=\s', text, flags=re.M)
    return _tidy(_rename(text, r"(?<![\w.])()([A-Za-z_]\w*)(?![\w(])", names, "v"))


def normalize_torchscript(text: str) -> str:
    """TorchScript graph: drop `scope:` and `# file:line` comments, rename %values in order."""
    lines = [re.sub(r", scope: .*?(?=\s+#\s|$)", "", line) for line in text.splitlines()]
    lines = [re.sub(r"\s+#\s.*$", "", line) for line in lines]
    text = re.sub(r"___torch_mangle_\d+\.", "", "\n".join(lines))  # per-process class ids
    names = re.findall(r"%([\w.]+)", text)
    return _tidy(_rename(text, r"(%)([\w.]+)", names, "v"))


def _tidy(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


# ------------------------------------------------------------------------------- HLO reading

_HLO_INST = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*"
    r"(?P<shape>\([^=]*?\)|\w+\[[\d,]*\](?:\{[^}]*\})?)\s+"
    r"(?P<op>[\w\-]+)\((?P<args>[^)]*)\)(?P<rest>.*)$"
)
_SHAPE = re.compile(r"^(\w+)\[([\d,]*)\]")


def _dims(shape: str) -> list[int] | None:
    m = _SHAPE.match(shape)
    return [int(d) for d in m.group(2).split(",") if d] if m else None


def hlo_instructions(text: str) -> list[dict[str, Any]]:
    """Every instruction of an HLO module: computation, name, op, shape dims, operands, attrs."""
    out, comp = [], ""
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            comp = (_HLO_COMP.match(line) or re.match(r"(.*)", line)).group(1)
            continue
        m = _HLO_INST.match(line)
        if m is None:
            continue
        operands = re.findall(r"%?([A-Za-z_][\w.\-]*)(?=\s*(?:,|$))", m.group("args").strip())
        out.append(
            {
                "computation": comp,
                "name": m.group("name"),
                "op": m.group("op"),
                "shape": m.group("shape"),
                "dims": _dims(m.group("shape")),
                "operands": operands,
                "rest": m.group("rest"),
            }
        )
    return out


_CALLEES = re.compile(
    r"\b(body|condition|calls|to_apply|branch_computations)=(\{[^}]*\}|%?[\w.\-]+)"
)
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"')


def computation_runs(text: str) -> dict[str, int]:
    """How many times each computation of an HLO module runs in one call of the module.

    A while loop's body runs its known trip count times per run of the loop's computation;
    fused, called and applied computations (and loop conditions, counted once) run as often
    as their caller. The computations nothing calls (ENTRY) run once. Lines are read raw: a
    loop's tuple shape (with its /*index=5*/ comments) is beyond `hlo_instructions`.
    """
    calls: dict[str, list[tuple[str, int]]] = {}
    comp = ""
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            comp = (_HLO_COMP.match(line) or re.match(r"(.*)", line)).group(1)
            calls.setdefault(comp, [])
            continue
        trips = _TRIP_COUNT.search(line)
        for key, names in _CALLEES.findall(line):
            factor = int(trips.group(1)) if key == "body" and trips else 1
            for name in re.findall(r"%?([\w.\-]+)", names):
                calls[comp].append((name, factor))
    called = {name for callees in calls.values() for name, _ in callees}
    runs: dict[str, int] = {}

    def visit(comp: str, n: int, depth: int = 0) -> None:
        runs[comp] = runs.get(comp, 0) + n  # each call site runs it
        if depth < 64:  # HLO call graphs are acyclic and shallow
            for callee, factor in calls.get(comp, ()):
                visit(callee, n * factor, depth + 1)

    for comp in set(calls) - called:
        visit(comp, 1)
    return runs


def _spatial(labels: str, dims: list[int]) -> int:
    """Product of the spatial dims (labelled by digits in XLA's dim_labels)."""
    return math.prod(n for lab, n in zip(labels, dims, strict=True) if lab.isdigit())


def conv_taps(out_spatial: int, in_spatial: int, window: list[int], lhs_dilation=None) -> int:
    """Spatial products of a convolution as FlopCounterMode charges its forward conv.

    min(output, input) positions times the window; when the output is the smaller (a weight
    gradient: the window is an activation), a window over an input dilated by `lhs_dilation`
    (the weight gradient of a transposed conv) meets a real element only every d-th tap.
    """
    taps = math.prod(window)
    if lhs_dilation and out_spatial < in_spatial:
        taps = math.prod(-(-w // d) for w, d in zip(window, lhs_dilation, strict=True))
    return min(out_spatial, in_spatial) * taps


def hlo_matmul_conv_flops(text: str) -> dict[str, Any]:
    """FLOPs of every dot and convolution of an HLO module, counted as FlopCounterMode does.

    dot: 2*M*N*K from the result shape and the lhs contracting dims.  convolution: 2 * output
    elements * window size * input features per group ("dense", which includes products with
    the zero padding), and "flops" which takes min(output, input) spatial positions instead of
    the output's: XLA writes an input gradient as a convolution over the zero-padded output
    gradient (26x26 outputs from 24x24 inputs for a 3x3 kernel), while FlopCounterMode charges
    every gradient convolution what its forward convolution costs; taking the smaller extent
    reproduces that for forward, input-gradient, weight-gradient, strided and transposed convs
    (a transposed conv's weight gradient: `conv_taps` skips the holes of its dilated input).

    An instruction inside a while loop's body runs once per trip: each op's "runs" is the
    product of the trip counts XLA knows for the loops around it (`known_trip_count` of the
    optimized HLO; 1 where none is known, as before optimization), and the totals count
    flops x runs (a scanned GRU's decoder is 32 runs of its step, not one).
    """
    insts = hlo_instructions(text)
    runs = computation_runs(text)
    shapes = {(i["computation"], i["name"]): i["dims"] for i in insts}
    ops, totals, dense_total = [], {"dot": 0, "convolution": 0}, 0
    for inst in insts:
        if inst["op"] not in totals or inst["dims"] is None:
            continue
        operand_dims = [shapes.get((inst["computation"], n)) for n in inst["operands"][:2]]
        if len(operand_dims) < 2 or None in operand_dims:
            continue
        lhs, rhs = operand_dims
        out = inst["dims"]
        if inst["op"] == "dot":
            m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", inst["rest"])
            contracted = [int(d) for d in m.group(1).split(",") if d] if m else []
            flops = dense = 2 * math.prod(out) * math.prod(lhs[d] for d in contracted)
        else:
            m = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", inst["rest"])
            if m is None or [len(g) for g in m.groups()] != [len(lhs), len(rhs), len(out)]:
                continue
            lhs_labels, rhs_labels, out_labels = m.groups()
            window = _spatial(rhs_labels, rhs)
            features = rhs[rhs_labels.index("i")]
            out_spatial, in_spatial = _spatial(out_labels, out), _spatial(lhs_labels, lhs)
            others = math.prod(out) // out_spatial
            dense = 2 * math.prod(out) * window * features
            spatial = sorted(lab for lab in rhs_labels if lab.isdigit())
            dilate = re.search(r"lhs_dilate=([\dx]+)", inst["rest"])
            taps = conv_taps(
                out_spatial,
                in_spatial,
                [rhs[rhs_labels.index(lab)] for lab in spatial],
                [int(d) for d in dilate.group(1).split("x")] if dilate else None,
            )
            flops = 2 * others * taps * features
        n = runs.get(inst["computation"], 1)
        totals[inst["op"]] += flops * n
        dense_total += dense * n
        ops.append(
            {
                "op": inst["op"],
                "name": inst["name"],
                "shape": inst["shape"],
                "flops": flops,  # one execution
                "dense_flops": dense,
                "runs": n,
            }
        )
    return {"total": sum(totals.values()), "dense_total": dense_total, "by_op": totals, "ops": ops}


_TRIVIAL_HLO = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


def hlo_fusions(text: str) -> dict[str, Any]:
    """Fusions of an optimized HLO module by kind, and the ops left unfused outside them."""
    insts = hlo_instructions(text)
    fused = set()
    kinds: dict[str, int] = {}
    for inst in insts:
        if inst["op"] == "fusion":
            m = re.search(r"kind=(k\w+)", inst["rest"])
            kind = m.group(1) if m else "unknown"
            kinds[kind] = kinds.get(kind, 0) + 1
            if (calls := re.search(r"calls=%?([\w.\-]+)", inst["rest"])) is not None:
                fused.add(calls.group(1))
    unfused: dict[str, int] = {}
    for inst in insts:
        if inst["computation"] in fused or inst["op"] in _TRIVIAL_HLO or inst["op"] == "fusion":
            continue
        unfused[inst["op"]] = unfused.get(inst["op"], 0) + 1
    return {
        "fusions": sum(kinds.values()),
        "by_kind": dict(sorted(kinds.items())),
        "unfused_ops": dict(sorted(unfused.items(), key=lambda kv: -kv[1])),
        "instructions": len(insts),
    }


# ------------------------------------------------------------------------ Inductor output code

_KERNEL_DEF = re.compile(r"^(\w+) = async_compile\.(\w+)\(")
_KERNEL_PREFIX = re.compile(r"^(?:cpp|triton_(?:poi|red|per|tem|for)|triton|cpp_kernel)_fused_")
_ORIGINAL = re.compile(r"Original ATen: \[([^\]]*)\]")
_EXTERN = re.compile(r"\b(extern_kernels\.\w+|aten\.\w+(?:\.\w+)?|torch\.ops\.\w+\.\w+)\(")


def split_kernel_name(name: str, vocabulary: set[str]) -> list[str]:
    """ATen ops a fused kernel is named after: `cpp_fused_max_pool2d_relu_3` -> max_pool2d, relu."""
    rest = re.sub(r"(?:^|_)\d+$", "", _KERNEL_PREFIX.sub("", name))
    if not rest:  # e.g. cpp_fused_0: a layout copy with no ATen origin
        return []
    n = len(rest)
    best: list[list[str] | None] = [None] * (n + 1)
    best[n] = []
    for i in range(n - 1, -1, -1):  # fewest pieces wins: longest known op names first
        for j in range(n, i, -1):
            if (j == n or rest[j] == "_") and rest[i:j] in vocabulary:
                tail = best[j + 1] if j < n else best[n]
                if tail is not None and (best[i] is None or len(tail) + 1 < len(best[i])):
                    best[i] = [rest[i:j], *tail]
    return best[0] if best[0] is not None else [rest]


def parse_inductor_code(code: str, vocabulary: set[str]) -> dict[str, Any]:
    """Kernels Inductor generated in one output module, the ATen ops each covers, extern calls."""
    aot = re.search(r"# AOT ID: \['([^']*)'\]", code)
    kernels = []
    for line in code.splitlines():
        if (m := _KERNEL_DEF.match(line)) is not None:
            ops = split_kernel_name(m.group(1), vocabulary)
            kernels.append({"name": m.group(1), "backend": m.group(2), "aten_ops": ops})
    calls, origin, in_call = [], None, False
    for line in code.splitlines():
        in_call = in_call or line.strip().startswith("def call(")
        if not in_call:
            continue
        if (m := _ORIGINAL.search(line)) is not None:
            origin = [op.strip() for op in m.group(1).split(",") if op.strip()]
            continue
        if (m := _EXTERN.search(line)) is not None:
            calls.append({"call": m.group(1), "aten_ops": origin or []})
            origin = None
    return {"aot_id": aot.group(1) if aot else None, "kernels": kernels, "extern_calls": calls}
