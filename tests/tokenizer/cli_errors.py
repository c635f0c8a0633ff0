#!/usr/bin/env python3
"""ite-tokenize error handling: bad input lines and bad tokenizer files end with a message on
stderr and a nonzero exit status (never a crash), and good lines before a bad one are written.

  cli_errors.py BIN TOKENIZER_JSON
"""
import subprocess
import sys


def run(binary, args, stdin):
    p = subprocess.run([binary] + args, input=stdin, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def main():
    binary, tok = sys.argv[1], sys.argv[2]
    cases = [
        # (args, stdin, expected rc, text expected in stderr, expected stdout lines)
        (["--tokenizer", tok], '"ok"\nnot json\n', 1, "line 2: not valid JSON", 1),
        (["--tokenizer", tok], '"ok"\n[1, 2]\n', 1, "line 2: expected a JSON string", 1),
        (["--tokenizer", tok], '"\\ud800"\n', 1, "line 1", 0),  # lone surrogate escape
        (["--tokenizer", tok, "--decode"], "[1, 2]\n\"text\"\n", 1, "line 2: expected a JSON array",
         1),
        (["--tokenizer", tok, "--decode"], "[1, -5]\n", 1, "-5 is not a token id", 0),
        (["--tokenizer", tok, "--decode"], "[99999999]\n", 1, "99999999 is not a token id", 0),
        (["--tokenizer", tok, "--decode"], "[1.5]\n", 1, "1.5 is not a token id", 0),
        (["--tokenizer", "/nonexistent/tokenizer.json"], '"x"\n', 2, "/nonexistent/tokenizer.json",
         0),
        ([], "", None, "--tokenizer is required", 0),  # None: any nonzero status
    ]
    failures = 0
    for args, stdin, want_rc, want_err, want_lines in cases:
        rc, out, err = run(binary, args, stdin)
        lines = len(out.splitlines())
        rc_ok = rc != 0 if want_rc is None else rc == want_rc
        ok = rc_ok and want_err in err and lines == want_lines
        print(f"{'ok  ' if ok else 'FAIL'} {args[2:] or args} stdin={stdin!r}: rc={rc} "
              f"stdout_lines={lines} stderr={err.strip()!r}")
        failures += not ok
    # Good input still works: two lines in, two arrays out.
    rc, out, _ = run(binary, ["--tokenizer", tok], '"a b"\n""\n')
    ok = rc == 0 and len(out.splitlines()) == 2 and out.splitlines()[1] == "[]"
    print(f"{'ok  ' if ok else 'FAIL'} good input: rc={rc} stdout={out!r}")
    failures += not ok
    print("PASS" if failures == 0 else f"FAIL ({failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
