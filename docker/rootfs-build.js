#!/usr/bin/env node
// Runs docker/Dockerfile without a Docker engine (`make docker-rootfs`, as root): each
// stage in a copy of a Debian 12 minbase root made by debootstrap (what debian:12-slim is
// built from), its RUN steps through chroot, its COPY steps from the build context (as
// Dockerfile.dockerignore lets through) or from an earlier stage; then the runtime root is
// tried as the container would run:
//
//   - every library botgate needs resolves in the runtime root (ldd);
//   - the ENTRYPOINT + CMD, as the image's USER, with the image's ENV and WORKDIR, against a
//     redis-server on this host, answers the HEALTHCHECK command (run inside the root) and
//     stores a POSTed activity (202, XLEN 1);
//   - SIGTERM ends it with status 0.
//
// What this does not reproduce: the image's layers and metadata, the debian:12-slim
// image's trimming (docs, locales), and isolation (the chroot shares this host's network
// and process namespace). Ports are free ones on 127.0.0.1: the admin port replaces 9090
// in the HEALTHCHECK command, the TLS port 8443 via BOTGATE_LISTEN.
//
// Kept in build-docker/: base/ (the debootstrapped root, reused), stage-*/ (rebuilt each run).
"use strict";
const fs = require("fs");
const path = require("path");
const net = require("net");
const { execFileSync, spawn, spawnSync } = require("child_process");
const { instructions } = require("../tests/k8s/dockerfile.js");

const ROOT = path.resolve(__dirname, "..");
const WORK = path.join(ROOT, "build-docker");
const MIRROR = process.env.DEBIAN_MIRROR || "http://deb.debian.org/debian";
const PATH_IN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const log = (msg) => console.log(`rootfs: ${msg}`);
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: "inherit", ...opts });

// ---- mounts: never remove a tree with something mounted under it ------------------------

const mounted = [];
function mountIn(stageDir) {
  for (const [where, args] of [["proc", ["-t", "proc", "proc"]], ["dev", ["--bind", "/dev"]]]) {
    const at = path.join(stageDir, where);
    fs.mkdirSync(at, { recursive: true });
    run("mount", [...args, at]);
    mounted.push(at);
  }
}
function unmountAll() {
  while (mounted.length > 0) spawnSync("umount", ["-l", mounted.pop()], { stdio: "inherit" });
}
function removeTree(dir) {
  const mounts = fs.readFileSync("/proc/self/mounts", "utf8").split("\n").map((l) => l.split(" ")[1]);
  if (mounts.some((m) => m && (m === dir || m.startsWith(dir + "/"))))
    throw new Error(`${dir} has mounts under it: not removed`);
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---- the base root -----------------------------------------------------------------------

function base() {
  const dir = path.join(WORK, "base");
  if (fs.existsSync(path.join(dir, "etc", "debian_version"))) return dir;
  const tmp = dir + ".tmp";
  removeTree(tmp);
  log(`debootstrap --variant=minbase bookworm (${MIRROR})`);
  run("debootstrap", ["--variant=minbase", "bookworm", tmp, MIRROR]);
  fs.renameSync(tmp, dir);
  return dir;
}

// ---- the context, filtered by Dockerfile.dockerignore -------------------------------------

function contextAllows(rel) {
  const file = path.join(__dirname, "Dockerfile.dockerignore");
  let allowed = true;
  for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const neg = line.startsWith("!");
    const pat = (neg ? line.slice(1) : line).replace(/\/$/, "");
    const hit = pat === "*" || rel === pat || rel.startsWith(pat + "/");
    if (hit) allowed = neg;
  }
  return allowed;
}

// ---- one stage ---------------------------------------------------------------------------

function words(args) {
  if (args.trim().startsWith("[")) return JSON.parse(args);
  return args.trim().split(/\s+/);
}

function envPairs(args) {
  const out = {};
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S*)/g;
  let m;
  while ((m = re.exec(args)) !== null) out[m[1]] = m[3] !== undefined ? m[3] : m[2];
  return out;
}

