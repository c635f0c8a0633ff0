"""scripts/demo.sh on the binaries CI has just built (ITE_DEMO_SKIP_BUILD=1: no set-up, no second
build): it must say something within 5 s of starting, finish, and answer its question about
the capital of France by naming Paris."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from e2e_util import (BIN, SRC, Checks, finish, need_model_and_binaries,  # noqa: E402
                      read_available)

need_model_and_binaries("ite-serve", "ite-worker", "ite-scheduler", "ite-client")
# The demo fetches the model into the source tree's models/; the one the tests use must be it.
demo_model = os.path.join(SRC, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.path.exists(demo_model):
    print(f"skip: {demo_model} missing (the demo would download it)", file=sys.stderr)
    sys.exit(77)

c = Checks()
env = dict(os.environ, ITE_DEMO_SKIP_BUILD="1", ITE_BUILD_DIR=os.path.dirname(BIN))
t0 = time.monotonic()
demo = subprocess.Popen(["bash", os.path.join(SRC, "scripts", "demo.sh")], env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
os.set_blocking(demo.stderr.fileno(), False)
first_output = None
err = ""
while first_output is None and demo.poll() is None and time.monotonic() - t0 < 10:
    chunk = read_available(demo.stderr)
    if chunk:
        err += chunk
        first_output = time.monotonic() - t0
    time.sleep(0.05)
out, rest = finish(demo, timeout=300)
err += rest
c.check(first_output is not None and first_output < 5,
        f"the demo speaks within 5 s (after {first_output} s)", err)
c.check(demo.returncode == 0, "the demo exits 0", f"rc {demo.returncode}\n{err}")
c.check("Paris" in out, "the answer names Paris", f"stdout: {out!r}\nstderr: {err}")
c.check("[4/4] starting ite-serve" in err, "the demo says what it is doing", err)
sys.exit(c.done())
