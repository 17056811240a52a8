#!/usr/bin/env node
// Checks what docker/ ships, without a cluster or a Docker engine (`make docker-check`,
// which `make test` runs):
//
//   1. every docker/k8s/*.yaml document against the Kubernetes OpenAPI schemas
//      (kubernetes-models, generated from them) and cert-manager's CRD schema
//      (@kubernetes-models/cert-manager): types, required fields, enums;
//   2. botgate's contract across those documents: the botgate container's liveness probe on
//      /healthz and readiness on /readyz at its TLS port, terminationGracePeriodSeconds
//      covering preStop + shutdown_grace_s, resources set, not root, the TLS Secret issued
//      by a Certificate, Service and PodDisruptionBudget selecting the pods, the mounted
//      botgate.yaml naming only botgate's sections;
//   3. docker/Dockerfile with dockerfile-utils' linter, plus botgate's rules (debian:12-slim
//      stages, build packages from scripts/deps.sh, non-root USER, HEALTHCHECK, `serve`
//      entrypoint), and docker/compose.yaml's shape;
//   4. itself: each deliberate breakage in BREAKAGES, applied to the real manifests, must
//      be caught with the expected message, and so must tests/k8s/broken/*.yaml.
//
// Limits: the Kubernetes schemas allow unknown fields, so a misspelt optional field passes
// (kubeconform --strict would catch it; it is not packaged).
//
// Usage: node check.js [ROOT]   (ROOT: the repository, default ../..)
"use strict";
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");
const { validate: lintDockerfile, ValidationSeverity } = require("dockerfile-utils");
const { instructions } = require("./dockerfile.js");

const ROOT = path.resolve(process.argv[2] || path.join(__dirname, "..", ".."));
const K8S = path.join(ROOT, "docker", "k8s");
const SECTIONS = ["listen", "state_dir", "tls", "auth", "redis", "bot", "policy", "relay",
  "admin", "log", "shutdown_grace_s"];
const SHUTDOWN_GRACE_DEFAULT = 25;

// ---- 1. schemas ------------------------------------------------------------------------

function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z]+$/.test(kind))
    return null;
  const candidates = apiVersion.startsWith("cert-manager.io/")
    ? [`@kubernetes-models/cert-manager/${apiVersion}/${kind}`]
    : [`kubernetes-models/${apiVersion}/${kind}`];
  for (const c of candidates) {
    try {
      return require(c)[kind];
    } catch (e) {
      if (e.code !== "MODULE_NOT_FOUND" && e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e;
    }
  }
  return null;
}

// [{file, index, doc}] of every document in files ({name: text}), and errors.
function parse(files, errors) {
  const docs = [];
  for (const [file, text] of Object.entries(files)) {
    YAML.parseAllDocuments(text).forEach((d, index) => {
      if (d.errors.length > 0)
        return errors.push(`${file}: YAML: ${d.errors[0].message.split("\n")[0]}`);
      const doc = d.toJS();
      if (doc !== null) docs.push({ file, index, doc });
    });
  }
  return docs;
}

function checkSchemas(docs, errors) {
  for (const { file, index, doc } of docs) {
    const where = `${file}#${index} ${doc.kind}/${(doc.metadata || {}).name}`;
    const Model = modelFor(doc.apiVersion, doc.kind);
    if (Model === null) {
      errors.push(`${where}: no schema for apiVersion ${doc.apiVersion}, kind ${doc.kind}`);
      continue;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      errors.push(`${where}: schema: ${e.message}`);
    }
  }
}

// ---- 2. botgate's contract ---------------------------------------------------------------

const of = (docs, kind) => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);

function selects(selector, labels) {
  const m = (selector && selector.matchLabels) || {};
  return Object.keys(m).length > 0 && Object.entries(m).every(([k, v]) => labels[k] === v);
}

function portNumber(container, port) {
  if (typeof port === "number") return port;
  const p = (container.ports || []).find((x) => x.name === port);
  return p ? p.containerPort : undefined;
}

function sleepSeconds(container) {
  const pre = ((container.lifecycle || {}).preStop) || {};
  if (pre.sleep) return Number(pre.sleep.seconds) || 0;
  const cmd = (pre.exec || {}).command || [];
  const i = cmd.indexOf("sleep");
  return i >= 0 ? Number(cmd[i + 1]) || 0 : 0;
}

