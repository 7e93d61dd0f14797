"""For the Python tests: when a package they need does not import in this
interpreter, run the test again under $KDCL_TEST_PYTHON (set by the user) or
$KDCL_TEST_VENV_PYTHON (set by meson to build/onnx-venv/bin/python, the
environment tools/onnx_venv.sh makes), and with search=True under the other
python3 interpreters of PATH and the system's (/usr/bin/python3, where
Debian's python3-numpy is), else skip with meson's exit code 77."""
import os
import sys

SKIP = 77


def _candidates(search):
    out = [os.environ.get(v) for v in ("KDCL_TEST_PYTHON", "KDCL_TEST_VENV_PYTHON")]
    if search:
        for d in os.environ.get("PATH", "").split(os.pathsep):
            out.append(os.path.join(d, "python3") if d else None)
        out.append("/usr/bin/python3")
    return [p for p in out if p]


def reexec_or_skip(why, search=False):
    # a virtual environment's python is a link to the base interpreter: compare
    # the paths as given, not where they lead
    me = os.path.abspath(sys.executable)
    tried = [t for t in os.environ.get("KDCL_TEST_PYTHON_TRIED", "").split(os.pathsep) if t]
    for p in _candidates(search):
        if not os.path.isfile(p) or not os.access(p, os.X_OK):
            continue
        rp = os.path.abspath(p)
        if rp == me or rp in tried:
            continue
        # both: a launcher (a pyenv shim) may start an interpreter already tried
        os.environ["KDCL_TEST_PYTHON_TRIED"] = os.pathsep.join(tried + [me, rp])
        sys.stdout.flush()
        os.execv(p, [p] + sys.argv)
    print(f"skipped: {why}")
    sys.exit(SKIP)
