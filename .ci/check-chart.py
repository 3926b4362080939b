#!/usr/bin/env python3
"""Checks the Helm chart charts/sentry with Helm's own engine.

    python .ci/check-chart.py [--chart DIR] [--manifest FILE] [--kubernetes-version 1.29.0 ...] [--out DIR]

Run by .ci/lint-packaging in its virtualenv, which has helm-python-sdk (Helm's Go SDK, v4,
built into a shared library and called through ctypes: the same template engine, schema
validation and linter as the helm binary), kubernetes-validate and PyYAML.

For the default values, the my-values.yaml the README shows, and every variant in
charts/sentry/ci/*-values.yaml:
  - `helm lint --strict` for each Kubernetes version: no error, no warning (the only info
    allowed is "icon is recommended": the project has no icon);
  - `helm template`: every rendered object is written to DIR/<variant>.yaml and validated by
    `kubernetes-validate --strict` for each Kubernetes version;
  - what must hold in every render (Forbid, the hardened pod, no cluster-wide RBAC, the
    state Role naming exactly the state ConfigMaps, --state agreeing with global.state, the
    ssh key read-only...) and what the variant is there for (shards, ssh, Tekton, ...);
  - NOTES.txt renders and tells how to read the state.
Then: the default render agrees with k8s-cronjob.yaml object by object, and values that must
be refused (a misspelt key, a wildcard verb, ...) are refused by `helm template` and `helm lint`.

Exits non-zero if anything fails; every check runs either way.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import subprocess
import sys
import tempfile
from typing import Any, Callable

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Set from the command line in main().
CHART = ROOT / "charts" / "sentry"
MANIFEST = ROOT / "k8s-cronjob.yaml"
NAMESPACE = "sentry-system"
# Helm's lint findings: 1 info, 2 warning, 3 error (0 unknown).
INFO = 1
ALLOWED_INFO = {"icon is recommended"}
# What the chart adds that k8s-cronjob.yaml has not, and that says nothing about the objects'
# behaviour: Helm's recommended labels, and keeping the state ConfigMaps on `helm uninstall`.
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
HELM_ANNOTATIONS = {"helm.sh/resource-policy"}


class Failure(Exception):
    pass


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


# ---------------------------------------------------------------------------------------
# Rendering


def render(values: dict[str, Any], release: str = "sentry", namespace: str = NAMESPACE) -> tuple[list[dict], str]:
    """The objects `helm template` renders (in template order) and the rendered NOTES.txt."""
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects: list[dict] = []
    notes = ""
    for path in sorted(files):
        text = files[path]
        name = path.rsplit("/", 1)[-1]
        if name == "NOTES.txt":
            notes = text
            continue
        if name.startswith("_"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            ensure(isinstance(doc, dict), f"{path}: a document that is not a mapping: {doc!r}")
            doc["__template__"] = path
            objects.append(doc)
    return objects, notes


def key(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj.get("kind", "?"), meta.get("namespace", ""), meta.get("name", "?")


def describe(k: tuple[str, str, str]) -> str:
    kind, namespace, name = k
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


def clean(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "__template__"}


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    ensure(len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def container(objects: list[dict]) -> dict:
    pod = pod_spec(objects)
    ensure(len(pod["containers"]) == 1, "one container")
    return pod["containers"][0]


def pod_spec(objects: list[dict]) -> dict:
    return one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env_of(objects: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in container(objects).get("env", [])}


def config_of(objects: list[dict]) -> dict:
    maps = [o for o in by_kind(objects, "ConfigMap") if "sentry.yaml" in (o.get("data") or {})]
    ensure(len(maps) == 1, f"one ConfigMap holding sentry.yaml, found {len(maps)}")
    config = yaml.safe_load(maps[0]["data"]["sentry.yaml"])
    ensure(isinstance(config, dict), "sentry.yaml is a mapping")
    return config


# ---------------------------------------------------------------------------------------
# What every render must satisfy


def check_invariants(objects: list[dict], notes: str, release_namespace: str) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        ensure(obj.get("apiVersion") and obj.get("kind"), f"{obj['__template__']}: apiVersion and kind")
        k = key(obj)
        ensure(k not in seen, f"{describe(k)} rendered twice")
        seen.add(k)
        ensure(obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"), f"{describe(k)}: nothing cluster-wide")
        if obj["kind"] != "Namespace":
            ensure(obj["metadata"].get("namespace"), f"{describe(k)}: an explicit namespace (for helm template | kubectl apply)")
        ensure(obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "sentry", f"{describe(k)}: app.kubernetes.io/name")

    cron = one(objects, "CronJob")
    spec = cron["spec"]
    ensure(spec.get("concurrencyPolicy") == "Forbid", "CronJob concurrencyPolicy Forbid")
    job = spec["jobTemplate"]["spec"]
    ensure(job.get("activeDeadlineSeconds", 0) > 0, "the Job has a deadline")
    pod = pod_spec(objects)
    ensure(pod.get("restartPolicy") == "Never", "restartPolicy Never")
    psc = pod.get("securityContext", {})
    ensure(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0, "pod: non-root")
    ensure(psc.get("seccompProfile") == {"type": "RuntimeDefault"}, "pod: seccomp RuntimeDefault")
    c = container(objects)
    csc = c.get("securityContext", {})
    ensure(csc.get("runAsNonRoot") is True, "container: non-root")
    ensure(csc.get("readOnlyRootFilesystem") is True, "container: read-only root filesystem")
    ensure(csc.get("allowPrivilegeEscalation") is False, "container: no privilege escalation")
    ensure(csc.get("capabilities") == {"drop": ["ALL"]}, "container: all capabilities dropped")
    ensure(csc.get("seccompProfile") == {"type": "RuntimeDefault"}, "container: seccomp RuntimeDefault")
    ensure(c.get("resources", {}).get("limits", {}).get("memory"), "container: a memory limit")
    for m in c.get("volumeMounts", []):
        ensure(m["mountPath"] == "/tmp/sentry" or m.get("readOnly") is True, f"{m['mountPath']} mounted read-only")

    # The state: --state, global.state, the state ConfigMaps and the Role agree.
    args = c["args"]
    ensure(args[:2] == ["poll", "--once"] and "--state" in args, f"args: {args}")
    location = args[args.index("--state") + 1]
    config = config_of(objects)
    ensure(config.get("global", {}).get("state") == location, f"global.state {config.get('global', {}).get('state')!r} == --state {location!r}")
    ensure(location.startswith("configmap:"), f"--state {location} is a ConfigMap")
    shards = job.get("completions", 1) if job.get("completionMode") == "Indexed" else 1
    name = location.removeprefix("configmap:")
    expected = [name.replace("{shard}", str(i)) for i in range(shards)] if shards > 1 else [name]
    ensure(("{shard}" in name) == (shards > 1), f"{{shard}} in --state exactly when sharded: {location}")
    state_maps = [o["metadata"]["name"] for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] in expected]
    ensure(sorted(state_maps) == sorted(expected), f"state ConfigMaps {state_maps} == {expected}")
    for o in by_kind(objects, "ConfigMap"):
        if o["metadata"]["name"] in expected:
            ensure(o["metadata"]["namespace"] == release_namespace, "state ConfigMaps in the release namespace")
    sa = pod["serviceAccountName"]
    state_role = one(objects, "Role", cron["metadata"]["name"] + "-state")
    named = [r for r in state_role["rules"] if r.get("resourceNames")]
    ensure(len(named) == 1 and sorted(named[0]["resourceNames"]) == sorted(expected), f"state Role limited to {expected}: {named}")
    ensure(set(named[0]["verbs"]) == {"get", "update", "patch"}, f"state Role verbs {named[0]['verbs']}")
    unnamed = [r for r in state_role["rules"] if not r.get("resourceNames")]
    ensure(all(r["verbs"] == ["create"] for r in unnamed), "the state Role's only rule without names is create")

    # Every Role is bound to sentry's service account in its own namespace; no wildcard.
    for role in by_kind(objects, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                ensure("*" not in rule.get(field, []), f"Role {role['metadata']['name']}: no wildcard in {field}")
        binding = one(
            [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["namespace"] == role["metadata"]["namespace"]],
            "RoleBinding",
            role["metadata"]["name"],
        )
        ensure(binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}, "roleRef")
        ensure(binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": release_namespace}], f"RoleBinding {role['metadata']['name']} subjects")

    # The tokens: every secretKeyRef names one Secret; if the chart creates it, the required keys are in it.
    refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    secrets = {r["name"] for r in refs}
    ensure(len(secrets) <= 1, f"tokens from one Secret: {secrets}")
    for s in by_kind(objects, "Secret"):
        ensure(s["metadata"]["name"] in secrets, f"Secret {s['metadata']['name']} is used")
        for r in refs:
            ensure(r.get("optional") or r["key"] in s.get("stringData", {}), f"required key {r['key']} in the Secret")

    # NOTES.txt: how to watch the jobs and read the state.
    ensure("get jobs" in notes and "--watch" in notes, "NOTES.txt: watching the jobs")
    ensure("{.binaryData.state\\.json\\.gz}' | base64 -d | gunzip | jq" in notes, "NOTES.txt: reading the state")
    ensure(f"get cm {expected[0] if shards == 1 else name.replace('{shard}', '$i')} " in notes, "NOTES.txt: the right state ConfigMap")


# ---------------------------------------------------------------------------------------
# What each variant is there for


def expect_default(objects: list[dict], notes: str) -> None:
    ensure(not by_kind(objects, "Namespace"), "no Namespace object unless namespace.create")
    job = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]
    ensure(job.get("backoffLimit") == 0 and "completionMode" not in job, "one plain Job, no retry")
    ensure("SENTRY_SHARD" not in env_of(objects), "no SENTRY_SHARD without shards")
    ensure("pushgateway_url" not in config_of(objects)["global"], "no Pushgateway unless set")
    ensure("GIT_SSH_COMMAND" not in env_of(objects), "no ssh unless set")
    ensure("WARNING: the Secret sentry-tokens holds placeholders (\"replace-me\") for GITHUB_TOKEN, GITLAB_TOKEN, GITEA_TOKEN:" in notes, "NOTES.txt warns about the placeholder tokens")


def expect_shards(objects: list[dict], notes: str) -> None:
    job = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]
    ensure(job.get("completionMode") == "Indexed", "an Indexed Job")
    ensure(job.get("completions") == 4 and job.get("parallelism") == 4, "completions and parallelism 4")
    ensure(job.get("backoffLimitPerIndex") == 0 and "backoffLimit" not in job, "no retry per shard, no Job-wide limit that would stop the other shards")
    ensure(env_of(objects)["SENTRY_SHARD"] == {"name": "SENTRY_SHARD", "value": "auto/4"}, "SENTRY_SHARD=auto/4")
    ensure(container(objects)["args"][-1] == "configmap:shards-state-{shard}", "--state configmap:<release>-state-{shard}")
    ensure(config_of(objects)["global"]["state"] == "configmap:shards-state-{shard}", "global.state with {shard}")
    names = sorted(o["metadata"]["name"] for o in by_kind(objects, "ConfigMap") if "-state" in o["metadata"]["name"])
    ensure(names == [f"shards-state-{i}" for i in range(4)], f"four state ConfigMaps: {names}")
    ensure("for i in $(seq 0 3)" in notes and "--prefix" in notes, "NOTES.txt: every shard's state and log")


def expect_ssh(objects: list[dict], notes: str) -> None:
    pod = pod_spec(objects)
    config = [v for v in pod["volumes"] if v["name"] == "config"][0]
    sources = config["projected"]["sources"]
    secret = [s["secret"] for s in sources if "secret" in s]
    ensure(len(secret) == 1 and secret[0]["name"] == "sentry-ssh", "the ssh Secret in the config volume")
    items = {i["path"]: i for i in secret[0]["items"]}
    ensure(set(items) == {"ssh/id_ed25519", "ssh/known_hosts"}, f"key and known_hosts: {items}")
    ensure(items["ssh/id_ed25519"]["key"] == "id_ed25519" and items["ssh/known_hosts"]["key"] == "known_hosts", "the Secret's keys")
    ensure(all(i.get("mode") == 0o400 for i in items.values()), "mode 0400")
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    ensure(mounts["/etc/sentry"]["name"] == "config" and mounts["/etc/sentry"]["readOnly"] is True, "read-only at /etc/sentry(/ssh)")
    ssh = env_of(objects)["GIT_SSH_COMMAND"]["value"]
    ensure(ssh.startswith("ssh -i /etc/sentry/ssh/id_ed25519 "), f"GIT_SSH_COMMAND: {ssh}")
    for part in ("UserKnownHostsFile=/etc/sentry/ssh/known_hosts", "GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=yes", "BatchMode=yes", "IdentitiesOnly=yes"):
        ensure(part in ssh, f"GIT_SSH_COMMAND has {part}")
    ensure("git@git.example.com:web/docs.git" in json.dumps(config_of(objects)), "the ssh repository is in the config")


def expect_tekton(objects: list[dict], notes: str) -> None:
    role = one(objects, "Role", "sentry-tekton-deployer")
    ensure(role["metadata"]["namespace"] == "ci-pipelines", "the Tekton Role in its namespace")
    ensure(role["rules"] == [{"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"], "verbs": ["create", "get", "list", "watch"]}], f"PipelineRuns only: {role['rules']}")
    extra = one(objects, "Role", "sentry-docs-publisher")
    ensure(extra["metadata"]["namespace"] == "docs", "the extra Role in its namespace")
    ensure(not [r for r in by_kind(objects, "Role") if r["metadata"]["namespace"] == "tekton-pipelines"], "nothing left in tekton-pipelines")


def expect_pushgateway(objects: list[dict], notes: str) -> None:
    ensure(config_of(objects)["global"].get("pushgateway_url") == "http://pushgateway.monitoring.svc:9091", "global.pushgateway_url")


def expect_options(objects: list[dict], notes: str) -> None:
    ns = one(objects, "Namespace")
    ensure(ns["metadata"]["name"] == "options", "the Namespace is the release namespace")
    ensure(ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted", "restricted Pod Security Standard")
    ensure(not by_kind(objects, "Secret") and not by_kind(objects, "ServiceAccount"), "existing Secret and service account")
    pod = pod_spec(objects)
    ensure(pod["serviceAccountName"] == "deployer-sa", "the existing service account")
    env = env_of(objects)
    ensure(env["GITHUB_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "forge-tokens", "key": "GITHUB_TOKEN"}, "tokens from the existing Secret")
    ensure("GITLAB_TOKEN" not in env, "only the listed keys")
    ensure(env["SENTRY_LOG_LEVEL"]["value"] == "debug" and env["HTTPS_PROXY"]["value"], "logLevel and extraEnv")
    cron = one(objects, "CronJob")
    ensure(cron["metadata"]["name"] == "deployer" and cron["spec"]["suspend"] is True and cron["spec"]["timeZone"] == "Europe/Berlin", "name, suspend, timeZone")
    ensure(not [r for r in by_kind(objects, "Role") if "tekton" in r["metadata"]["name"]], "no Tekton Role")
    ensure(container(objects)["image"] == "registry.internal:5000/platform/sentry:0.1.0@sha256:" + "0" * 64, "image with a port and a digest")
    ensure("groups" not in config_of(objects), "groups: null removes the example's groups")
    ensure("WARNING" not in notes, f"no warning in NOTES.txt: {notes}")


def expect_readme(objects: list[dict], notes: str) -> None:
    ensure(not by_kind(objects, "Secret"), "the tokens stay in the Secret made with kubectl")
    ensure(env_of(objects)["GITHUB_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "sentry-tokens", "tokens from sentry-tokens")
    config = config_of(objects)
    ensure("groups" not in config and [r["name"] for r in config["repositories"]] == ["rag-service"], "the README's configuration only")


VARIANTS: dict[str, Callable[[list[dict], str], None]] = {
    "default": expect_default,
    "readme": expect_readme,
    "shards": expect_shards,
    "ssh": expect_ssh,
    "tekton": expect_tekton,
    "pushgateway": expect_pushgateway,
    "options": expect_options,
}


# Variants whose values are not in charts/sentry/ci.
BUILT_IN = {"default", "readme"}


def readme_values() -> dict[str, Any]:
    """The my-values.yaml of the README's "Install with Helm": it must work as shown."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Install with Helm"):]
    section = section[: section.index("\n### ", 1)]
    start = section.index("```yaml\n") + len("```yaml\n")
    return yaml.safe_load(section[start : section.index("```", start)])