// botgate.yaml from the ConfigMap the container mounts at /etc/botgate/botgate.yaml, or null.
function mountedConfig(podSpec, container, configMaps) {
  const m = (container.volumeMounts || []).find((v) => v.mountPath === "/etc/botgate/botgate.yaml" ||
    v.mountPath === "/etc/botgate");
  const vol = m && (podSpec.volumes || []).find((v) => v.name === m.name);
  const cm = vol && vol.configMap && configMaps.find((c) => c.metadata.name === vol.configMap.name);
  return cm ? { name: cm.metadata.name, text: (cm.data || {})["botgate.yaml"] } : null;
}

function checkContract(docs, errors) {
  const deployments = of(docs, "Deployment");
  const configMaps = of(docs, "ConfigMap");
  const certs = of(docs, "Certificate");
  let found = 0;
  for (const d of deployments) {
    const pod = ((d.spec || {}).template || {}).spec || {};
    const labels = (((d.spec || {}).template || {}).metadata || {}).labels || {};
    const gate = (pod.containers || []).find((c) => c.name === "botgate");
    if (!gate) continue;
    found++;
    const where = `Deployment/${d.metadata.name} container botgate`;
    const tls = (gate.ports || []).find((p) => p.containerPort === 8443);
    if (!tls) errors.push(`${where}: no containerPort 8443 (the TLS listener)`);
    for (const [probe, want] of [["livenessProbe", "/healthz"], ["readinessProbe", "/readyz"]]) {
      const g = (gate[probe] || {}).httpGet;
      if (!g) { errors.push(`${where}: ${probe} must be an httpGet on ${want}`); continue; }
      if (g.path !== want) errors.push(`${where}: ${probe} path ${g.path}, want ${want}`);
      if (tls && portNumber(gate, g.port) !== 8443)
        errors.push(`${where}: ${probe} port ${g.port} is not the TLS port 8443`);
      if (g.scheme !== "HTTPS") errors.push(`${where}: ${probe} scheme must be HTTPS on 8443`);
    }
    let grace = SHUTDOWN_GRACE_DEFAULT;
    const conf = mountedConfig(pod, gate, configMaps);
    if (conf !== null) {
      let c = null;
      try {
        c = YAML.parse(conf.text || "");
      } catch (e) {
        errors.push(`ConfigMap/${conf.name}: botgate.yaml: ${e.message.split("\n")[0]}`);
      }
      for (const k of Object.keys(c || {}))
        if (!SECTIONS.includes(k)) errors.push(`ConfigMap/${conf.name}: botgate.yaml: unknown key ${k}`);
      if (c && c.shutdown_grace_s !== undefined) grace = Number(c.shutdown_grace_s);
    }
    const env = (gate.env || []).find((e) => e.name === "BOTGATE_SHUTDOWN_GRACE_S");
    if (env) grace = Number(env.value);
    const need = sleepSeconds(gate) + grace + 1;
    const tgps = pod.terminationGracePeriodSeconds === undefined ? 30 : pod.terminationGracePeriodSeconds;
    if (!(tgps >= need))
      errors.push(`Deployment/${d.metadata.name}: terminationGracePeriodSeconds ${tgps} < preStop ` +
        `${sleepSeconds(gate)} s + shutdown_grace_s ${grace} s + 1`);
    const res = gate.resources || {};
    for (const k of ["requests", "limits"])
      if (!res[k] || !res[k].memory) errors.push(`${where}: resources.${k}.memory missing`);
    const user = ((gate.securityContext || {}).runAsUser) ?? ((pod.securityContext || {}).runAsUser);
    if (user === 0 || (user === undefined && !(pod.securityContext || {}).runAsNonRoot))
      errors.push(`${where}: runs as root (set runAsUser 10001, the image's user)`);
    for (const v of pod.volumes || []) {
      if (!v.secret) continue;
      if (!certs.some((c) => c.spec && c.spec.secretName === v.secret.secretName))
        errors.push(`Deployment/${d.metadata.name}: Secret ${v.secret.secretName} is issued by no Certificate`);
    }
    for (const kind of ["Service", "PodDisruptionBudget"]) {
      const objs = of(docs, kind);
      if (!objs.some((o) => selects(kind === "Service" ? { matchLabels: o.spec.selector } : o.spec.selector, labels)))
        errors.push(`Deployment/${d.metadata.name}: no ${kind} selects its pods`);
    }
  }
  if (found === 0) errors.push("no Deployment with a container named botgate");
}

