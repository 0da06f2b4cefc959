#!/usr/bin/env bash
# Static checks of deploy/ (no container engine or cluster needed):
#   - every YAML file under deploy/ parses;
#   - compose.yaml only references services, volumes and host names it defines;
#   - every LECTERN_* variable named anywhere in deploy/ is a real `lectern serve` setting
#     (from `lectern serve --help`), and enumerated/numeric settings have valid values;
#   - the Dockerfile builds a package that exists (`-p lectern`, binary `lectern`), copies
#     paths that exist and are not excluded by .dockerignore, copies every workspace
#     member's manifest into its dependency layer and the sources lectern needs, and uses
#     the workspace's Rust version;
#   - that dependency layer works: the manifests plus deploy/stub-workspace.sh's
#     placeholders load as a workspace that resolves with Cargo.lock (`cargo tree --locked`);
#   - the cross-file numbers agree: grace periods above LECTERN_SHUTDOWN_TIMEOUT_MS, the
#     ingress body limit above LECTERN_MAX_UPLOAD_BYTES; the kustomization's resources and
#     the names the Deployment refers to exist;
#   - if kubectl is installed, `kubectl kustomize deploy/kubernetes` renders.
# The binary: $LECTERN_BIN, default target/debug/lectern. PyYAML: the system's, or a
# throwaway virtual environment under .cache/ (installed from PyPI once).
# Exits non-zero with one line per problem.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() { echo "check-deploy: $*" >&2; exit 1; }

bin="${LECTERN_BIN:-target/debug/lectern}"
[ -x "$bin" ] || fail "no lectern binary at '$bin' (build it with 'cargo build -p lectern' or set LECTERN_BIN)"
command -v python3 >/dev/null || fail "python3 is needed"

# A Python with PyYAML.
python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  venv="$root/.cache/check-deploy-venv"
  if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    echo "check-deploy: installing PyYAML into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "cannot create a virtual environment (Debian: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pyyaml ||
      fail "cannot install pyyaml from the Python package index"
  fi
  python="$venv/bin/python"
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

"$bin" serve --help >"$scratch/serve-help.txt" 2>&1 || fail "'$bin serve --help' failed: $(head -c 500 "$scratch/serve-help.txt")"

# Everything that can be checked by reading the files: prints one line per problem.
if ! "$python" - "$root" "$scratch/serve-help.txt" >"$scratch/report.txt" <<'PYEOF'; then
import fnmatch, os, re, sys, tomllib, urllib.parse
import yaml

root, help_path = sys.argv[1], sys.argv[2]
deploy = os.path.join(root, "deploy")
problems = []
def problem(msg): problems.append(msg)
def rel(p): return os.path.relpath(p, root)

# --- `lectern serve --help`: the settings, their possible values and numeric defaults ------
help_text = open(help_path, encoding="utf-8").read()
blocks = re.split(r"\n(?=\s{2,6}(?:-\w, )?--[a-z])", help_text)
settings = {}  # env name -> {"values": set or None, "numeric": bool}
for block in blocks:
    env = re.search(r"\[env: (LECTERN_[A-Z0-9_]+)", block)
    if not env:
        continue
    values = set(re.findall(r"^\s+- ([a-z0-9-]+):", block, re.M))
    listed = re.search(r"\[possible values: ([^\]]+)\]", block)
    if listed:
        values |= {v.strip() for v in listed.group(1).split(",")}
    if re.search(r"^\s+--[a-z0-9-]+\s*$", block, re.M):  # a flag without a value
        values |= {"true", "false"}
    default = re.search(r"\[default: ([^\]]+)\]", block)
    settings[env.group(1)] = {
        "values": values or None,
        "numeric": bool(default and default.group(1).isdigit()),
    }
if len(settings) < 10:
    problem(f"could not read the settings from `lectern serve --help` (found {len(settings)})")
# Read by the logger, not a flag (README.md: "LECTERN_LOG | info | log filter").
known = set(settings) | {"LECTERN_LOG"}

def number(value, default):
    """A setting's whole-number value (check_value reports malformed ones)."""
    return int(value) if str(value).isdigit() else default

def check_value(where, name, value):
    if name not in settings or value is None:
        return
    value = str(value)
    if "${" in value:  # compose interpolation: only known at `up`
        return
    spec = settings[name]
    if spec["values"] and value not in spec["values"]:
        problem(f"{where}: {name}={value!r} is not one of {sorted(spec['values'])}")
    if spec["numeric"] and not value.isdigit():
        problem(f"{where}: {name}={value!r} must be a whole number")
    if value == "":
        problem(f"{where}: {name} is empty (an empty value is not 'unset'; leave it out)")

# --- every file under deploy/: LECTERN_* names; YAML files parse ----------------------------
docs = {}
for dirpath, _, files in os.walk(deploy):
    for name in sorted(files):
        path = os.path.join(dirpath, name)
        try:
            text = open(path, encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for var in re.findall(r"\bLECTERN_[A-Z0-9_]*[A-Z0-9]\b", line):
                if var not in known:
                    problem(f"{rel(path)}:{lineno}: {var} is not a setting of `lectern serve`")
        if name.endswith((".yaml", ".yml")):
            try:
                docs[rel(path)] = [d for d in yaml.safe_load_all(text) if d is not None]
            except yaml.YAMLError as error:
                problem(f"{rel(path)}: does not parse as YAML: {error}")

# --- compose.yaml --------------------------------------------------------------------------
def duration_seconds(text):
    total, matched = 0.0, False
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text)):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        matched = True
    return total if matched else None

