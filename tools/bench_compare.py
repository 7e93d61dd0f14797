#!/usr/bin/env python3
"""Merge kdcl bench JSON files (schema kdcl-bench-1, from `kdcl bench --json`
or tools/pytorch_bench.py) into one markdown table and a bar chart.

    tools/bench_compare.py run1.json run2.json ... [--md OUT.md] [--png OUT.png]
    tools/bench_compare.py --compare OLD.json NEW.json [--md OUT.md]

The schema: tools/kdcl-bench-1.md.

Every device of every file becomes a column (in the order given); rows are
the workloads (result ids) in order of first appearance. Each cell shows the
median and, from the second column on, the ratio to the first column
(> 1 = better than the first column: higher throughput, or less time for
"ms" rows). --no-defaults hides the CLBlast-default GEMM rows. Without --md
the table goes to stdout. The chart (one panel per unit, bars per column)
needs matplotlib; without it the chart is skipped with a message.

--compare pairs each device of OLD with the device of NEW that has the same
device and platform names, and lists for every workload both have the old
and the new median [min-max], the change (> 1 = better in NEW) and whether it
is outside the noise (the min-max ranges do not overlap); then what changed
in the devices' metadata (driver, GEMM parameters, ...) and the devices found
in only one run. A file given as a directory means its bench.json (the
output of kdcl bench --report DIR).

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
    if os.path.isdir(path):
        path = os.path.join(path, "bench.json")
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


META_KEYS = ("driver", "platform_version", "opencl_c_version", "clblast_version",
             "gemm_params_source", "gemm_tuning", "conv_algo", "conv_direct", "max_alloc_bytes",
             "compute_units", "clock_mhz")


def compare(old_path, new_path):
    """Markdown: the change from OLD to NEW, device by device."""
    old, new = load(old_path), load(new_path)

    def key(dev):
        return (dev.get("device", ""), dev.get("platform", ""))

    new_devs = {}
    for dev in new.get("devices", []):
        new_devs.setdefault(key(dev), []).append(dev)
    out = [f"# {os.path.basename(old_path)} -> {os.path.basename(new_path)}", ""]
    for d, name in ((old, "old"), (new, "new")):
        out.append(f"- {name}: kdcl {d.get('kdcl_version', '?')} {d.get('git', '')}, "
                   f"{d.get('date', '?')}, `{d.get('command_line', '')}`")
    out.append("")
    only_old = []
    for dev in old.get("devices", []):
        cands = new_devs.get(key(dev), [])
        if not cands:
            only_old.append(dev.get("label", "?"))
            continue
        nd = cands.pop(0)
        out.append(f"## {dev.get('label', '?')}")
        out.append("")
        changed = [(k, dev.get(k), nd.get(k)) for k in META_KEYS if dev.get(k) != nd.get(k)]
        for k, a, b in changed:
            out.append(f"- {k}: {a!r} -> {b!r}")
        if changed:
            out.append("")
        out.append("| workload | unit | old | new | change | |")
        out.append("|---|---|---:|---:|---:|---|")
        olds = {result_id(r["id"]): r for r in dev.get("results", []) if "id" in r}
        news = {result_id(r["id"]): r for r in nd.get("results", []) if "id" in r}
        for rid, r in olds.items():
            q = news.get(rid)
            if q is None:
                continue
            change = ratio(q, r)
            verdict = ""
            reps = min(r.get("reps") or 0, q.get("reps") or 0)
            if change is not None and reps < 2:
                verdict = "one repetition: no noise estimate"
            elif change is not None:
                lo_o, hi_o, lo_n, hi_n = (r.get("min"), r.get("max"), q.get("min"), q.get("max"))
                if all(num(v) for v in (lo_o, hi_o, lo_n, hi_n)) and (lo_n > hi_o or hi_n < lo_o):
                    verdict = "better" if change > 1 else "worse"
                else:
                    verdict = "within noise"

            def cell(x):
                s = fmt(x.get("median"))
                if num(x.get("min")) and num(x.get("max")) and x["max"] > x["min"]:
                    s += f" [{fmt(x['min'])}-{fmt(x['max'])}]"
                return s
            unit = r.get("unit", "")
            if r.get("better") == "lower":
                unit += " (lower is better)"
            out.append(f"| {r.get('label', rid)} | {unit} | {cell(r)} | {cell(q)} | "
                       f"{'-' if change is None else f'{change:.2f}x'} | {verdict} |")
        gone = [rid for rid in olds if rid not in news]
        added = [rid for rid in news if rid not in olds]
        if gone:
            out.append("")
            out.append("Only in the old run: " + ", ".join(gone))
        if added:
            out.append("")
            out.append("Only in the new run: " + ", ".join(added))
        out.append("")
    only_new = [d.get("label", "?") for ds in new_devs.values() for d in ds]
    if only_old:
        out.append("Devices only in the old run: " + "; ".join(only_old))
    if only_new:
        out.append("Devices only in the new run: " + "; ".join(only_new))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="kdcl-bench-1 JSON files")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                    help="the change from one run to another, device by device")
    ap.add_argument("--md", help="write the markdown table here (default: stdout)")
    ap.add_argument("--png", help="write a bar chart here (needs matplotlib)")
    ap.add_argument("--no-defaults", action="store_true",
                    help="leave out the CLBlast-default GEMM rows")
    a = ap.parse_args()
    if a.compare:
        if a.files or a.png:
            ap.error("--compare takes exactly two runs and no other files or --png")
        md = compare(*a.compare)
        if a.md:
            with open(a.md, "w") as f:
                f.write(md)
            print(f"wrote {a.md}")
        else:
            sys.stdout.write(md)
        return 0
    if not a.files:
        ap.error("no files (or --compare OLD NEW)")
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
