#!/usr/bin/env python3
"""Reproduce Section 3 of Hinton, Vinyals & Dean (2015) on MNIST with kdcl.

    python3 tools/reproduce_mnist.py --data DIR [--out DIR] [--quick] [--device D]
        [--teacher-epochs N] [--student-epochs N] [--small-epochs N]
        [--members N] [--member-epochs N]

Runs, through the kdcl CLI:
  teacher   784-1200-1200-10, dropout 0.2/0.5, jitter 2 px, max-norm 3.5
  hard      784-800-800-10 on hard labels, no regularisation
  distilled 784-800-800-10 on the teacher's soft targets at T = 20 (alpha 0.1)
  T sweep   784-30-30-10 distilled at T in {1, 2, 2.5, 3, 4, 6, 8, 20} (+ hard baseline)
  omit-3    distilled with no 3 in the transfer set; bias of 3 raised by 3.5 and by
            an offset searched on 5000 held-out examples
  only-7-8  distilled on 7s and 8s only; biases of 7 and 8 lowered by 7.6 / searched
  3%        hard labels vs soft targets on the same 3% of the training set
  ensemble  N teachers with different seeds, their ensemble, one distilled student,
            and the fraction of the ensemble's gain over a single model it recovers
Writes results.md (with the paper's numbers), results.csv, temperature.png and
curves.png (matplotlib, when installed). Finished steps are skipped on a re-run
(delete a step's .safetensors to redo it). Full-length defaults are meant for a
GPU; --quick is a CPU smoke run.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

PAPER = {
    "teacher": "67", "hard": "146", "distilled": "74",
    "omit3": "206 (133 on 3s)", "omit3_adj": "109 (14 on 3s)",
    "only78": "47.3%", "only78_adj": "13.2%",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="build/reproduce-mnist")
    ap.add_argument("--kdcl", default="build/src/cli/kdcl")
    ap.add_argument("--device")
    ap.add_argument("--quick", action="store_true", help="CPU smoke run (minutes)")
    ap.add_argument("--teacher-epochs", type=int)
    ap.add_argument("--student-epochs", type=int)
    ap.add_argument("--small-epochs", type=int)
    ap.add_argument("--members", type=int)
    ap.add_argument("--member-epochs", type=int)
    a = ap.parse_args()
    q = a.quick
    E_T = a.teacher_epochs or (2 if q else 100)
    E_S = a.student_epochs or (2 if q else 60)
    E_30 = a.small_epochs or (3 if q else 60)
    N_M = a.members or (3 if q else 10)
    E_M = a.member_epochs or (1 if q else 30)
    os.makedirs(a.out, exist_ok=True)
    dev = ["--device", a.device] if a.device else []
    log = open(os.path.join(a.out, "run.log"), "a")
    rows, times = [], {}

    def kdcl(*args):
        cmd = [a.kdcl, *args, *dev]
        print("$ " + " ".join(cmd), flush=True)
        log.write("$ " + " ".join(cmd) + "\n")
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        log.write(r.stdout + r.stderr)
        log.flush()
        if r.returncode != 0:
            sys.exit(f"failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout, time.time() - t0

    def path(name):
        return os.path.join(a.out, name + ".safetensors")

    def fit(name, cmd, *args):
        p = path(name)
        if not os.path.exists(p):
            # an interrupted run left its training state: continue it
            resume = ["--resume"] if os.path.exists(p[:-len(".safetensors")] + ".state.safetensors") else []
            _, secs = kdcl(cmd, "--data", a.data, "--quiet", "--out", p, *resume, *args)
            times[name] = secs
        return p

    def evaluate(model):
        out, _ = kdcl("eval", "--model", model, "--data", a.data, "--json")
        j = json.loads(out)
        return j

    def on_class(j, classes):
        conf = j["confusion"]
        return sum(sum(conf[c]) - conf[c][c] for c in classes), sum(sum(conf[c]) for c in classes)

    def add(exp, model, paper, errors, extra=""):
        rows.append({"experiment": exp, "model": model, "paper": paper, "kdcl": errors, "notes": extra})

    def sched(epochs):
        """SGD schedule scaled to the run length: momentum 0.5 -> 0.95 over the first
        quarter (at most 10 epochs), learning rate 0.05 decayed to a fifth by the end."""
        ramp = max(1, min(10, epochs // 4))
        return ["--batch", "128", "--lr", "0.05", "--momentum", f"0.5,0.95,{ramp}",
                "--lr-decay", f"{0.2 ** (1 / max(1, epochs)):.4f}", "--epochs", str(epochs)]

    teacher = fit("teacher", "train", "--arch", "784-1200-1200-10", "--dropout", "0.2,0.5",
                  "--jitter", "2", "--max-norm", "3.5", *sched(E_T))
    student = ["--arch", "784-800-800-10", *sched(E_S)]
    hard = fit("hard-800", "train", *student)
    dist = fit("distilled-800", "distill", "--teacher", teacher, "--T", "20", "--alpha", "0.1", *student)
    jt, jh, jd = evaluate(teacher), evaluate(hard), evaluate(dist)
    add("sec. 3", "teacher 1200-1200 (dropout, jitter, max-norm)", PAPER["teacher"], jt["errors"], f"{E_T} epochs")
    add("sec. 3", "800-800, hard labels", PAPER["hard"], jh["errors"], f"{E_S} epochs")
    add("sec. 3", "800-800, distilled T=20", PAPER["distilled"], jd["errors"], f"{E_S} epochs, alpha 0.1")

    # temperature sweep with 30-30 students
    small = ["--arch", "784-30-30-10", *sched(E_30)]
    sweep = [(None, evaluate(fit("hard-30", "train", *small))["errors"])]
    for T in ["1", "2", "2.5", "3", "4", "6", "8", "20"]:
        p = fit(f"distilled-30-T{T}", "distill", "--teacher", teacher, "--T", T, "--alpha", "0.1", *small)
        sweep.append((float(T), evaluate(p)["errors"]))
    add("T sweep", "30-30, hard labels", "", sweep[0][1])
    for T, e in sweep[1:]:
        add("T sweep", f"30-30, distilled T={T:g}", "2.5-4 best", e)

    # omitted class 3
    val = ["--val", "5000"]
    o3 = fit("omit3", "distill", "--teacher", teacher, "--T", "20", "--alpha", "0.1", "--omit-classes", "3", *val, *student)
    j = evaluate(o3)
    e3, n3 = on_class(j, [3])
    add("omit 3", "800-800 distilled, no 3s in transfer set", PAPER["omit3"], j["errors"], f"{e3} of {n3} threes wrong")
    for tag, how in [("3.5", ["--offset", "3.5"]), ("searched", ["--search", "--val", "5000"])]:
        p = path(f"omit3-adj-{tag}")
        if not os.path.exists(p):
            kdcl("adjust-bias", "--model", o3, "--classes", "3", *how, "--data", a.data, "--out", p)
        j = evaluate(p)
        e3, n3 = on_class(j, [3])
        off = "" if tag == "3.5" else " (offset searched on held-out data)"
        add("omit 3", f"  + bias of 3 raised ({tag})", PAPER["omit3_adj"] if tag == "3.5" else "", j["errors"],
            f"{e3} of {n3} threes wrong{off}")

    # only 7s and 8s
    o78 = fit("only78", "distill", "--teacher", teacher, "--T", "20", "--alpha", "0.1", "--only-classes", "7,8", *val, *student)
    j = evaluate(o78)
    add("only 7, 8", "800-800 distilled on 7s and 8s only", PAPER["only78"], j["errors"], f"{j['errors'] / 100:.1f}% error")
    for tag, how in [("-7.6", ["--offset", "-7.6"]), ("searched", ["--search", "--val", "5000"])]:
        p = path(f"only78-adj-{tag}")
        if not os.path.exists(p):
            kdcl("adjust-bias", "--model", o78, "--classes", "7,8", *how, "--data", a.data, "--out", p)
        j = evaluate(p)
        add("only 7, 8", f"  + biases of 7, 8 lowered ({tag})", PAPER["only78_adj"] if tag == "-7.6" else "",
            j["errors"], f"{j['errors'] / 100:.1f}% error")

    # soft targets as a regulariser: 3% of the data
    h3 = fit("hard-3pct", "distill", "--teacher", teacher, "--alpha", "1", "--fraction", "0.03", *student)
    s3 = fit("soft-3pct", "distill", "--teacher", teacher, "--T", "20", "--alpha", "0.1", "--fraction", "0.03", *student)
    add("3% of data", "800-800, hard labels on 3%", "overfits (paper: speech)", evaluate(h3)["errors"])
    add("3% of data", "800-800, soft targets on the same 3%", "most of the gap closed", evaluate(s3)["errors"])

    # ensemble of N teachers -> one distilled student
    members = [fit(f"member-{i}", "train", "--arch", "784-1200-1200-10", "--dropout", "0.2,0.5",
                   "--jitter", "2", "--max-norm", "3.5", "--seed", str(100 + i), *sched(E_M))
               for i in range(N_M)]
    single = [evaluate(m)["errors"] for m in members]
    ens = evaluate(",".join(members))["errors"]
    # The student is of the members' size AND gets the members' regularisation
    # (dropout, max-norm, 2-pixel jitter with the teachers' targets computed on
    # the same jittered images). Without it (as this script did before) the
    # 1200-1200 student is an unregularised net that the soft targets only
    # partly rescue: on the H100 run, 10 members of 133.2 errors, ensemble 107,
    # student 136 -- none of the gain recovered, about what an unregularised
    # 800-800 reaches on hard labels (151).
    es = fit("ensemble-student", "distill", "--teacher", ",".join(members), "--T", "4", "--alpha", "0.1",
             "--arch", "784-1200-1200-10", "--dropout", "0.2,0.5", "--jitter", "2", "--max-norm", "3.5",
             *sched(E_M))
    se = evaluate(es)["errors"]
    mean_single = sum(single) / len(single)
    gain = mean_single - ens
    frac = (mean_single - se) / gain if gain > 0 else float("nan")
    add("ensemble", f"single 1200-1200 (mean of {N_M})", "58.9% (speech)", f"{mean_single:.1f}")
    add("ensemble", f"ensemble of {N_M}", "61.1%", ens)
    add("ensemble", "distilled single model", "60.8% (>80% of gain)", se,
        f"recovers {100 * frac:.0f}% of the ensemble's gain" if gain > 0 else "the ensemble did not beat a single model")

    with open(os.path.join(a.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["experiment", "model", "paper", "kdcl", "notes"])
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(f"MNIST test errors of 10,000 (teacher {E_T} epochs, students {E_S}, 30-30 {E_30}, "
                f"{N_M} ensemble members of {E_M})\n\n| experiment | model | paper | kdcl | notes |\n|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r['experiment']} | {r['model']} | {r['paper']} | {r['kdcl']} | {r['notes']} |\n")
        if times:
            f.write("\nwall time of the steps run now (s): " +
                    ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + "\n")
    print(open(os.path.join(a.out, "results.md")).read())
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([t for t, _ in sweep[1:]], [e for _, e in sweep[1:]], "o-", label="30-30 distilled")
        ax.axhline(sweep[0][1], color="gray", ls="--", label="30-30 hard labels")
        ax.set_xscale("log")
        ax.set_xlabel("temperature T")
        ax.set_ylabel("test errors")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "temperature.png"), dpi=120)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name in ["teacher", "hard-800", "distilled-800"]:
            mp = path(name) + ".metrics.jsonl"
            if os.path.exists(mp):
                ep = [json.loads(l) for l in open(mp)]
                ax.plot([e["epoch"] for e in ep], [100 * e["train_error"] for e in ep], label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training error % (training mode)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "curves.png"), dpi=120)
    except ImportError:
        print("matplotlib not installed: no plots (pip install matplotlib)")


if __name__ == "__main__":
    main()
