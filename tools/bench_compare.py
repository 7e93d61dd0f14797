#!/usr/bin/env python3
"""Merge kdcl bench JSON files (schema kdcl-bench-1, from `kdcl bench --json`
or tools/pytorch_bench.py) into one markdown table and a bar chart.

    tools/bench_compare.py run1.json run2.json ... [--md OUT.md] [--png OUT.png]

Every device of every file becomes a column (in the order given); rows are
the workloads (result ids) in order of first appearance. Each cell shows the
median and, from the second column on, the ratio to the first column
(> 1 = better than the first column: higher throughput, or less time for
"ms" rows). --no-defaults hides the CLBlast-default GEMM rows. Without --md
the table goes to stdout. The chart (one panel per unit, bars per column)
needs matplotlib; without it the chart is skipped with a message.

GEMM rows are keyed by the product (gemm.<m>x<n>x<k>.<trans>); files written
before kdcl bench took its shapes from the models (gemm.fwd_in.b128, ...) are
read with their ids mapped to those keys, so old and new runs line up.
"""
import argparse
import json
import math
import os
import sys

SCHEMA = "kdcl-bench-1"


def legacy_gemm_ids():
    """The GEMM ids of the 784-1200-1200-10 step in older files -> the product keys."""
    out = {}
    for B in (128, 1024):
        old = {"fwd_in": (B, 1200, 784, "NT"), "fwd_hid": (B, 1200, 1200, "NT"),
               "fwd_out": (B, 10, 1200, "NT"), "dw_in": (1200, 784, B, "TN"),
               "dw_hid": (1200, 1200, B, "TN"), "dw_out": (10, 1200, B, "TN"),
               "dx_hid": (B, 1200, 1200, "NN"), "dx_out": (B, 1200, 10, "NN")}
        for name, (m, n, k, tr) in old.items():
            out[f"gemm.{name}.b{B}"] = f"gemm.{m}x{n}x{k}.{tr}"
    return out


LEGACY_IDS = legacy_gemm_ids()


def result_id(rid):
    """The current id of a result id (older GEMM ids mapped, ".default" kept)."""
    base, suffix = (rid[:-8], ".default") if rid.endswith(".default") else (rid, "")
    return LEGACY_IDS.get(base, base) + suffix


def load(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"bench_compare.py: cannot read {path}: {e}")
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        sys.exit(f"bench_compare.py: {path} is not a {SCHEMA} file "
                 f"(schema: {d.get('schema') if isinstance(d, dict) else None!r})")
    return d


def columns(files):
    cols = []
    for path in files:
        d = load(path)
        tool = d.get("tool", "kdcl")
        for dev in d.get("devices", []):
            label = dev.get("label") or dev.get("device") or "?"
            if tool != "kdcl" and not label.lower().startswith(tool.lower()) \
                    and dev.get("platform") != "NumPy":  # the peer script's numpy.matmul column
                label = f"{tool} {label}"
            cols.append({
                "file": path,
                "label": label,
                "tool": tool,
                "version": d.get("kdcl_version") or d.get("torch_version") or "",
                "date": d.get("date", ""),
                "host": d.get("host", {}),
                "options": d.get("options", {}),
                "dev": dev,
                "results": {result_id(r["id"]): r for r in dev.get("results", []) if "id" in r},
            })
    # disambiguate equal labels by file name
    seen = {}
    for c in cols:
        seen.setdefault(c["label"], []).append(c)
    for label, cs in seen.items():
        if len(cs) > 1:
            for c in cs:
                c["label"] = f"{label} [{os.path.basename(c['file'])}]"
    return cols


def rows(cols, no_defaults):
    order, meta = [], {}
    for c in cols:
        for rid, r in c["results"].items():
            if no_defaults and r.get("variant") == "clblast-defaults":
                continue
            if rid not in meta:
                order.append(rid)
                meta[rid] = r
    return order, meta


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v):
    if not num(v):
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(r, base):
    """> 1 means r is better than base."""
    v, b = r.get("median"), base.get("median")
    if not (num(v) and num(b)) or v <= 0 or b <= 0:
        return None
    return b / v if r.get("better") == "lower" else v / b


