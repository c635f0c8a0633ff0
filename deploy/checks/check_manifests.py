"""Renders every kustomize overlay of deploy/k8s and checks what it would apply.

  check_manifests.py [--bin-dir DIR] [FILE.yaml ...]

1. Render: `kubectl kustomize` (the real kustomize inside kubectl) on each overlay.
2. Schema: every object against the Kubernetes OpenAPI schemas of two recent versions, strict
   (unknown fields are errors), with kubernetes-validate.
3. Policy: what this project promises of its pods (no root, read-only root filesystem, no
   privilege escalation, resources, probes on the gRPC health service that agree with
   start-up, workers reachable from the scheduler only, a disruption budget for the workers).
4. Flags: with --bin-dir, every --flag the pods pass to ite-scheduler / ite-worker is one the
   built binary knows (a flag it rejects would crash-loop the pods).
Files given on the command line are checked (steps 2-4) instead of the overlays. Exits 1 and
prints every problem when any check fails.
"""

import argparse
import pathlib
import re
import shutil
import subprocess
import sys

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
K8S_VERSIONS = ["1.36.0", "1.37.0"]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def kubectl():
    beside = pathlib.Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        sys.exit("check_manifests: kubectl not found (scripts/setup.sh installs it in .venv)")
    return found


def render(overlay):
    out = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        return None, [f"{overlay.name}: kustomize failed: {out.stderr.strip()}"]
    return [d for d in yaml.safe_load_all(out.stdout) if d], []


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def check_schema(objs, where):
    problems = []
    for obj in objs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problems.append(f"{where}: {name_of(obj)} invalid for {version} at {path}: "
                                f"{e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{where}: {name_of(obj)}: no {version} schema for this kind")
    return problems


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_container(c, where, main):
    problems = []
    sc = c.get("securityContext", {})
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("privileged"):
        problems.append(f"{where}: privileged")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: capabilities do not drop ALL")
    if sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
        problems.append(f"{where}: runs as root")
    res = c.get("resources", {})
    for key in ("cpu", "memory"):
        if key not in res.get("requests", {}):
            problems.append(f"{where}: no {key} request")
    if "memory" not in res.get("limits", {}):
        problems.append(f"{where}: no memory limit")
    if not main:
        return problems
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = c.get(probe)
        if spec is None:
            problems.append(f"{where}: no {probe}")
            continue
        grpc = spec.get("grpc")
        if grpc is None:
            problems.append(f"{where}: {probe} is not on the gRPC health service")
            continue
        if grpc.get("port") not in ports.values():
            problems.append(f"{where}: {probe} port {grpc.get('port')} is no container port")
    # Liveness asks the "liveness" health service, SERVING while the process waits for
    # workers or drains; the unnamed one is NOT_SERVING then, and would get the pod killed.
    live = c.get("livenessProbe", {}).get("grpc", {})
    if live and live.get("service") != "liveness":
        problems.append(f"{where}: livenessProbe must ask the 'liveness' health service")
    ready = c.get("readinessProbe", {}).get("grpc", {})
    if ready and ready.get("service", "") != "":
        problems.append(f"{where}: readinessProbe must ask the unnamed health service")
    return problems


