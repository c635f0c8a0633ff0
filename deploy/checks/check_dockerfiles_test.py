"""The Dockerfile checks reject what they are meant to, and the repository's Dockerfiles pass."""

import pathlib
import subprocess
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
CHECK = HERE / "check_dockerfiles.py"


def run(*args):
    return subprocess.run([sys.executable, str(CHECK), *map(str, args)], capture_output=True,
                          text=True)


class CheckDockerfilesTest(unittest.TestCase):
    def test_a_bad_dockerfile_fails_with_every_problem_named(self):
        out = run(HERE / "testdata" / "bad.Dockerfile")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        for line in [
            "hadolint: ",  # apt-get without pinned versions, no --no-install-recommends, ...
            "does not run `ITE_SETUP_PACKAGES_ONLY=1 scripts/setup.sh`",
            "does not run `scripts/build.sh /build`",
            "the final stage starts from a build image",
            "does not end as a numeric non-root USER",
            "no org.opencontainers.image.version label",
            "no org.opencontainers.image.revision label",
            "the final stage installs or builds: RUN apt-get",
            "the final stage copies more than the bundle: . /opt/ite",
        ]:
            self.assertIn(line, out.stdout, f"not reported: {line}\n{out.stdout}")

    def test_the_repository_dockerfiles_pass(self):
        out = run()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("2 Dockerfile(s) pass", out.stdout)


if __name__ == "__main__":
    unittest.main()
