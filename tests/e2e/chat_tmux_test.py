"""`ite-client chat` in a real terminal (tmux): arrow keys edit the line and walk the history,
Ctrl-C stops an answer and keeps the conversation, /reset says so, Ctrl-D quits leaving the
shell's next line clean. Skipped (77) without tmux."""
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from e2e_util import Checks, Serve, bin_path, need_model_and_binaries, need_tool  # noqa: E402

need_model_and_binaries("ite-serve", "ite-worker", "ite-scheduler", "ite-client")
need_tool("tmux")
c = Checks()
SESSION = f"ite-chat-test-{os.getpid()}"
SOCKET = ["-L", SESSION]  # a private tmux server: nothing of the user's is touched


def tmux(*args):
    return subprocess.run(["tmux"] + SOCKET + list(args), capture_output=True, text=True,
                          timeout=30)


def screen():
    # Lines as they read: tmux pads the edited line with the spaces libedit wrote over it.
    out = tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", SESSION).stdout
    return "\n".join(line.rstrip() for line in out.splitlines()).strip("\n") + "\n"


def keys(*k):
    tmux("send-keys", "-t", SESSION, *k)


def literal(text):
    tmux("send-keys", "-t", SESSION, "-l", text)


def wait_for(pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = screen()
        if pred(s):
            return True
        time.sleep(0.2)
    return False


with Serve("--threads", "1") as s:
    chat = [bin_path("ite-client"), "chat", "--addr", s.addr, "--temperature", "0",
            "--max-tokens", "400", "--ignore-eos"]
    # `; echo EXITED-$?` shows the exit code, and whether Ctrl-D left the cursor at a line start.
    # bash, not dash: dash dies of the Ctrl-C meant for its child (and the pane with it).
    cmd = " ".join(shlex.quote(a) for a in chat) + "; echo EXITED-$?; sleep 30"
    tmux("new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50", "bash", "-c", cmd)
    try:
        c.check(wait_for(lambda t: "chat with SmolLM2-135M-Instruct.Q4_1" in t and "\n>" in t),
                "chat starts and names the model", screen())

        # Type with a typo, fix it with Left / Backspace / Right, and check what was sent.
        literal("Whta is the capital of France?")
        keys("Home", "Right", "Right", "Right", "Right", "BSpace", "BSpace")
        literal("at")
        keys("End")
        literal("x")
        keys("BSpace", "Enter")
        # A long answer (--ignore-eos, 400 tokens): stop it with Ctrl-C once it has started.
        question = "> What is the capital of France?\n"
        c.check(wait_for(lambda t: question in t and len(t.split(question, 1)[1].strip()) > 20,
                         timeout=180), "the edited question is sent and the answer streams",
                screen())
        keys("C-c")
        c.check(wait_for(lambda t: "[answer stopped; the history is kept]" in t, timeout=30),
                "Ctrl-C stops the answer and says the history is kept", screen())
        c.check(wait_for(lambda t: t.rstrip().endswith(">"), timeout=30),
                "the prompt comes back after Ctrl-C", screen())
        literal("/history")
        keys("Enter")
        c.check(wait_for(lambda t: "[2 message(s)]" in t),
                "after Ctrl-C the history holds the question and the partial answer", screen())
        c.check("[user] What is the capital of France?\n" in screen(),
                "the edited line (Home, Right, Backspace, End) is what was sent", screen())
        c.check("\x1b[" not in screen() and "^[[" not in screen(), "no escape codes in the text")

        # Up recalls the previous line (history of the line editor), here /history.
        keys("Up")
        c.check(wait_for(lambda t: t.rstrip().endswith("> /history"), timeout=10),
                "Up recalls the previous line", screen())
        keys("C-u")  # clear the recalled line (emacs kill-line-backwards)
        keys("C-c")  # and Ctrl-C on the prompt discards whatever is typed
        literal("/reset")
        keys("Enter")
        c.check(wait_for(lambda t: "[history cleared: 2 message(s) dropped]" in t),
                "/reset says so", screen())

        # Ctrl-D on an empty line quits, exit 0, and the next output starts a line of its own.
        keys("C-d")
        c.check(wait_for(lambda t: any(l.startswith("EXITED-0") for l in t.splitlines())),
                "Ctrl-D quits with exit 0 and leaves a newline", screen())
    finally:
        tmux("kill-server")
sys.exit(c.done())