def variant_values(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    if name == "readme":
        return readme_values()
    values = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    ensure(isinstance(values, dict), f"ci/{name}-values.yaml is a mapping")
    return values


def release_of(name: str) -> tuple[str, str]:
    """Release name and namespace a variant is rendered with."""
    return ("sentry", NAMESPACE) if name in ("default", "readme", "ssh", "tekton", "pushgateway") else (name, name)


# ---------------------------------------------------------------------------------------
# The default render and k8s-cronjob.yaml


def normalize(obj: dict) -> dict:
    obj = copy.deepcopy(clean(obj))
    metas = [obj.get("metadata")]
    if obj.get("kind") == "CronJob":
        jt = obj["spec"]["jobTemplate"]
        metas += [jt.get("metadata"), jt["spec"]["template"].get("metadata")]
    for meta in metas:
        if not isinstance(meta, dict):
            continue
        for field, ignored in (("labels", HELM_LABELS), ("annotations", HELM_ANNOTATIONS)):
            kept = {k: v for k, v in (meta.get(field) or {}).items() if k not in ignored}
            if kept:
                meta[field] = kept
            else:
                meta.pop(field, None)
    # The configuration is compared as data: the manifest's text has comments and its own key
    # order, the chart's is toYaml of the values.
    if obj.get("kind") == "ConfigMap" and "sentry.yaml" in (obj.get("data") or {}):
        obj["data"]["sentry.yaml"] = yaml.safe_load(obj["data"]["sentry.yaml"])
    return obj


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{p}: only in the chart: {json.dumps(b[k])[:200]}")
            elif k not in b:
                out.append(f"{p}: only in {MANIFEST.name}: {json.dumps(a[k])[:200]}")
            else:
                out += differences(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    if a != b or type(a) is not type(b):
        return [f"{path}: {MANIFEST.name} {json.dumps(a)[:200]} != chart {json.dumps(b)[:200]}"]
    return []


def check_manifest_agrees() -> None:
    manifest = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]
    rendered, _ = render({})
    # The only object the default render has not: k8s-cronjob.yaml creates its namespace,
    # the chart does that only with namespace.create (Helm keeps its release record in the
    # release namespace, so `helm install` needs it to exist first).
    with_namespace, _ = render({"namespace": {"create": True}})
    rendered += by_kind(with_namespace, "Namespace")
    want = {key(o): normalize(o) for o in manifest}
    got = {key(o): normalize(o) for o in rendered}
    ensure(len(want) == len(manifest), f"{MANIFEST.name}: an object twice")
    problems = []
    for k in sorted(set(want) | set(got)):
        if k not in got:
            problems.append(f"{describe(k)}: in {MANIFEST.name}, not rendered by the chart")
        elif k not in want:
            problems.append(f"{describe(k)}: rendered by the chart, not in {MANIFEST.name}")
        else:
            problems += [f"{describe(k)}: {d}" for d in differences(want[k], got[k])]
    ensure(not problems, "the default render and k8s-cronjob.yaml differ:\n  " + "\n  ".join(problems))
    print(f"    {len(want)} objects agree: " + ", ".join(describe(k) for k in want))


# ---------------------------------------------------------------------------------------
# Values that must be refused


# Refused by values.schema.json: `helm lint --strict` reports them too.
REFUSED_BY_SCHEMA: list[tuple[str, dict[str, Any]]] = [
    ("a misspelt top-level key", {"shard": 4}),
    ("a misspelt nested key", {"ssh": {"existingSecrets": "x"}}),
    ("zero shards", {"shards": 0}),
    ("a fractional number of shards", {"shards": 2.5}),
    ("a wildcard verb", {"rbac": {"tekton": {"rules": [{"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"], "verbs": ["*"]}]}}}),
    ("a wildcard resource", {"rbac": {"extraRoles": [{"name": "x", "namespace": "y", "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]}]}}),
    ("a Role without a namespace", {"rbac": {"extraRoles": [{"name": "x", "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}]}}),
    ("a Pushgateway URL that is no URL", {"metrics": {"pushgatewayUrl": "pushgateway:9091"}}),
    ("root", {"securityContext": {"runAsUser": 0}}),
    ("an unknown log level", {"logLevel": "verbose"}),
    ("a name too long for a CronJob", {"fullnameOverride": "x" * 53}),
    ("a config without repositories", {"config": {"repositories": None}}),
    ("a Secret name that is no name", {"tokens": {"existingSecret": "Forge Tokens"}}),
    ("an existing service account without its name", {"serviceAccount": {"create": False}}),
    ("an ssh key file name that leaves /etc/sentry/ssh", {"ssh": {"existingSecret": "s", "privateKeyKey": ".."}}),
]
# Refused by the templates (`fail`, with a message saying what to do). Helm's linter renders
# in "lint mode", where `fail` is only logged, so `helm install`/`helm template` are what
# refuse these.
REFUSED_BY_TEMPLATE: list[tuple[str, dict[str, Any]]] = [
    ("two Roles of the same name", {"rbac": {"extraRoles": [{"name": "tekton-deployer", "namespace": "tekton-pipelines", "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}]}}),
    ("global.state in the config", {"config": {"global": {"state": "configmap:other"}}}),
    ("two different Pushgateways", {"metrics": {"pushgatewayUrl": "http://a:9091"}, "config": {"global": {"pushgateway_url": "http://b:9091"}}}),
    ("a required token the created Secret lacks", {"tokens": {"required": ["GITHUB_TOKEN", "BITBUCKET_TOKEN"]}}),
    ("a token both required and optional", {"tokens": {"optional": ["GITHUB_TOKEN"]}}),
]


def check_refused(values: dict[str, Any], by_schema: bool) -> None:
    try:
        render(values)
    except (helm.HelmValuesError, helm.HelmRenderError) as e:
        first = str(e).strip().splitlines()
        print(f"    helm template refuses it: {' '.join(first)[:240]}")
    else:
        raise Failure(f"helm template accepted {json.dumps(values)}")
    if by_schema:
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        ensure(any(m["severity"] == 3 for m in report["messages"]), f"helm lint --strict finds no error in {json.dumps(values)}: {report}")


# ---------------------------------------------------------------------------------------


def check_lint(values: dict[str, Any], namespace: str, kube_version: str) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=namespace, kube_version=f"v{kube_version}")
    ensure(report.get("total_charts_linted") == 1, f"one chart linted: {report}")
    findings = [m for m in report["messages"] if not (m["severity"] == INFO and m["error"] in ALLOWED_INFO)]
    ensure(not findings and not report.get("errors"), "helm lint --strict findings:\n  " + "\n  ".join(f"[{m['severity']}] {m['path']}: {m['error']}" for m in findings))


def main() -> int:
    global CHART, MANIFEST
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", type=pathlib.Path, default=CHART)
    parser.add_argument("--manifest", type=pathlib.Path, default=MANIFEST)
    parser.add_argument("--kubernetes-version", action="append", dest="versions", default=[])
    parser.add_argument("--out", type=pathlib.Path, help="where the rendered variants are written (default: a temporary directory)")
    args = parser.parse_args()
    CHART, MANIFEST = args.chart.resolve(), args.manifest.resolve()
    versions = args.versions or ["1.29.0", "1.37.0"]
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="sentry-chart-"))
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        stale.unlink()
    print(f"==> Helm {helm.helm_sdk_version()} (helm-python-sdk, libhelm_c {helm.helm_c_version()}); rendered objects in {out}")

    passed, failed = 0, []

    def check(name: str, fn: Callable[..., None], *a: Any) -> None:
        nonlocal passed
        print(f"==> {name}")
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001 - every check runs, whatever one of them raises
            detail = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
            print(f"==> {name}: FAILED\n    {detail}")
            failed.append(name)
        else:
            print(f"==> {name}: ok")
            passed += 1

    found = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
    unknown = sorted(set(found) - set(VARIANTS))
    missing = sorted(set(VARIANTS) - set(found) - BUILT_IN)

    def check_variants_known() -> None:
        ensure(not unknown, f"charts/sentry/ci has variants this script does not check: {unknown} (add them to VARIANTS)")
        ensure(not missing, f"variants without a values file in charts/sentry/ci: {missing}")

    check("variants: " + ", ".join(VARIANTS), check_variants_known)

    rendered_files = []
    for name, expect in VARIANTS.items():
        if name not in BUILT_IN and name not in found:
            continue
        release, namespace = release_of(name)
        label = f"{name} (release {release}, namespace {namespace})"
        try:
            values = variant_values(name)
        except (Failure, OSError, yaml.YAMLError) as e:
            print(f"==> {label}: FAILED\n    {e}")
            failed.append(label)
            continue
        for version in versions:
            check(f"helm lint --strict {label}, Kubernetes {version}", check_lint, values, namespace, version)

        def check_render(values: dict = values, release: str = release, namespace: str = namespace, name: str = name, expect: Callable = expect) -> None:
            objects, notes = render(values, release, namespace)
            path = out / f"{name}.yaml"
            path.write_text("".join("---\n" + yaml.safe_dump(clean(o), sort_keys=False) for o in objects))
            rendered_files.append(path)
            print(f"    {len(objects)} objects: " + ", ".join(describe(key(o)) for o in objects))
            check_invariants(objects, notes, namespace)
            expect(objects, notes)

        check(f"helm template {label}", check_render)

    def validate(version: str) -> None:
        ensure(rendered_files, "nothing rendered")
        result = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version", version, *map(str, rendered_files)],
            capture_output=True, text=True, check=False,
        )
        lines = [line for line in (result.stdout + result.stderr).splitlines() if "passed for resource" not in line]
        passed_count = (result.stdout + result.stderr).count("passed for resource")
        print(f"    {passed_count} objects passed")
        ensure(result.returncode == 0 and not lines, "\n    ".join(lines) or f"exit code {result.returncode}")

    for version in versions:
        check(f"kubernetes-validate --strict of every rendered object, Kubernetes {version}", validate, version)

    check(f"the default render agrees with {MANIFEST.name}", check_manifest_agrees)

    for description, values in REFUSED_BY_SCHEMA:
        check(f"refused by the schema: {description}", check_refused, values, True)
    for description, values in REFUSED_BY_TEMPLATE:
        check(f"refused by the templates: {description}", check_refused, values, False)

    if failed:
        print("==> failed:\n    " + "\n    ".join(failed))
    print(f"check-chart: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
