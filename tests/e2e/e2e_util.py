"""Helpers of the Python end-to-end tests: the environment ctest hands over, a real ite-serve on
a free loopback port (bounded waits, stopped on exit), and commands run with a time limit.
Tests exit 77 (ctest: skipped) when something they need is missing, saying what."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("ITE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("ITE_BIN_DIR", os.path.join(SRC, "build", "bin"))
MODEL = os.environ.get("ITE_MODEL_GGUF", "")


def skip(why):
    print(f"skip: {why}", file=sys.stderr)
    sys.exit(77)


def need_model_and_binaries(*names):
    if not os.path.exists(MODEL):
        skip("ITE_MODEL_GGUF missing (scripts/fetch_model.sh fetches it)")
    for n in names:
        if not os.access(os.path.join(BIN, n), os.X_OK):
            skip(f"{BIN}/{n} is not built")


def need_tool(name):
    if shutil.which(name) is None:
        skip(f"{name} is not installed (scripts/setup.sh installs it)")


def bin_path(name):
    return os.path.join(BIN, name)


class Checks:
    """Collects failed checks so one run reports all of them; exit code 1 if any failed."""

    def __init__(self):
        self.failures = []

    def check(self, cond, what, detail=""):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            if detail:
                print("     " + str(detail).replace("\n", "\n     "))
            self.failures.append(what)
        return cond

    def done(self):
        if self.failures:
            print(f"{len(self.failures)} check(s) failed: {self.failures}")
            return 1
        return 0


def read_available(stream):
    """What a non-blocking pipe (os.set_blocking(fd, False)) holds now, as text; "" if nothing."""
    try:
        data = os.read(stream.fileno(), 1 << 16)
    except BlockingIOError:
        return ""
    return data.decode(errors="replace")


def finish(proc, timeout):
    """Waits for a Popen started with text pipes (killed after `timeout` s); (stdout, stderr)."""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            os.set_blocking(stream.fileno(), True)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def run(args, timeout=120, stdin=None, input_text=None, env=None):
    """Runs a command; returns (returncode, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.run(args, input=input_text, stdin=stdin, capture_output=True, text=True,
                       timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


class Serve:
    """`with Serve() as s:` runs ite-serve (one CPU worker) on a free port; s.addr is HOST:PORT."""

    def __init__(self, *extra):
        self.extra = list(extra)
        self.tmp = tempfile.TemporaryDirectory()
        self.proc = None
        self.addr = ""

    def __enter__(self):
        ready = os.path.join(self.tmp.name, "port")
        self.log = open(os.path.join(self.tmp.name, "serve.log"), "w")
        self.proc = subprocess.Popen([bin_path("ite-serve"), "--model", MODEL, "--port", "0",
                                      "--ready-file", ready] + self.extra,
                                     stderr=self.log, stdout=subprocess.DEVNULL)
        deadline = time.time() + 180
        while time.time() < deadline:
            if os.path.exists(ready) and open(ready).read().strip():
                self.addr = "127.0.0.1:" + open(ready).read().strip()
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        log = self.log_text()  # before __exit__ removes it
        self.__exit__(None, None, None)
        raise RuntimeError("ite-serve did not come up; log:\n" + log)

    def log_text(self):
        with open(os.path.join(self.tmp.name, "serve.log")) as f:
            return f.read()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.tmp.cleanup()
        return False


def proto_messages(tmp, *protos):
    """A function from a full message name to its class, for the given .proto files (built at
    run time with protoc --descriptor_set_out, so nothing generated is checked in)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    ds = os.path.join(tmp, "ds.pb")
    subprocess.run(["protoc", f"--proto_path={SRC}", "--include_imports",
                    f"--descriptor_set_out={ds}", *protos], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(ds, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def wait_port_file(path, proc, timeout=120):
    """The port a server wrote to its ready file; raises if it exits or takes too long."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise RuntimeError(f"ite-serve exited with {proc.returncode}")
        if time.time() > deadline:
            raise RuntimeError(f"{path} not written within {timeout} s")
        time.sleep(0.1)
    return int(open(path).read().strip())


def stop_serve(serve, check):
    """SIGTERM: ite-serve must drain and exit 0 within a minute (else it is killed)."""
    serve.send_signal(signal.SIGTERM)
    try:
        check(serve.wait(timeout=60) == 0, "ite-serve exits 0 on SIGTERM")
    except subprocess.TimeoutExpired:
        serve.kill()
        serve.wait()
        check(False, "ite-serve exits on SIGTERM")