// ---- 3. Dockerfile and compose -----------------------------------------------------------

function depsPackages() {
  const text = fs.readFileSync(path.join(ROOT, "scripts", "deps.sh"), "utf8");
  const m = text.match(/packages=\(([\s\S]*?)\)/);
  return new Set(m ? m[1].split(/\s+/).filter(Boolean) : []);
}

function checkDockerfile(file, text, errors) {
  for (const d of lintDockerfile(text)) {
    if (d.severity === ValidationSeverity.ERROR || d.severity === ValidationSeverity.WARNING)
      errors.push(`${file}:${d.range.start.line + 1}: ${d.message}`);
  }
  const ins = instructions(text);
  const stages = [];
  for (const i of ins) {
    if (i.op === "FROM") stages.push({ from: i.args.split(/\s+/)[0], ins: [] });
    else if (stages.length > 0) stages[stages.length - 1].ins.push(i);
  }
  if (stages.length < 2) errors.push(`${file}: not multi-stage (build, then runtime)`);
  for (const s of stages)
    if (s.from !== "debian:12-slim") errors.push(`${file}: FROM ${s.from}, want debian:12-slim`);
  const deps = depsPackages();
  const installed = (s) => s.ins.filter((i) => i.op === "RUN")
    .flatMap((i) => (i.args.match(/apt-get install([^&;]*)/) || ["", ""])[1].split(/\s+/))
    .filter((p) => p && !p.startsWith("-"));
  if (stages.length >= 2) {
    for (const p of installed(stages[0]))
      if (!deps.has(p)) errors.push(`${file}: build stage installs ${p}, which scripts/deps.sh does not list`);
    const run = stages[stages.length - 1];
    for (const p of installed(run))
      if (/-dev$/.test(p) || p === "build-essential")
        errors.push(`${file}: runtime stage installs ${p} (a build package)`);
    const user = run.ins.filter((i) => i.op === "USER").pop();
    if (!user || /^(root|0)(:|$)/.test(user.args.trim()))
      errors.push(`${file}: the runtime stage must end as a non-root USER`);
    if (!run.ins.some((i) => i.op === "HEALTHCHECK" && /\/healthz/.test(i.args)))
      errors.push(`${file}: no HEALTHCHECK on /healthz`);
    const ep = run.ins.filter((i) => i.op === "ENTRYPOINT").pop();
    if (!ep || !/botgate"?,\s*"serve"/.test(ep.args))
      errors.push(`${file}: ENTRYPOINT must be botgate serve`);
  }
}

function checkCompose(file, text, errors) {
  let c;
  try {
    c = YAML.parse(text);
  } catch (e) {
    return errors.push(`${file}: YAML: ${e.message.split("\n")[0]}`);
  }
  const s = (c && c.services) || {};
  for (const name of ["bot", "botgate", "redis"])
    if (!s[name]) errors.push(`${file}: no service ${name}`);
  const b = (s.botgate || {}).build || {};
  if (b.dockerfile && !fs.existsSync(path.resolve(path.dirname(path.join(ROOT, "docker", "compose.yaml")),
    b.context || ".", b.dockerfile)))
    errors.push(`${file}: botgate's build.dockerfile ${b.dockerfile} does not exist`);
  const env = (s.botgate || {}).environment || {};
  if (!env.BOTGATE_REDIS_URL) errors.push(`${file}: botgate needs BOTGATE_REDIS_URL (no private Redis in the image)`);
}

// ---- the whole check, and its self-test --------------------------------------------------

function readK8s() {
  const files = {};
  for (const f of fs.readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f)).sort())
    files[f] = fs.readFileSync(path.join(K8S, f), "utf8");
  return files;
}

function checkManifests(files) {
  const errors = [];
  const docs = parse(files, errors);
  checkSchemas(docs, errors);
  checkContract(docs, errors);
  return errors;
}