def markdown(cols, order, meta):
    out = []
    out.append("| | " + " | ".join(c["label"] for c in cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    info = [
        ("tool", lambda c: f"{c['tool']} {c['version']}".strip()),
        ("platform / driver", lambda c: " ".join(x for x in (
            str(c["dev"].get("platform", "")), str(c["dev"].get("driver", ""))) if x)),
        ("GEMM tuning", lambda c: str(c["dev"].get("gemm_tuning", ""))),
        ("host", lambda c: "{} ({} CPUs, load {})".format(
            c["host"].get("cpu_model", "?"), c["host"].get("cpus", "?"),
            c["host"].get("loadavg_start", "?"))),
        ("date", lambda c: c["date"]),
        ("file", lambda c: os.path.basename(c["file"])),
    ]
    for name, f in info:
        out.append(f"| *{name}* | " + " | ".join(f(c).replace("|", "/") for c in cols) + " |")
    out.append("")
    head = "| workload | unit | " + " | ".join(
        c["label"] + (" (x first)" if i else "") for i, c in enumerate(cols)) + " |"
    out.append(head)
    out.append("|---|---|" + "---:|" * len(cols))
    for rid in order:
        m = meta[rid]
        cells = []
        base = cols[0]["results"].get(rid)
        for i, c in enumerate(cols):
            r = c["results"].get(rid)
            if r is None:
                cells.append("")
                continue
            s = fmt(r.get("median"))
            if i and base is not None:
                q = ratio(r, base)
                if q is not None:
                    s += f" ({q:.2f}x)"
            cells.append(s)
        unit = m.get("unit", "")
        if m.get("better") == "lower":
            unit += " (lower is better)"
        out.append(f"| {m.get('label', rid)} | {unit} | " + " | ".join(cells) + " |")
    nulls = [c["label"] for c in cols if "distill" in c["dev"] and c["dev"]["distill"] is None]
    if nulls:
        out.append("")
        out.append("Distillation step: not measured yet in " + ", ".join(nulls) + ".")
    return "\n".join(out) + "\n"


def chart(cols, order, meta, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench_compare.py: matplotlib is not installed, no chart written "
              "(pip install matplotlib)", file=sys.stderr)
        return False
    units = []
    for rid in order:
        u = meta[rid].get("unit", "")
        if u not in units:
            units.append(u)
    fig, axes = plt.subplots(len(units), 1, squeeze=False,
                             figsize=(max(8, 0.45 * len(order) + 4), 3.2 * len(units)))
    width = 0.8 / max(1, len(cols))
    for ax, unit in zip(axes[:, 0], units):
        ids = [rid for rid in order if meta[rid].get("unit", "") == unit]
        for j, c in enumerate(cols):
            xs, ys = [], []
            for i, rid in enumerate(ids):
                r = c["results"].get(rid)
                if r is not None and num(r.get("median")):
                    xs.append(i + (j - (len(cols) - 1) / 2) * width)
                    ys.append(r["median"])
            ax.bar(xs, ys, width=width, label=c["label"])
        ax.set_xticks(range(len(ids)))
        ax.set_xticklabels([rid for rid in ids], rotation=60, ha="right", fontsize=7)
        better = "lower" if any(meta[r].get("better") == "lower" for r in ids) else "higher"
        ax.set_ylabel(f"{unit} ({better} is better)", fontsize=8)
        if len(ids) > 1 and unit == "GFLOP/s":
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="kdcl-bench-1 JSON files")
    ap.add_argument("--md", help="write the markdown table here (default: stdout)")
    ap.add_argument("--png", help="write a bar chart here (needs matplotlib)")
    ap.add_argument("--no-defaults", action="store_true",
                    help="leave out the CLBlast-default GEMM rows")
    a = ap.parse_args()
    cols = columns(a.files)
    if not cols:
        sys.exit("bench_compare.py: no devices in the given files")
    order, meta = rows(cols, a.no_defaults)
    md = markdown(cols, order, meta)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md)
        print(f"wrote {a.md} ({len(order)} workloads x {len(cols)} runs)")
    else:
        sys.stdout.write(md)
    if a.png and chart(cols, order, meta, a.png):
        print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