def check_policy(objs, where):
    problems = []
    pods = {}
    for obj in objs:
        if obj.get("kind") not in WORKLOADS:
            continue
        name = name_of(obj)
        tmpl = obj["spec"]["template"]
        spec = tmpl["spec"]
        pods[name] = tmpl.get("metadata", {}).get("labels", {})
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{where}: {name}: pod securityContext runAsNonRoot is not true")
        if psc.get("runAsUser", 0) == 0:
            problems.append(f"{where}: {name}: pod runs as uid 0 (or sets no runAsUser)")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: {name}: no RuntimeDefault seccomp profile")
        if "terminationGracePeriodSeconds" not in spec:
            problems.append(f"{where}: {name}: no terminationGracePeriodSeconds (the drain)")
        for c in spec.get("initContainers", []):
            problems += check_container(c, f"{where}: {name} init {c['name']}", main=False)
        for c in spec.get("containers", []):
            problems += check_container(c, f"{where}: {name} {c['name']}", main=True)
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    budgets = [o for o in objs if o.get("kind") == "PodDisruptionBudget"]
    for name, labels in pods.items():
        if labels.get("app.kubernetes.io/component") != "worker":
            continue
        covering = [p for p in policies if labels_match(p["spec"]["podSelector"], labels)]
        if not covering:
            problems.append(f"{where}: {name}: no NetworkPolicy selects the worker pods")
        for p in covering:
            for rule in p["spec"].get("ingress", []):
                sources = rule.get("from", [])
                only_scheduler = sources and all(
                    s.get("podSelector", {}).get("matchLabels", {}).get(
                        "app.kubernetes.io/component") == "scheduler" for s in sources)
                if not only_scheduler:
                    problems.append(f"{where}: {name_of(p)} lets more than the scheduler in")
        if not any(labels_match(b["spec"]["selector"], labels) for b in budgets):
            problems.append(f"{where}: {name}: no PodDisruptionBudget for the workers")
    return problems


# Flags the pods pass: in container args and in the *_FLAGS values of ConfigMaps.
FLAG_RE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def used_flags(objs):
    used = {"ite-scheduler": set(), "ite-worker": set()}
    configs = {}
    for obj in objs:
        if obj.get("kind") == "ConfigMap":
            configs.update(obj.get("data", {}))
    for obj in objs:
        if obj.get("kind") not in WORKLOADS:
            continue
        for c in obj["spec"]["template"]["spec"].get("containers", []):
            line = " ".join(c.get("command", []) + c.get("args", []))
            for binary in used:
                if binary in line:
                    used[binary].update(FLAG_RE.findall(line.split(binary, 1)[1]))
    used["ite-scheduler"].update(FLAG_RE.findall(configs.get("SCHEDULER_FLAGS", "")))
    used["ite-worker"].update(FLAG_RE.findall(configs.get("WORKER_FLAGS", "")))
    return used


def check_flags(objs, where, bin_dir):
    problems = []
    for binary, flags in used_flags(objs).items():
        if not (bin_dir / binary).exists():
            problems.append(f"{where}: {bin_dir / binary} is not built")
            continue
        out = subprocess.run([str(bin_dir / binary), "--help"], capture_output=True, text=True)
        known = set(FLAG_RE.findall(out.stdout))
        if out.returncode != 0 or not known:
            problems.append(f"{where}: {binary} --help failed: {out.stderr.strip()}")
            continue
        for flag in sorted(flags - known):
            problems.append(f"{where}: {binary} has no flag {flag}")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", type=pathlib.Path)
    parser.add_argument("files", nargs="*", type=pathlib.Path)
    args = parser.parse_args()
    sets, problems = [], []
    if args.files:
        for f in args.files:
            sets.append((f.name, [d for d in yaml.safe_load_all(f.read_text()) if d]))
    else:
        overlays = sorted(p for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())
        if not overlays:
            problems.append(f"no overlays under {OVERLAYS}")
        for overlay in overlays:
            objs, errs = render(overlay)
            problems += errs
            if objs is not None:
                sets.append((overlay.name, objs))
    for where, objs in sets:
        problems += check_schema(objs, where)
        problems += check_policy(objs, where)
        if args.bin_dir:
            problems += check_flags(objs, where, args.bin_dir)
        print(f"check_manifests: {where}: {len(objs)} objects checked", file=sys.stderr)
    for p in problems:
        print(p)
    if problems:
        print(f"check_manifests: {len(problems)} problem(s)", file=sys.stderr)
        sys.exit(1)
    print(f"check_manifests: {len(sets)} set(s) pass schema ({', '.join(K8S_VERSIONS)}) and "
          "policy checks" + (" and the binaries' flags" if args.bin_dir else ""))


if __name__ == "__main__":
    main()
