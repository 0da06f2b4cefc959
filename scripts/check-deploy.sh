#!/usr/bin/env bash
# Static checks of deploy/ (no container engine or cluster needed):
#   - every YAML file under deploy/ parses;
#   - compose.yaml only references services, volumes, files and host names it defines;
#   - compose.yaml is a cluster: at least two Lectern nodes with the same database, Redis,
#     S3 and JWT settings, behind HAProxy whose mounted haproxy.cfg names every node (and
#     nothing else) as a server, balances round robin without stickiness, keeps idle
#     WebSockets an hour and health-checks /readyz;
#   - every image in compose.yaml and the Kubernetes manifests is pinned to a version;
#   - Kubernetes: replicas >= 2, RollingUpdate with maxUnavailable 0 or 1, a preStop sleep,
#     a PodDisruptionBudget selecting the Deployment's pods, a CPU HPA on the Deployment
#     with minReplicas >= 2, the database, Redis and bucket shared through the ConfigMap or
#     Secret, no ReadWriteOnce volume, no other pods carrying the lectern labels;
#   - every LECTERN_* variable named anywhere in deploy/ is a real `lectern serve` setting
#     (from `lectern serve --help`), and enumerated/numeric settings have valid values;
#   - the Dockerfile builds a package that exists (`-p lectern`, binary `lectern`), copies
#     paths that exist and are not excluded by .dockerignore, copies every workspace
#     member's manifest into its dependency layer and the sources lectern needs, and uses
#     the workspace's Rust version;
#   - that dependency layer works: the manifests plus deploy/stub-workspace.sh's
#     placeholders load as a workspace that resolves with Cargo.lock (`cargo tree --locked`);
#   - the cross-file numbers agree: grace periods above the preStop sleep plus twice
#     LECTERN_SHUTDOWN_TIMEOUT_MS (shutdown waits that long for requests, then for sockets),
#     the ingress body limit above LECTERN_MAX_UPLOAD_BYTES; the kustomization's resources
#     and the names the Deployment refers to exist;
#   - if kubectl is installed, `kubectl kustomize deploy/kubernetes` renders; if haproxy is
#     installed, `haproxy -c` accepts deploy/haproxy.cfg.
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

