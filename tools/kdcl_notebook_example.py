# %% [markdown]
# # Distillation from Python with kdcl
#
# A notebook in script form (cells marked `# %%`: Jupyter, VS Code or
# `python3 tools/kdcl_notebook_example.py`). It trains a teacher MLP on
# Fashion-MNIST, distills a small student from it with a per-epoch callback
# collecting the metrics, trains the same student on the hard labels for
# comparison, plots both curves (matplotlib, when installed) and prints the
# test errors.
#
# From a build tree: `PYTHONPATH=build/src/python python3 tools/kdcl_notebook_example.py`.
# Settings come from the environment: KDCL_DEVICE (as kdcl's --device),
# KDCL_DATA (the data directory, default Debian's dataset-fashion-mnist),
# TEACHER_EPOCHS, STUDENT_EPOCHS, KDCL_PLOT (the PNG to write).

# %%
import os
import time

import numpy as np

import kdcl

DATA = os.environ.get("KDCL_DATA", "/usr/share/datasets/fashion-mnist")
DEVICE = os.environ.get("KDCL_DEVICE")  # None: the first GPU, else the first device
TEACHER_EPOCHS = int(os.environ.get("TEACHER_EPOCHS", "5"))
STUDENT_EPOCHS = int(os.environ.get("STUDENT_EPOCHS", "5"))
PLOT = os.environ.get("KDCL_PLOT", "kdcl_distill_curve.png")

ctx = kdcl.Context(DEVICE)
print(f"device: {ctx.device['name']} ({ctx.device['platform']})")
train = kdcl.Dataset.load(DATA, "train")
test = kdcl.Dataset.load(DATA, "test")
print(f"data: {len(train)} training, {len(test)} test images of {train.shape}, "
      f"{train.n_classes} classes")

# %% [markdown]
# ## The teacher: 784-800-800-10 on the hard labels

# %%
teacher = kdcl.Model("784-800-800-10", train.shape, 10, context=ctx, seed=1)
t0 = time.time()
kdcl.train(teacher, train, epochs=TEACHER_EPOCHS, batch=128, lr=0.05, verbose=True)
t_eval = teacher.evaluate(test)
print(f"teacher: {t_eval.errors} test errors ({100 * t_eval.error_rate:.2f}%), "
      f"{time.time() - t0:.0f} s")

# %% [markdown]
# ## The student: 784-30-10, distilled at T = 4, stopped early if it stalls
#
# The callback sees every epoch's metrics (here with a held-out validation
# set of 5000 training images) and returns False to stop.

# %%
fit, val = train.split(5000, seed=1)
curves = {"distilled": [], "hard labels": []}


def collect(name, patience=3):
    best = {"err": 1.0, "epoch": 0}

    def on_epoch(m):
        curves[name].append(m)
        if m["val_error"] < best["err"]:
            best.update(err=m["val_error"], epoch=m["epoch"])
        return m["epoch"] - best["epoch"] < patience  # False: stop

    return on_epoch


student = kdcl.Model("784-30-10", train.shape, 10, context=ctx, seed=2)
kdcl.distill(student, teacher, fit, T=4.0, alpha=0.1, epochs=STUDENT_EPOCHS, batch=128,
             lr=0.1, val=val, on_epoch=collect("distilled"))

baseline = kdcl.Model("784-30-10", train.shape, 10, context=ctx, seed=2)
kdcl.train(baseline, fit, epochs=STUDENT_EPOCHS, batch=128, lr=0.1, val=val,
           on_epoch=collect("hard labels"))

# %% [markdown]
# ## Curves and results

# %%
for name, hist in curves.items():
    print(f"{name:12s} val error by epoch: "
          + " ".join(f"{100 * m['val_error']:.2f}%" for m in hist))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hist in curves.items():
        ax.plot([m["epoch"] for m in hist], [100 * m["val_error"] for m in hist], marker="o",
                label=f"784-30-10, {name}")
    ax.axhline(100 * t_eval.error_rate, ls="--", c="grey", label="teacher (test)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error (%)")
    ax.set_title("Fashion-MNIST: distilled vs hard-label student")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)
    print(f"plot: {PLOT}")
except ImportError:
    print("matplotlib is not installed: no plot")

s_eval, b_eval = student.evaluate(test), baseline.evaluate(test)
print(f"test errors of {len(test)}: teacher {t_eval.errors}, distilled student "
      f"{s_eval.errors}, hard-label student {b_eval.errors}")
logits = student.predict(test.numpy()[0][:5])
print("student logits of 5 test images:", logits.shape, logits.dtype,
      "predicted", logits.argmax(1), "true", test.numpy()[1][:5])
