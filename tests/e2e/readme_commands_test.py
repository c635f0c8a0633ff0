"""Every command README.md shows works: each `ite-client` command in a ```sh block runs against a
real ite-serve (its addresses put in for 127.0.0.1:50051 and, HTTP, 127.0.0.1:8000) and exits 0;
every --flag the README gives any of our binaries (in ```sh blocks and in `inline code` that
starts with the binary's name) is one that binary's --help lists. So the README cannot drift
from the flags."""
import os
import re
import shlex
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from e2e_util import BIN, SRC, Checks, Serve, need_model_and_binaries, run  # noqa: E402

BINARIES = ["ite-serve", "ite-scheduler", "ite-worker", "ite-client", "ite-generate",
            "ite-tokenize"]
need_model_and_binaries(*BINARIES)
c = Checks()
readme = open(os.path.join(SRC, "README.md")).read()


def sh_block_commands(text):
    """Commands of ```sh blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def inline_commands(text):
    """`inline code` spans that start with one of our binaries (build/bin/ or not)."""
    out = []
    for span in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        words = span.replace("[", " ").replace("]", " ").split()
        if words and os.path.basename(words[0]) in BINARIES:
            out.append(words)
    return out


_help_cache = {}


def help_text(binary, sub=None):
    key = (binary, sub)
    if key not in _help_cache:
        args = [os.path.join(BIN, binary)] + ([sub] if sub else []) + ["--help"]
        _help_cache[key] = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
    return _help_cache[key]


def check_flags(words, where):
    """Each binary in `words` (a pipeline may hold several) against its --help."""
    for i, w in enumerate(words):
        name = os.path.basename(w)
        if name not in BINARIES:
            continue
        sub = None
        rest = words[i + 1:]
        # A subcommand, unless it is a placeholder such as SUBCOMMAND.
        if name == "ite-client" and rest and not rest[0].startswith("-") and not rest[0].isupper():
            sub = rest[0]
        end = next((k for k, x in enumerate(rest) if x in ("|", "&&", ";")), len(rest))
        helptext = help_text(name, sub)
        for flag in rest[:end]:
            if not flag.startswith("--"):
                continue
            flag = flag.split("=")[0].rstrip(",.")
            c.check(re.search(re.escape(flag) + r"(?![\w-])", helptext) is not None,
                    f"{where}: {name}{' ' + sub if sub else ''} has {flag}")


sh_cmds = sh_block_commands(readme)
for words in sh_cmds:
    check_flags(words, "```sh")
for words in inline_commands(readme):
    check_flags(words, "inline")
c.check(any(os.path.basename(w[0]) == "ite-client" or "build/bin/ite-client" in w
            for w in sh_cmds), "the README has ite-client commands to run")

with tempfile.TemporaryDirectory() as cwd, Serve(
        "--threads", "1", "--http-ready-file", os.path.join(cwd, "http_port")) as s:
    http_addr = "127.0.0.1:" + open(os.path.join(cwd, "http_port")).read().strip()
    for words in sh_cmds:
        line = " ".join(shlex.quote(w) if w not in ("|", "&&") else w for w in words)
        if "build/bin/ite-client" not in line:
            continue
        line = line.replace("127.0.0.1:50051", s.addr).replace("127.0.0.1:8000", http_addr)
        # Subcommands given without --addr talk to the default port: point them at the server.
        line = re.sub(r"(build/bin/ite-client \S+)(?![^|]*--addr)", r"\1 --addr " + s.addr, line)
        line = line.replace("build/bin/", BIN + "/")
        p = subprocess.run(["bash", "-c", line], cwd=cwd, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=300)
        c.check(p.returncode == 0, f"runs: {' '.join(words)[:100]}",
                f"rc {p.returncode}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
sys.exit(c.done())