function copyInto(src, dst) {
  const st = fs.statSync(src);
  if (st.isDirectory()) {
    fs.mkdirSync(dst, { recursive: true });
    run("cp", ["-a", src + "/.", dst + "/"]);
  } else {
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    run("cp", ["-a", src, dst]);
  }
}

function buildStage(stage, index, stages) {
  const dir = path.join(WORK, `stage-${stage.name || index}`);
  removeTree(dir);
  log(`stage ${stage.name || index}: FROM ${stage.from} = a copy of the minbase root`);
  run("cp", ["-a", base(), dir]);
  fs.copyFileSync("/etc/resolv.conf", path.join(dir, "etc", "resolv.conf"));
  const st = { dir, env: { PATH: PATH_IN }, workdir: "/", user: "root", meta: {} };
  mountIn(dir);
  try {
    for (const ins of stage.ins) {
      switch (ins.op) {
        case "ENV":
          Object.assign(st.env, envPairs(ins.args));
          break;
        case "WORKDIR":
          st.workdir = path.posix.resolve(st.workdir, ins.args.trim());
          fs.mkdirSync(path.join(dir, st.workdir), { recursive: true });
          break;
        case "RUN": {
          log(`stage ${stage.name || index}: RUN (line ${ins.line})`);
          const envArgs = Object.entries(st.env).map(([k, v]) => `${k}=${v}`);
          const argv = ins.args.trim().startsWith("[") ? JSON.parse(ins.args)
            : ["/bin/sh", "-c", `cd '${st.workdir}' && ${ins.args}`];
          run("chroot", [`--userspec=${st.user === "root" ? "0:0" : st.user}`, dir, "/usr/bin/env", "-i",
            "DEBIAN_FRONTEND=noninteractive", ...envArgs, ...argv]);
          break;
        }
        case "COPY": {
          const w = words(ins.args);
          const from = w.find((x) => x.startsWith("--from="));
          const list = w.filter((x) => !x.startsWith("--"));
          const dst = path.posix.resolve(st.workdir, list.pop());
          for (const src of list) {
            let source;
            if (from) {
              const name = from.slice("--from=".length);
              const j = stages.findIndex((s) => s.name === name);
              source = path.join(WORK, `stage-${name}`, path.posix.resolve("/", src));
              if (j < 0) throw new Error(`COPY --from=${name}: no such stage`);
            } else {
              const rel = path.posix.normalize(src).replace(/^\.\/?/, "").replace(/\/$/, "");
              if (rel !== "" && !contextAllows(rel))
                throw new Error(`COPY ${src}: excluded by Dockerfile.dockerignore`);
              source = path.join(ROOT, rel);
            }
            const intoDir = dst.endsWith("/") || list.length > 1 || fs.statSync(source).isDirectory();
            copyInto(source, path.join(dir, intoDir && !fs.statSync(source).isDirectory()
              ? path.posix.join(dst, path.basename(source)) : dst));
          }
          break;
        }
        case "USER":
          st.user = ins.args.trim();
          break;
        default:
          st.meta[ins.op] = ins.args;
      }
    }
  } finally {
    unmountAll();
  }
  return st;
}

// ---- trying the runtime root --------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on("error", reject);
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function waitExit(child, ms) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => resolve(null), ms);
    child.on("exit", (code) => { clearTimeout(t); resolve(code); });
  });
}

