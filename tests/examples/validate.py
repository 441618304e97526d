#!/usr/bin/env python3
"""Validates examples/: every Kubernetes object against the Kubernetes OpenAPI schemas (PyPI
kubernetes-validate, strict: unknown fields fail), Argo Rollouts objects by their pod and job
templates (validated as a Deployment and a Job) plus a structural check of the Argo fields they
use, kustomizations by the files they name, the nginx configs with `nginx -t`, the CI files
against the GitHub Actions and GitLab CI schemas (check-jsonschema's vendored copies), and every
deskew command line in them against the real binary's argument parser.

usage: validate.py DESKEW_BINARY      exit 0 when everything is valid; each problem on stderr
"""

import copy
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
K8S_VERSION = "1.30.0"
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def k8s_valid(doc, where):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return True
    except kubernetes_validate.ValidationError as e:
        problem(where, f"{doc.get('kind')}: {e.message} at {list(e.path)}")
    except Exception as e:  # an unknown kind, a schema that cannot load
        problem(where, f"{doc.get('kind')}: {e}")
    return False


def only_keys(obj, allowed, where):
    extra = set(obj) - set(allowed)
    if extra:
        problem(where, f"unknown fields {sorted(extra)} (allowed: {sorted(allowed)})")


def check_rollout(doc, where, templates):
    spec = doc["spec"]
    only_keys(spec, {"replicas", "revisionHistoryLimit", "selector", "template", "strategy", "minReadySeconds", "workloadRef"}, where)
    as_deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": doc["metadata"],
                     "spec": {k: spec[k] for k in ("replicas", "revisionHistoryLimit", "selector", "template") if k in spec}}
    k8s_valid(as_deployment, f"{where} (pod template)")
    canary = spec["strategy"]["canary"]
    only_keys(canary, {"maxSurge", "maxUnavailable", "analysis", "steps", "canaryService", "stableService"}, f"{where} canary")
    for step in canary.get("steps", []):
        only_keys(step, {"setWeight", "pause", "analysis"}, f"{where} step")
    analysis = canary.get("analysis", {})
    only_keys(analysis, {"templates", "startingStep", "args"}, f"{where} analysis")
    for t in analysis.get("templates", []):
        if t["templateName"] not in templates:
            problem(where, f"analysis template `{t['templateName']}` is not defined in examples/kubernetes/argo")
            continue
        defined = {a["name"] for a in templates[t["templateName"]]["spec"].get("args", [])}
        required = {a["name"] for a in templates[t["templateName"]]["spec"].get("args", []) if "value" not in a}
        given = {a["name"] for a in analysis.get("args", [])}
        if given - defined:
            problem(where, f"args {sorted(given - defined)} are not arguments of `{t['templateName']}`")
        if required - given:
            problem(where, f"required args {sorted(required - given)} of `{t['templateName']}` are not given")


def check_analysis_template(doc, where):
    spec = doc["spec"]
    only_keys(spec, {"args", "metrics", "dryRun", "measurementRetention"}, where)
    args = {a["name"] for a in spec.get("args", [])}
    for m in spec["metrics"]:
        only_keys(m, {"name", "count", "interval", "failureLimit", "successCondition", "failureCondition", "provider", "initialDelay"}, f"{where} metric")
        job = m["provider"]["job"]
        only_keys(m["provider"], {"job"}, f"{where} provider")
        k8s_valid({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": m["name"]}, "spec": job["spec"]}, f"{where} (job)")
        for ref in re.findall(r"\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}", yaml.safe_dump(job)):
            if ref not in args:
                problem(where, f"`{{{{args.{ref}}}}}` names no argument of the template")


def check_kustomization(doc, path):
    for r in doc.get("resources", []):
        if not (path.parent / r).exists():
            problem(path, f"resource `{r}` does not exist")
    for gen in doc.get("configMapGenerator", []):
        for f in gen.get("files", []):
            if not (path.parent / f.split("=")[-1]).exists():
                problem(path, f"file `{f}` does not exist")


# What the placeholders of the examples stand for when their command lines are parsed.
SAMPLES = {
    "STORE": "s3://assets-bucket/web", "GITHUB_SHA": "3f2a1c9b0d1e", "CI_COMMIT_SHA": "3f2a1c9b0d1e",
    "APP_URL": "https://web.example/", "vars.APP_URL": "https://web.example/", "url": "https://web.example/",
    "START_AT": "2026-11-29T10:00:00Z", "ROLLOUT_DONE_URL": "http://signal.example/done", "JOB_COMPLETION_INDEX": "0",
}


def substitute(text, defaults):
    values = {**SAMPLES, **defaults}
    text = re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: values.get(m.group(1), "x"), text)
    text = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: values.get(m.group(1), "x"), text)
    text = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), text)  # Kubernetes' $(VAR)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