compose_docs = docs.get("deploy/compose.yaml")
if compose_docs is None:
    problem("deploy/compose.yaml is missing or empty")
else:
    compose = compose_docs[0]
    services = compose.get("services") or {}
    volumes = set((compose.get("volumes") or {}).keys())
    if "lectern" not in services:
        problem("compose.yaml: no `lectern` service")
    for name, svc in services.items():
        where = f"compose.yaml: service {name}"
        deps = svc.get("depends_on") or []
        for dep in (deps.keys() if isinstance(deps, dict) else deps):
            if dep not in services:
                problem(f"{where}: depends_on unknown service {dep!r}")
        if isinstance(deps, dict):
            for dep, spec in deps.items():
                cond = (spec or {}).get("condition")
                if cond not in (None, "service_started", "service_healthy", "service_completed_successfully"):
                    problem(f"{where}: depends_on {dep}: unknown condition {cond!r}")
                if cond == "service_healthy" and dep in services and "healthcheck" not in services[dep] and dep != "lectern":
                    problem(f"{where}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        for ref in svc.get("volumes_from") or []:
            if ref.split(":")[0] not in services:
                problem(f"{where}: volumes_from unknown service {ref!r}")
        mode = svc.get("network_mode") or ""
        if mode.startswith("service:") and mode[8:] not in services:
            problem(f"{where}: network_mode refers to unknown service {mode[8:]!r}")
        ext = (svc.get("extends") or {}).get("service")
        if ext and ext not in services:
            problem(f"{where}: extends unknown service {ext!r}")
        for vol in svc.get("volumes") or []:
            source = vol.get("source") if isinstance(vol, dict) else str(vol).split(":")[0]
            if source and not source.startswith((".", "/", "~", "$")) and source not in volumes:
                problem(f"{where}: named volume {source!r} is not declared under top-level volumes")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        for key, value in env.items():
            check_value(where, key, value)
            if isinstance(value, str) and "://" in value:
                url = urllib.parse.urlsplit(re.sub(r"\$\{[^}]*\}", "x", value))
                host = url.hostname or ""
                if host and "." not in host and ":" not in host and host != "localhost" and host not in services:
                    problem(f"{where}: {key} points at host {host!r}, which is not a service")
        if name == "lectern":
            grace = duration_seconds(svc.get("stop_grace_period", "10s"))
            timeout = number(env.get("LECTERN_SHUTDOWN_TIMEOUT_MS"), 10000)
            if grace is None or grace * 1000 <= timeout:
                problem(f"{where}: stop_grace_period ({svc.get('stop_grace_period', '10s (default)')}) "
                        f"must exceed LECTERN_SHUTDOWN_TIMEOUT_MS ({timeout} ms)")
            build = svc.get("build") or {}
            context = os.path.normpath(os.path.join(deploy, build.get("context", ".")))
            dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
            if not os.path.isfile(dockerfile):
                problem(f"{where}: build.dockerfile {rel(dockerfile)} does not exist")
            if os.path.normpath(context) != os.path.normpath(root):
                problem(f"{where}: build.context must be the repository root (it is {rel(context)})")

# --- Kubernetes ---------------------------------------------------------------------------
kdir = "deploy/kubernetes"
kobjects = {}  # (kind, name) -> object
for path, objs in docs.items():
    if not path.startswith(kdir + "/") or path.endswith("kustomization.yaml"):
        continue
    for obj in objs:
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            problem(f"{path}: a document without kind/apiVersion")
            continue
        kobjects[(obj["kind"], obj.get("metadata", {}).get("name"))] = obj
kust = (docs.get(f"{kdir}/kustomization.yaml") or [None])[0]
if not kust:
    problem(f"{kdir}/kustomization.yaml is missing")
else:
    listed = set(kust.get("resources") or [])
    for res in listed:
        if not os.path.isfile(os.path.join(root, kdir, res)):
            problem(f"{kdir}/kustomization.yaml: resource {res} does not exist")
    for path in docs:
        if path.startswith(kdir + "/") and not path.endswith("kustomization.yaml") and os.path.basename(path) not in listed:
            problem(f"{kdir}/kustomization.yaml does not list {os.path.basename(path)}")

config = kobjects.get(("ConfigMap", "lectern-config"), {}).get("data") or {}
secret_obj = kobjects.get(("Secret", "lectern-secrets"), {})
for source, data in (("configmap.yaml", config), ("secret.example.yaml", secret_obj.get("stringData") or {})):
    for key, value in data.items():
        if not key.startswith("LECTERN_"):
            problem(f"{kdir}/{source}: key {key} is not a LECTERN_* setting")
        check_value(f"{kdir}/{source}", key, value)

deployment = kobjects.get(("Deployment", "lectern"))
if not deployment:
    problem(f"{kdir}: no Deployment named lectern")
else:
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    if spec.get("replicas", 1) != 1:
        problem(f"{kdir}/deployment.yaml: replicas must be 1 until cross-node fan-out exists")
    if (spec.get("strategy") or {}).get("type") != "Recreate":
        problem(f"{kdir}/deployment.yaml: strategy must be Recreate (a rolling update runs two pods)")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    timeout = number(config.get("LECTERN_SHUTDOWN_TIMEOUT_MS"), 10000)
    if grace * 1000 <= timeout:
        problem(f"{kdir}/deployment.yaml: terminationGracePeriodSeconds ({grace}) must exceed "
                f"LECTERN_SHUTDOWN_TIMEOUT_MS ({timeout} ms)")
    for vol in pod.get("volumes") or []:
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and ("PersistentVolumeClaim", claim) not in kobjects:
            problem(f"{kdir}/deployment.yaml: volume {vol['name']} uses unknown claim {claim}")
    for c in (pod.get("initContainers") or []) + pod["containers"]:
        mounts = {m["name"] for m in c.get("volumeMounts") or []}
        for m in mounts - {v["name"] for v in pod.get("volumes") or []}:
            problem(f"{kdir}/deployment.yaml: container {c['name']} mounts undeclared volume {m}")
        for ref in c.get("envFrom") or []:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in ref and (kind, ref[key]["name"]) not in kobjects:
                    problem(f"{kdir}/deployment.yaml: {c['name']} reads unknown {kind} {ref[key]['name']}")
        for e in c.get("env") or []:
            check_value(f"{kdir}/deployment.yaml", e["name"], e.get("value"))
    ports = {p.get("name") for c in pod["containers"] for p in c.get("ports") or []}
    service = kobjects.get(("Service", "lectern"))
    if not service:
        problem(f"{kdir}: no Service named lectern")
    else:
        for p in service["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                problem(f"{kdir}/service.yaml: targetPort {p['targetPort']} is not a container port")

def nginx_size(text):
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", str(text).strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]

for (kind, name), obj in kobjects.items():
    if kind != "Ingress":
        continue
    notes = obj.get("metadata", {}).get("annotations") or {}
    where = f"{kdir}: Ingress {name}"
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        value = notes.get(f"nginx.ingress.kubernetes.io/{key}")
        if value is None or not str(value).isdigit() or int(value) < 3600:
            problem(f"{where}: {key} should be at least 3600 (WebSockets), is {value!r}")
    body = nginx_size(notes.get("nginx.ingress.kubernetes.io/proxy-body-size", "1m"))
    limit = number(config.get("LECTERN_MAX_UPLOAD_BYTES"), 104857600)
    if body is None or body <= limit:
        problem(f"{where}: proxy-body-size ({notes.get('nginx.ingress.kubernetes.io/proxy-body-size')}) "
                f"must be above LECTERN_MAX_UPLOAD_BYTES ({limit}) for the multipart framing")
    for rule in obj["spec"].get("rules") or []:
        for p in rule.get("http", {}).get("paths") or []:
            svc = p["backend"]["service"]["name"]
            if ("Service", svc) not in kobjects:
                problem(f"{where}: backend service {svc} does not exist")

# --- Dockerfile and the workspace ---------------------------------------------------------
workspace = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))
members = workspace["workspace"]["members"]
manifests = {}
for member in members:
    path = os.path.join(root, member, "Cargo.toml")
    if not os.path.isfile(path):
        problem(f"workspace member {member} has no Cargo.toml")
        continue
    manifests[member] = tomllib.load(open(path, "rb"))