// Each: a file of docker/k8s and a change to its documents that must be refused.
const BREAKAGES = [
  { file: "deployment.yaml", expect: "containerPort must be integer",
    doc: (d) => { d.spec.template.spec.containers[1].ports[0].containerPort = "8443"; } },
  { file: "deployment.yaml", expect: "must have required property selector",
    doc: (d) => { delete d.spec.selector; } },
  { file: "deployment.yaml", expect: "readinessProbe path /healthz, want /readyz",
    doc: (d) => { d.spec.template.spec.containers[1].readinessProbe.httpGet.path = "/healthz"; } },
  { file: "deployment.yaml", expect: "terminationGracePeriodSeconds 30 <",
    doc: (d) => { d.spec.template.spec.terminationGracePeriodSeconds = 30; } },
  { file: "deployment.yaml", expect: "is issued by no Certificate",
    doc: (d) => { d.spec.template.spec.volumes.find((v) => v.secret).secret.secretName = "other"; } },
  { file: "service.yaml", expect: "no Service selects its pods",
    doc: (d) => { d.spec.selector = { "app.kubernetes.io/name": "other" }; } },
  { file: "pdb.yaml", expect: "schema: data/spec/maxUnavailable must",
    doc: (d) => { d.spec.maxUnavailable = [1]; } },
  { file: "certificate.yaml", expect: "must have required property secretName",
    doc: (d) => { delete d.spec.secretName; } },
  { file: "configmap.yaml", expect: "botgate.yaml: unknown key",
    doc: (d) => { d.data["botgate.yaml"] += "shutdown_grace: 25\n"; } },
  { file: "redis-sentinel.yaml", expect: "no schema for apiVersion apps/v2",
    doc: (d) => { if (d.kind === "StatefulSet") d.apiVersion = "apps/v2"; } },
];

function selfTest(good) {
  const failures = [];
  const run = (name, files, expect) => {
    const errors = checkManifests(files);
    if (!errors.some((e) => e.includes(expect)))
      failures.push(`${name}: not refused with "${expect}"; got: ${errors.join(" | ") || "no error"}`);
  };
  for (const b of BREAKAGES) {
    const docs = YAML.parseAllDocuments(good[b.file]).map((d) => d.toJS());
    docs.forEach(b.doc);
    const files = { ...good, [b.file]: docs.map((d) => YAML.stringify(d)).join("---\n") };
    run(`breakage of ${b.file} (${b.expect})`, files, b.expect);
  }
  // committed broken files: "# replaces: FILE" and "# expect: TEXT" in their heads
  const dir = path.join(__dirname, "broken");
  for (const f of fs.readdirSync(dir).sort()) {
    const text = fs.readFileSync(path.join(dir, f), "utf8");
    const replaces = (text.match(/^# replaces: (.+)$/m) || [])[1];
    const expect = (text.match(/^# expect: (.+)$/m) || [])[1];
    if (!expect) { failures.push(`broken/${f}: no "# expect:" line`); continue; }
    if (f.startsWith("Dockerfile")) {
      const errors = [];
      checkDockerfile(`broken/${f}`, text, errors);
      if (!errors.some((e) => e.includes(expect)))
        failures.push(`broken/${f}: not refused with "${expect}"; got: ${errors.join(" | ") || "no error"}`);
      continue;
    }
    run(`broken/${f}`, { ...good, [replaces]: text }, expect);
  }
  return failures;
}

function main() {
  let passed = 0, failed = 0;
  const report = (name, errors) => {
    if (errors.length === 0) { passed++; console.log(`ok   ${name}`); return; }
    failed++;
    console.log(`FAIL ${name}`);
    for (const e of errors) console.log(`       ${e}`);
  };
  const good = readK8s();
  report(`docker/k8s (${Object.keys(good).join(", ")}): schemas and botgate's contract`, checkManifests(good));
  const df = path.join(ROOT, "docker", "Dockerfile");
  const dfErrors = [];
  checkDockerfile("docker/Dockerfile", fs.readFileSync(df, "utf8"), dfErrors);
  report("docker/Dockerfile: lint and botgate's rules", dfErrors);
  const cErrors = [];
  checkCompose("docker/compose.yaml", fs.readFileSync(path.join(ROOT, "docker", "compose.yaml"), "utf8"), cErrors);
  report("docker/compose.yaml", cErrors);
  report(`self-test: ${BREAKAGES.length} deliberate breakages and tests/k8s/broken/* are refused`, selfTest(good));
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main();
