"""The manifest checks reject what they are meant to: each bad object in testdata is caught, by
the check and with the message that names it, and the repository's overlays pass."""

import os
import pathlib
import subprocess
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
CHECK = HERE / "check_manifests.py"
BAD = HERE / "testdata" / "bad_manifests.yaml"


def run(*args):
    return subprocess.run([sys.executable, str(CHECK), *map(str, args)], capture_output=True,
                          text=True)


class CheckManifestsTest(unittest.TestCase):
    def test_bad_manifests_fail_with_every_problem_named(self):
        out = run(BAD)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        expected = [
            # strict schema validation, for both Kubernetes versions
            "Deployment/unknown-field invalid for 1.36.0",
            "Deployment/unknown-field invalid for 1.37.0",
            # policy
            "StatefulSet/root-worker: pod securityContext runAsNonRoot is not true",
            "StatefulSet/root-worker: pod runs as uid 0",
            "StatefulSet/root-worker: no RuntimeDefault seccomp profile",
            "StatefulSet/root-worker: no terminationGracePeriodSeconds",
            "root-worker worker: allowPrivilegeEscalation is not false",
            "root-worker worker: readOnlyRootFilesystem is not true",
            "root-worker worker: capabilities do not drop ALL",
            "root-worker worker: no cpu request",
            "root-worker worker: no memory limit",
            "root-worker worker: no startupProbe",
            "root-worker worker: no readinessProbe",
            "root-worker worker: livenessProbe port 50052 is no container port",
            "root-worker worker: livenessProbe must ask the 'liveness' health service",
            "StatefulSet/root-worker: no NetworkPolicy selects the worker pods",
            "StatefulSet/root-worker: no PodDisruptionBudget for the workers",
        ]
        for line in expected:
            self.assertIn(line, out.stdout, f"not reported: {line}\n{out.stdout}")
        # The valid parts of the first object raise nothing but the unknown field.
        unknown = [l for l in out.stdout.splitlines() if "unknown-field" in l]
        self.assertEqual(len(unknown), 2, unknown)
        self.assertIn("imagePullPolicyy", unknown[0])

    def test_the_overlays_pass(self):
        out = run()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("2 set(s) pass", out.stdout)

    def test_a_flag_the_binary_lacks_is_caught(self):
        bin_dir = pathlib.Path(os.environ.get("ITE_BIN_DIR", ""))
        if not (bin_dir / "ite-worker").exists():
            self.skipTest("ITE_BIN_DIR has no ite-worker (run through ctest after a build)")
        out = run("--bin-dir", bin_dir, BAD)
        self.assertEqual(out.returncode, 1)
        self.assertIn("ite-worker has no flag --no-such-flag", out.stdout)
        self.assertNotIn("has no flag --device", out.stdout)


if __name__ == "__main__":
    unittest.main()