ws_deps = workspace["workspace"].get("dependencies", {})

dockerfile_path = os.path.join(deploy, "Dockerfile")
text = open(dockerfile_path, encoding="utf-8").read()
# Join continuation lines; drop comments.
logical = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
lines = [l.strip() for l in logical.splitlines() if l.strip()]

patterns = []
ignore_path = os.path.join(root, ".dockerignore")
if not os.path.isfile(ignore_path):
    problem(".dockerignore is missing at the repository root (the build context)")
else:
    for l in open(ignore_path, encoding="utf-8"):
        l = l.strip()
        if l and not l.startswith("#"):
            patterns.append(l.rstrip("/"))
def ignored(path):
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for pat in patterns:
            if pat.startswith("!"):
                continue
            if fnmatch.fnmatch(prefix, pat) or (pat.startswith("**/") and
                    any(fnmatch.fnmatch("/".join(parts[j:i]), pat[3:]) for j in range(i))):
                return pat
    return None

rust_arg = re.search(r"^ARG RUST_VERSION=(\S+)", logical, re.M)
want = workspace["workspace"].get("package", {}).get("rust-version")
if not rust_arg or rust_arg.group(1) != want:
    problem(f"Dockerfile: ARG RUST_VERSION should be the workspace's rust-version {want}")
