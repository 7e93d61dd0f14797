"""For the Python tests: when a package they need does not import in this
interpreter, run the test again under $KDCL_TEST_PYTHON (set by the user) or
$KDCL_TEST_VENV_PYTHON (set by meson to build/onnx-venv/bin/python, the
environment tools/onnx_venv.sh makes), else skip with meson's exit code 77."""
import os
import sys

SKIP = 77


def reexec_or_skip(why):
    # a virtual environment's python is a link to the base interpreter: compare
    # the paths as given, not where they lead
    me = os.path.abspath(sys.executable)
    tried = [t for t in os.environ.get("KDCL_TEST_PYTHON_TRIED", "").split(os.pathsep) if t]
    for var in ("KDCL_TEST_PYTHON", "KDCL_TEST_VENV_PYTHON"):
        p = os.environ.get(var)
        if not p or not os.path.exists(p):
            continue
        rp = os.path.abspath(p)
        if rp == me or rp in tried:
            continue
        os.environ["KDCL_TEST_PYTHON_TRIED"] = os.pathsep.join(tried + [me])
        sys.stdout.flush()
        os.execv(p, [p] + sys.argv)
    print(f"skipped: {why}")
    sys.exit(SKIP)