async function tryRuntime(st) {
  const dir = st.dir;
  const bin = "/usr/local/bin/botgate";
  const ldd = execFileSync("chroot", [dir, "/usr/bin/ldd", bin], { encoding: "utf8" });
  if (/not found/.test(ldd)) throw new Error(`libraries missing in the runtime root:\n${ldd}`);
  log("ldd: every library botgate links resolves in the runtime root");

  const [redisPort, tlsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no", "--dir", WORK], { stdio: "ignore" });
  const children = [redis];
  mountIn(dir);
  try {
    const env = { ...st.env, BOTGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
      BOTGATE_LISTEN: `https://127.0.0.1:${tlsPort}`, BOTGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      BOTGATE_RELAY_LISTEN: "" };
    const entry = [...words(st.meta.ENTRYPOINT), ...(st.meta.CMD ? words(st.meta.CMD) : [])];
    const user = st.user;
    if (/^(root|0)(:|$)/.test(user)) throw new Error("the runtime stage runs as root");
    log(`starting ${entry.join(" ")} as ${user} in ${st.workdir}`);
    const logFile = path.join(WORK, "botgate.log");
    const out = fs.openSync(logFile, "w");
    const gate = spawn("chroot", [`--userspec=${user}`, dir, "/bin/sh", "-c", `cd '${st.workdir}' && exec "$@"`,
      "sh", "/usr/bin/env", "-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...entry],
    { stdio: ["ignore", out, out] });
    children.push(gate);
    // the HEALTHCHECK's own command, inside the root, on the admin port chosen here
    const hc = words(st.meta.HEALTHCHECK.replace(/^.*?CMD\s+/, "")).map((a) => a.replace(":9090", `:${adminPort}`));
    let healthy = false;
    for (let i = 0; i < 100 && !healthy; i++) {
      await sleep(200);
      healthy = spawnSync("chroot", [`--userspec=${user}`, dir, ...hc], { stdio: "ignore" }).status === 0;
      if (gate.exitCode !== null) break;
    }
    if (!healthy) throw new Error(`the HEALTHCHECK never passed; botgate's log:\n${fs.readFileSync(logFile, "utf8")}`);
    log(`HEALTHCHECK passes: ${hc.join(" ")}`);
    // chroot execs sh, which execs env, which execs botgate: one process, the image's user
    const uid = fs.readFileSync(`/proc/${gate.pid}/status`, "utf8").match(/^Uid:\s+(\d+)/m)[1];
    const comm = fs.readFileSync(`/proc/${gate.pid}/comm`, "utf8").trim();
    if (comm !== "botgate" || uid === "0") throw new Error(`pid ${gate.pid} is ${comm}, uid ${uid}`);
    log(`botgate runs as uid ${uid}`);
    const body = JSON.stringify({ type: "message", id: `rootfs-${process.pid}`, channelId: "msteams",
      serviceUrl: "https://smba.trafficmanager.net/teams/", conversation: { id: "rootfs" }, text: "hello" });
    const status = execFileSync("curl", ["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H",
      "Content-Type: application/json", "--data", body, `https://127.0.0.1:${tlsPort}/api/messages`], { encoding: "utf8" });
    const xlen = execFileSync("redis-cli", ["-p", String(redisPort), "XLEN", "botgate:activities"], { encoding: "utf8" }).trim();
    if (status !== "202" || xlen !== "1") throw new Error(`POST /api/messages: ${status}, XLEN ${xlen}`);
    log("POST /api/messages: 202, and the stream holds it");
    gate.kill("SIGTERM");
    const code = await waitExit(gate, 40000);
    if (code !== 0) throw new Error(`after SIGTERM: exit ${code}; log:\n${fs.readFileSync(logFile, "utf8")}`);
    log("SIGTERM: exit 0");
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all(children.map((c) => waitExit(c, 5000)));
    unmountAll();
  }
}

async function main() {
  if (process.getuid() !== 0) throw new Error("needs root (debootstrap, chroot, mount)");
  fs.mkdirSync(WORK, { recursive: true });
  const stages = [];
  for (const ins of instructions(fs.readFileSync(path.join(__dirname, "Dockerfile"), "utf8"))) {
    if (ins.op === "FROM") {
      const w = ins.args.split(/\s+/);
      if (w[0] !== "debian:12-slim") throw new Error(`FROM ${w[0]}: only debian:12-slim is reproduced`);
      stages.push({ from: w[0], name: /^as$/i.test(w[1] || "") ? w[2] : null, ins: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1].ins.push(ins);
    }
  }
  let st = null;
  stages.forEach((s, i) => { st = buildStage(s, i, stages); });
  const du = (d) => execFileSync("du", ["-sm", "--exclude=proc", d], { encoding: "utf8" }).split("\t")[0];
  log(`runtime root ${du(st.dir)} MB (minbase ${du(path.join(WORK, "base"))} MB)`);
  await tryRuntime(st);
  log("ok: the Dockerfile's steps build and run");
}

main().catch((e) => {
  unmountAll();
  console.error(`rootfs: FAILED: ${e.message}`);
  process.exit(1);
});