if not re.search(r"^FROM rust:\$\{RUST_VERSION\}-bookworm\b", logical, re.M):
    problem("Dockerfile: the builder should be FROM rust:${RUST_VERSION}-bookworm")
if not re.search(r"^FROM debian:bookworm-slim\b", logical, re.M):
    problem("Dockerfile: the runtime should be FROM debian:bookworm-slim")

copied, copied_before_build, seen_build = [], [], False
packages = set()
for l in lines:
    word = l.split(None, 1)[0].upper()
    if word == "COPY":
        args = [a for a in l.split()[1:] if not a.startswith("--")]
        if "--from=" in l:
            continue
        for src in args[:-1]:
            src = src.rstrip("/")
            if not os.path.exists(os.path.join(root, src)):
                problem(f"Dockerfile: COPY source {src} does not exist in the repository")
            elif ignored(src):
                problem(f"Dockerfile: COPY source {src} is excluded by .dockerignore ({ignored(src)})")
            copied.append(src)
            if not seen_build:
                copied_before_build.append(src)
    if word == "RUN" and "cargo build" in l:
        seen_build = True
        for pkg in re.findall(r"(?:-p|--package)[ =](\S+)", l):
            packages.add(pkg)
        if "--locked" not in l:
            problem("Dockerfile: cargo build without --locked")