def pinned(image):
    """An image reference fixed to a release: a digest, or a tag naming a version (major.minor
    or a dated release), never `latest` or a bare major version that moves."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (the colon was a registry port)
        return False
    return tag != "latest" and bool(re.search(r"\d+\.\d+|\d{4}-\d{2}-\d{2}", tag))

# The settings every node of a cluster must share: one database, one Redis, one bucket and
# one token secret, or the nodes do not serve the same classrooms.
SHARED = ("LECTERN_DATABASE_URL", "LECTERN_REDIS_URL", "LECTERN_JWT_SECRET", "LECTERN_S3_BUCKET",
          "LECTERN_S3_ENDPOINT", "LECTERN_S3_REGION", "LECTERN_S3_FORCE_PATH_STYLE",
          "LECTERN_S3_ACCESS_KEY_ID", "LECTERN_S3_SECRET_ACCESS_KEY")

def environment(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env

compose_docs = docs.get("deploy/compose.yaml")
if compose_docs is None:
    problem("deploy/compose.yaml is missing or empty")
else:
    compose = compose_docs[0]
    services = compose.get("services") or {}
    volumes = set((compose.get("volumes") or {}).keys())
    # Lectern nodes: the services built from deploy/Dockerfile (or running its image).
    nodes = sorted(name for name, svc in services.items()
                   if "build" in svc or str(svc.get("image", "")).split(":")[0] == "lectern")
    if len(nodes) < 2:
        problem(f"compose.yaml: {len(nodes)} Lectern node(s) ({', '.join(nodes) or 'none'}); a cluster needs at least 2")
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
                # Lectern nodes have the image's HEALTHCHECK.
                if cond == "service_healthy" and dep in services and "healthcheck" not in services[dep] and dep not in nodes:
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
            if source and source.startswith(".") and not os.path.exists(os.path.join(deploy, source)):
                problem(f"{where}: mounts {source}, which does not exist next to compose.yaml")
        if "build" not in svc:
            image = str(svc.get("image", ""))
            if not pinned(image):
                problem(f"{where}: image {image!r} is not pinned to a version (a version tag, not latest)")
        env = environment(svc)
        for key, value in env.items():
            check_value(where, key, value)
            if isinstance(value, str) and "://" in value:
                url = urllib.parse.urlsplit(re.sub(r"\$\{[^}]*\}", "x", value))
                host = url.hostname or ""
                if host and "." not in host and ":" not in host and host != "localhost" and host not in services:
                    problem(f"{where}: {key} points at host {host!r}, which is not a service")
        if name in nodes:
            # Shutdown waits up to the timeout for requests in flight, then up to the timeout
            # again for sockets to close (server/src/transport.rs, lib.rs).
            grace = duration_seconds(svc.get("stop_grace_period", "10s"))
            timeout = number(env.get("LECTERN_SHUTDOWN_TIMEOUT_MS"), 10000)
            if grace is None or grace * 1000 <= 2 * timeout:
                problem(f"{where}: stop_grace_period ({svc.get('stop_grace_period', '10s (default)')}) "
                        f"must exceed twice LECTERN_SHUTDOWN_TIMEOUT_MS ({timeout} ms)")
            build = svc.get("build")
            if build is not None:
                context = os.path.normpath(os.path.join(deploy, build.get("context", ".")))
                dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
                if not os.path.isfile(dockerfile):
                    problem(f"{where}: build.dockerfile {rel(dockerfile)} does not exist")
                if os.path.normpath(context) != os.path.normpath(root):
                    problem(f"{where}: build.context must be the repository root (it is {rel(context)})")
    # One cluster: the same database, Redis, bucket and secret on every node.
    for key in SHARED:
        values = {node: environment(services[node]).get(key) for node in nodes}
        if any(value is None for value in values.values()):
            missing = sorted(node for node, value in values.items() if value is None)
            problem(f"compose.yaml: {key} is not set on {', '.join(missing)} (every node needs the same value)")
        elif len(set(map(str, values.values()))) > 1:
            problem(f"compose.yaml: the nodes disagree on {key}: {values}")

    # The load balancer: HAProxy with its configuration mounted from deploy/, naming every
    # node (and nothing else) as a server, round robin without stickiness, long WebSocket
    # tunnels and /readyz health checks.
    balancers = [name for name, svc in services.items()
                 if str(svc.get("image", "")).split(":")[0].split("/")[-1] == "haproxy"]
    if not balancers:
        problem("compose.yaml: no load balancer (an `haproxy` image) in front of the nodes")
    for name in balancers:
        svc = services[name]
        where = f"compose.yaml: service {name}"
        if not svc.get("ports"):
            problem(f"{where}: publishes no port")
        mounts = [str(v).split(":") for v in svc.get("volumes") or [] if isinstance(v, str)]
        cfgs = [m[0] for m in mounts if len(m) >= 2 and m[1].endswith("/haproxy.cfg")]
        if not cfgs:
            problem(f"{where}: mounts no haproxy.cfg")
            continue
        cfg_path = os.path.normpath(os.path.join(deploy, cfgs[0]))
        if not os.path.isfile(cfg_path):
            problem(f"{where}: {cfgs[0]} does not exist")
            continue
        cfg = [l.split("#", 1)[0].split() for l in open(cfg_path, encoding="utf-8")]
        cfg = [l for l in cfg if l]
        where = rel(cfg_path)
        servers = {}
        for words in cfg:
            if words[0] == "server" and len(words) >= 3:
                servers[words[1]] = words[2].rsplit(":", 1)
        hosts = {host for host, _ in servers.values()}
        for node in nodes:
            if node not in hosts:
                problem(f"{where}: no `server` line for the Lectern node {node}")
        for server, (host, port) in sorted(servers.items()):
            if host not in nodes:
                problem(f"{where}: server {server} ({host}) is not a Lectern node of compose.yaml")
            listen = environment(services.get(host, {})).get("LECTERN_LISTEN", "0.0.0.0:8080")
            if port != str(listen).rsplit(":", 1)[-1]:
                problem(f"{where}: server {server} uses port {port}, the node listens on {listen}")
        directives = {" ".join(words[:2]) for words in cfg} | {words[0] for words in cfg}
        if "balance roundrobin" not in directives:
            problem(f"{where}: the backend must `balance roundrobin` (clients of one room spread over the nodes)")
        for sticky in ("cookie", "stick-table", "stick"):
            if sticky in directives:
                problem(f"{where}: `{sticky}` makes connections sticky; the cluster wants plain round robin")
        tunnel = [duration_seconds(words[2]) for words in cfg if words[:2] == ["timeout", "tunnel"] and len(words) > 2]
        if not tunnel or tunnel[0] is None or tunnel[0] < 3600:
            problem(f"{where}: `timeout tunnel` should be at least 1h (idle WebSockets), is {tunnel or 'unset'}")
        if not any(words[:2] == ["http-check", "send"] and "/readyz" in words for words in cfg):
            problem(f"{where}: health checks should `http-check send meth GET uri /readyz`")

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

def matches(selector, labels):
    """Whether a label selector (matchLabels only) selects pods with `labels`."""
    wanted = (selector or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())

def prestop_seconds(container):
    """The preStop sleep of a container (exec `sleep N` or the built-in sleep action)."""
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in hook:
        return number((hook["sleep"] or {}).get("seconds"), None)
    command = (hook.get("exec") or {}).get("command") or []
    if len(command) == 2 and os.path.basename(str(command[0])) == "sleep":
        return number(command[1], None)
    return None

hpas = [obj for (kind, _), obj in kobjects.items() if kind == "HorizontalPodAutoscaler"
        and (obj["spec"].get("scaleTargetRef") or {}).get("kind") == "Deployment"
        and (obj["spec"].get("scaleTargetRef") or {}).get("name") == "lectern"]
deployment = kobjects.get(("Deployment", "lectern"))
if not deployment:
    problem(f"{kdir}: no Deployment named lectern")
else:
    where = f"{kdir}/deployment.yaml"
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"].get("metadata", {}).get("labels") or {}
    if not matches(spec.get("selector"), pod_labels):
        problem(f"{where}: the selector does not select the pod template's labels")
    # At least two pods: one draining (rollout, eviction) leaves one serving. Without
    # `replicas`, the HPA's minimum is the floor.
    replicas = spec.get("replicas")
    if replicas is None:
        if not any(h["spec"].get("minReplicas", 1) >= 2 for h in hpas):
            problem(f"{where}: no replicas, and no HPA with minReplicas >= 2 targets the Deployment")
    elif replicas < 2:
        problem(f"{where}: replicas ({replicas}) must be at least 2")
    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    if strategy.get("type") != "RollingUpdate":
        problem(f"{where}: strategy must be RollingUpdate (pods drain one at a time)")
    elif str(rolling.get("maxUnavailable", "25%")) not in ("0", "1"):
        problem(f"{where}: rollingUpdate.maxUnavailable must be 0 or 1, is {rolling.get('maxUnavailable', '25% (default)')}")
    elif str(rolling.get("maxUnavailable")) == "0" and str(rolling.get("maxSurge", "25%")) in ("0", "0%"):
        problem(f"{where}: with maxUnavailable 0, maxSurge must be at least 1 or the rollout never starts")
    # SIGKILL comes terminationGracePeriodSeconds after the pod starts terminating: that
    # must cover the preStop sleep, then the shutdown, which waits up to the timeout for
    # requests in flight and up to the timeout again for sockets (transport.rs, lib.rs).
    grace = pod.get("terminationGracePeriodSeconds", 30)
    timeout = number(config.get("LECTERN_SHUTDOWN_TIMEOUT_MS"), 10000)
    lectern_containers = [c for c in pod["containers"] if c.get("name") == "lectern"]
    prestop = prestop_seconds(lectern_containers[0]) if lectern_containers else None
    if prestop is None:
        problem(f"{where}: the lectern container needs a preStop sleep (the Service must drop "
                f"the pod before SIGTERM closes its sockets with 4503)")
        prestop = 0
    if grace * 1000 <= prestop * 1000 + 2 * timeout:
        problem(f"{where}: terminationGracePeriodSeconds ({grace}) must exceed the preStop sleep "
                f"({prestop} s) plus twice LECTERN_SHUTDOWN_TIMEOUT_MS ({timeout} ms)")
    # A cluster shares one database, one Redis and one bucket; a pod's volumes are its own.
    settings = set(config) | set(secret_obj.get("stringData") or {})
    for key in ("LECTERN_DATABASE_URL", "LECTERN_REDIS_URL", "LECTERN_S3_BUCKET"):
        if key not in settings:
            problem(f"{kdir}: {key} is in neither configmap.yaml nor secret.example.yaml (every pod must share it)")
    for vol in pod.get("volumes") or []:
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and ("PersistentVolumeClaim", claim) not in kobjects:
            problem(f"{where}: volume {vol['name']} uses unknown claim {claim}")
        elif claim and "ReadWriteOnce" in kobjects[("PersistentVolumeClaim", claim)]["spec"].get("accessModes", []):
            problem(f"{where}: volume {vol['name']} is a ReadWriteOnce claim, which pods on different nodes cannot share")
    for c in (pod.get("initContainers") or []) + pod["containers"]:
        mounts = {m["name"] for m in c.get("volumeMounts") or []}
        for m in mounts - {v["name"] for v in pod.get("volumes") or []}:
            problem(f"{where}: container {c['name']} mounts undeclared volume {m}")
        for ref in c.get("envFrom") or []:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in ref and (kind, ref[key]["name"]) not in kobjects:
                    problem(f"{where}: {c['name']} reads unknown {kind} {ref[key]['name']}")
        for e in c.get("env") or []:
            check_value(where, e["name"], e.get("value"))
    ports = {p.get("name") for c in pod["containers"] for p in c.get("ports") or []}
    service = kobjects.get(("Service", "lectern"))
    if not service:
        problem(f"{kdir}: no Service named lectern")
    else:
        for p in service["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                problem(f"{kdir}/service.yaml: targetPort {p['targetPort']} is not a container port")
        if not matches({"matchLabels": service["spec"].get("selector")}, pod_labels):
            problem(f"{kdir}/service.yaml: the selector does not select the Deployment's pods")
    # Nothing else may carry the labels the Service and the PDB select.
    for (kind, name), obj in kobjects.items():
        if kind == "Deployment" and name != "lectern":
            other = obj["spec"]["template"].get("metadata", {}).get("labels") or {}
            if matches(spec.get("selector"), other):
                problem(f"{kdir}: Deployment {name}'s pods carry the lectern labels (the Service and PDB would select them)")
    # The PodDisruptionBudget: selects these pods, keeps at least one, and lets one go.
    pdbs = [obj for (kind, _), obj in kobjects.items() if kind == "PodDisruptionBudget"
            and matches(obj["spec"].get("selector"), pod_labels)]
    if not pdbs:
        problem(f"{kdir}: no PodDisruptionBudget selects the Deployment's pod labels {pod_labels}")
    for pdb in pdbs:
        floor = min([replicas or 2] + [h["spec"].get("minReplicas", 1) for h in hpas])
        keep = pdb["spec"].get("minAvailable")
        if keep is None or not str(keep).isdigit() or not 1 <= int(keep) < floor:
            problem(f"{kdir}: PodDisruptionBudget {pdb['metadata']['name']}: minAvailable ({keep}) must be at least 1 "
                    f"and below the minimum replica count ({floor}), or node drains block")
    # The HPA: CPU based (the pods must request CPU), never below two pods.
    if not hpas:
        problem(f"{kdir}: no HorizontalPodAutoscaler targets Deployment lectern")
    for hpa in hpas:
        name = hpa["metadata"]["name"]
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"].get("maxReplicas", 0)
        if low < 2:
            problem(f"{kdir}: HPA {name}: minReplicas ({low}) must be at least 2")
        if high < low:
            problem(f"{kdir}: HPA {name}: maxReplicas ({high}) is below minReplicas ({low})")
        if hpa["spec"]["scaleTargetRef"].get("apiVersion") != "apps/v1":
            problem(f"{kdir}: HPA {name}: scaleTargetRef.apiVersion must be apps/v1")
        cpu = [m for m in hpa["spec"].get("metrics") or []
               if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"]
        if not cpu:
            problem(f"{kdir}: HPA {name}: no CPU metric")
        elif not all((c.get("resources") or {}).get("requests", {}).get("cpu") for c in pod["containers"]):
            problem(f"{kdir}: HPA {name} scales on CPU utilization, but a container requests no CPU")

# Every image pinned: containers other than `lectern` (set by the kustomization) by their
# own tag, and the kustomization's `images` by newTag or digest.
for (kind, name), obj in kobjects.items():
    template = (obj.get("spec") or {}).get("template") or {}
    for c in ((template.get("spec") or {}).get("initContainers") or []) + ((template.get("spec") or {}).get("containers") or []):
        if c.get("image") != "lectern" and not pinned(str(c.get("image", ""))):
            problem(f"{kdir}: {kind} {name}: image {c.get('image')!r} is not pinned to a version")
for entry in (kust or {}).get("images") or []:
    tag = entry.get("digest") and "x@sha256:" or f"x:{entry.get('newTag', '')}"
    if not pinned(tag):
        problem(f"{kdir}/kustomization.yaml: image {entry.get('name')} has no version tag (newTag {entry.get('newTag')!r})")

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

if command -v haproxy >/dev/null; then
  # Outside Docker the node names do not resolve: HAProxy warns and still validates.
  haproxy -c -f deploy/haproxy.cfg >"$scratch/haproxy.err" 2>&1 || {
    sed 's/^/check-deploy: /' "$scratch/haproxy.err" >&2
    fail "haproxy -c rejects deploy/haproxy.cfg"
  }
fi

echo "check-deploy: deploy/ is consistent ($("$bin" --version))"