def deskew_commands():
    """Every deskew command line in the examples, as argument lists, placeholders filled in."""
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            defaults = {a["name"]: a["value"] for a in (doc or {}).get("spec", {}).get("args", []) if isinstance(a, dict) and "value" in a}
            for c in find_containers(doc):
                if "deskew" in c.get("image", "") and "args" in c:
                    yield path, [substitute(a, defaults) for a in c["args"]]
    for path in sorted((EXAMPLES / "ci").glob("*.yml")):
        text = re.sub(r"\\?\n\s*", " ", path.read_text())
        for line in re.findall(r"(?:^|[\s>-])(deskew (?:publish|probe|gc|verify|releases)[^\n]*?)(?= -- | --$| - |$)", text):
            yield path, shlex.split(substitute(line, {}))[1:]


def find_containers(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("containers", "initContainers") and isinstance(v, list):
                yield from v
            else:
                yield from find_containers(v)
    elif isinstance(node, list):
        for v in node:
            yield from find_containers(v)


def check_command_lines(deskew):
    n = 0
    for path, args in deskew_commands():
        n += 1
        # `--help` after the options makes clap parse them all, then stop: a misspelt option
        # or a bad value fails, nothing runs.
        out = subprocess.run([deskew, *args, "--help"], capture_output=True, text=True)
        if out.returncode != 0:
            problem(path, f"`deskew {' '.join(args)}` does not parse: {out.stderr.strip().splitlines()[0]}")
    if n < 10:
        problem("examples", f"only {n} deskew command lines found: the extraction is broken")
    return n


def check_nginx():
    nginx = "/usr/sbin/nginx"
    for conf in sorted(EXAMPLES.rglob("nginx.conf")):
        with tempfile.TemporaryDirectory() as tmp:
            body = conf.read_text().replace("kube-dns.kube-system.svc.cluster.local", "127.0.0.1")
            (pathlib.Path(tmp) / "site.conf").write_text(body)
            (pathlib.Path(tmp) / "nginx.conf").write_text(
                f"pid {tmp}/nginx.pid; error_log stderr; events {{}} http {{ access_log off; include {tmp}/site.conf; }}\n")
            out = subprocess.run([nginx, "-t", "-p", tmp, "-c", f"{tmp}/nginx.conf"], capture_output=True, text=True)
            if out.returncode != 0:
                problem(conf, out.stderr.strip())


def check_ci():
    for path, schema in [(EXAMPLES / "ci/github-actions.yml", "vendor.github-workflows"), (EXAMPLES / "ci/gitlab-ci.yml", "vendor.gitlab-ci")]:
        out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            problem(path, out.stdout + out.stderr)


def self_check():
    """The validators must be able to fail: a misspelt field is caught."""
    bad = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "x", "imagePullPolicyy": "Always"}]}}}}
    before = len(problems)
    k8s_valid(copy.deepcopy(bad), "self-check")
    if len(problems) == before:
        problem("self-check", "kubernetes-validate accepted an unknown field: the check proves nothing")
    else:
        problems.pop()


def main():
    deskew = sys.argv[1]
    self_check()
    docs = [(p, d) for p in sorted(EXAMPLES.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    templates = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "AnalysisTemplate"}
    counted = 0
    for path, doc in docs:
        where = f"{path.relative_to(ROOT)} {doc.get('kind')}/{doc.get('metadata', {}).get('name', '')}"
        kind, api = doc.get("kind"), doc.get("apiVersion", "")
        if kind == "Kustomization":
            check_kustomization(doc, path)
        elif kind == "Rollout" and api.startswith("argoproj.io/"):
            check_rollout(doc, where, templates)
        elif kind == "AnalysisTemplate" and api.startswith("argoproj.io/"):
            check_analysis_template(doc, where)
        else:
            k8s_valid(doc, where)
        counted += 1
    commands = check_command_lines(deskew)
    check_nginx()
    check_ci()
    for p in problems:
        print(p, file=sys.stderr)
    print(f"examples: {counted} manifests, 2 CI files, nginx configs and {commands} deskew command lines checked; {len(problems)} problems", file=sys.stderr)
    sys.exit(1 if problems else 0)


main()