if packages != {"lectern"}:
    problem(f"Dockerfile: expected `cargo build ... -p lectern`, found packages {sorted(packages)}")
by_name = {m.get("package", {}).get("name"): member for member, m in manifests.items()}
if "lectern" not in by_name:
    problem("no workspace member is the package `lectern`")
else:
    server = by_name["lectern"]
    bins = [b.get("name") for b in manifests[server].get("bin", [])] or ["lectern"]
    if "lectern" not in bins:
        problem(f"package lectern ({server}) has no binary named lectern")
    if "target/release/lectern" not in logical:
        problem("Dockerfile: does not take target/release/lectern from the build")
    # Every member's manifest in the dependency layer (Cargo loads the whole workspace).
    for member in members:
        if f"{member}/Cargo.toml" not in copied_before_build:
            problem(f"Dockerfile: workspace member {member}: COPY {member}/Cargo.toml before the first cargo build")
    for needed in ("Cargo.toml", "Cargo.lock", "deploy/stub-workspace.sh"):
        if needed not in copied_before_build:
            problem(f"Dockerfile: COPY {needed} before the first cargo build")
    # The sources of lectern and every workspace crate it depends on.
    closure, todo = set(), [server]
    while todo:
        member = todo.pop()
        if member in closure:
            continue
        closure.add(member)
        for dep, spec in (manifests[member].get("dependencies") or {}).items():
            base = member  # a path in a member's manifest is relative to the member
            if isinstance(spec, dict) and spec.get("workspace"):
                spec, base = ws_deps.get(dep, {}), "."  # ... in [workspace.dependencies], to the root
            path = spec.get("path") if isinstance(spec, dict) else None
            if path:
                target = os.path.normpath(os.path.join(base, path))
                if target in manifests:
                    todo.append(target)
    for member in sorted(closure):
        if not any(member == c or member.startswith(c + "/") for c in copied if c not in copied_before_build):
            problem(f"Dockerfile: the sources of {member} (needed by lectern) are never copied")

for p in problems:
    print(p)
PYEOF
  fail "the checks themselves failed (see the Python error above)"
fi

if [ -s "$scratch/report.txt" ]; then
  sed 's/^/check-deploy: /' "$scratch/report.txt" >&2
  fail "$(wc -l <"$scratch/report.txt") problem(s) in deploy/"
fi

# The Dockerfile's dependency layer, replayed: the manifests, Cargo.lock and the
# placeholders must load as a workspace and resolve exactly as locked.
if command -v cargo >/dev/null; then
  stub="$scratch/workspace"
  mkdir -p "$stub"
  cp Cargo.toml Cargo.lock "$stub/"
  "$python" -c 'import tomllib,sys; print("\n".join(tomllib.load(open("Cargo.toml","rb"))["workspace"]["members"]))' |
    while read -r member; do mkdir -p "$stub/$member" && cp "$member/Cargo.toml" "$stub/$member/"; done
  (cd "$stub" && sh "$root/deploy/stub-workspace.sh") || fail "deploy/stub-workspace.sh failed"
  tree_args=(tree --locked -p lectern -e normal --target x86_64-unknown-linux-gnu --manifest-path "$stub/Cargo.toml")
  if ! cargo "${tree_args[@]}" --offline >/dev/null 2>"$scratch/tree.err" &&
    ! cargo "${tree_args[@]}" >/dev/null 2>"$scratch/tree.err"; then
    sed 's/^/check-deploy: /' "$scratch/tree.err" >&2
    fail "the Dockerfile's dependency layer (manifests + deploy/stub-workspace.sh) does not load as a locked workspace"
  fi
else
  echo "check-deploy: cargo not found; skipped replaying the Dockerfile's dependency layer" >&2
fi

if command -v kubectl >/dev/null; then
  kubectl kustomize deploy/kubernetes >/dev/null 2>"$scratch/kustomize.err" || {
    sed 's/^/check-deploy: /' "$scratch/kustomize.err" >&2
    fail "kubectl kustomize deploy/kubernetes failed"
  }
fi

echo "check-deploy: deploy/ is consistent ($("$bin" --version))"
