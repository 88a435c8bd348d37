#!/usr/bin/env node
// Side-by-side benchmark of geb-cpu against llama.cpp (node-llama-cpp 3.21.1, installed into
// bench/node_modules only). `npm run bench` runs the full set; `npm run bench -- --quick` a
// subset that takes a few minutes once its model file exists.
//
// For each model file and thread count the two engines run alternately for several rounds, each
// in its own process (bench/worker.mjs). Every number reported is the median over the rounds.
// Cases: prefill of 128 and 512 tokens, decode of 128 tokens after a 16-token prompt and 8
// untimed decode steps, one sequence, greedy. llama-tiny decodes 256 tokens (a step takes under a
// millisecond, so fewer would time mostly noise), and on it "tg api" times decode through our
// public generate() call as well (bench/worker.mjs, engine "ours-api"). The same run measures the memory read bandwidth (bench/bandwidth.mjs) and
// reports decode as a share of the bandwidth roofline: weight bytes read per token / bandwidth.
// Before timing anything it checks that both engines predict the same top-1 token for the same
// prompt on the F32 files and prints the result.
//
// Options:
//   --quick            llama-tiny plus the Q4_0 and Q8_0 GEB-1.3B files, 2 threads, 1 round
//   --rounds N         rounds per case (default 3; quick 1)
//   --types a,b        GEB-1.3B GGUF types (default f32,f16,q8_0,q4_0)
//   --threads a,b      thread counts (default 1,2)
//   --no-geb-dir       skip the BF16 GEB directory (quantize-at-load) case
//   --models a,b       which models: llama-tiny, geb (default both); `--models llama-tiny`
//                      measures the fixed cost of a step in under a minute
//   --prepare          install, build and generate the model files the other options select,
//                      then stop without timing anything
//
// On a fresh clone the bench installs the root package's dependencies, builds the addon and the
// TypeScript sources, installs the peer into bench/ and generates its files before it times anything.
//
// Output: a table on stdout, bench/results/latest.json and bench/results/latest.md.
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { copyFile, mkdir, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const LLAMA_TINY = path.resolve(repo, "../shared/models/llama-tiny/llama-tiny.gguf");

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    types: { type: "string" },
    threads: { type: "string" },
    "no-geb-dir": { type: "boolean", default: false },
    models: { type: "string" },
    prepare: { type: "boolean", default: false },
  },
});
const models = (args.models ?? "llama-tiny,geb").split(",").filter(Boolean);
for (const name of models) {
  if (name !== "llama-tiny" && name !== "geb") throw new Error(`--models: unknown model "${name}"; expected llama-tiny or geb`);
}
const quick = args.quick;
const rounds = Number(args.rounds ?? (quick ? 1 : 3));
const types = (args.types ?? (quick ? "q4_0,q8_0" : "f32,f16,q8_0,q4_0")).split(",").filter(Boolean);
const threadCounts = (args.threads ?? (quick ? "2" : "1,2")).split(",").map(Number);
const prefillLengths = quick ? [128] : [128, 512];
const decodeSteps = quick ? 32 : 128;
const tinyDecodeSteps = 256;
const contextSize = 1024;

function log(message) {
  process.stderr.write(`[bench] ${message}\n`);
}

// bench/ has its own package.json and lock file; installing it never touches the root package.
// Install scripts are skipped: node-llama-cpp ships prebuilt binaries in optional packages
// (@node-llama-cpp/linux-x64, ...) and is started with build: "never".
function ensureBenchDependencies() {
  if (existsSync(path.join(here, "node_modules/node-llama-cpp/package.json"))) return;
  const command = existsSync(path.join(here, "package-lock.json")) ? "ci" : "install";
  log(`installing bench dependencies (npm ${command} --prefix bench --ignore-scripts)`);
  const result = spawnSync("npm", [command, "--prefix", here, "--ignore-scripts", "--no-audit", "--no-fund"], { stdio: "inherit" });
  if (result.status !== 0) throw new Error(`npm ${command} in bench/ failed with status ${result.status}`);
}

// The bench imports the compiled package (dist/) and its native addon (build/Release). A fresh
// clone has neither, so they are installed and built here; install scripts are skipped, because the
// build runs explicitly.
function runNpm(args, purpose) {
  log(`${purpose} (npm ${args.join(" ")})`);
  const result = spawnSync("npm", args, { cwd: repo, stdio: ["ignore", "inherit", "inherit"] });
  if (result.status !== 0) throw new Error(`npm ${args.join(" ")} failed with status ${result.status}; fix the error above and rerun the bench`);
}

function ensureBuilt() {
  if (!existsSync(path.join(repo, "node_modules/node-addon-api/package.json"))) {
    runNpm(["ci", "--ignore-scripts", "--no-audit", "--no-fund"], "installing the package's dependencies");
  }
  if (!existsSync(path.join(repo, "build/Release/geb_cpu.node"))) runNpm(["run", "build:native"], "building the native addon");
  const needed = ["dist/index.js", "dist/engine.js", "dist/model/load-plan.js", "dist/tools/random-checkpoint.js", "dist/formats/quantize.js"];
  if (!needed.every((file) => existsSync(path.join(repo, file)))) runNpm(["run", "build:ts"], "compiling the TypeScript sources");
  const missing = needed.filter((file) => !existsSync(path.join(repo, file)));
  if (missing.length > 0) throw new Error(`missing ${missing.join(", ")} after the build; run \`npm run build:ts\` and read its errors`);
}

// Workers load a copy of the native addon taken when the bench starts, so a rebuild of
// build/Release in the middle of a long run (other work on the same checkout) cannot make later
// cases fail or mix two builds. The copy's name is unique to this run: copying over a file that
// another run has loaded rewrites code under that process, which then crashes (SIGSEGV or
// SIGILL). GEB_CPU_BINARY, when set, wins.
let workerEnv = process.env;
let addonSnapshot = null;
async function snapshotAddon(cacheDir) {
  if (process.env.GEB_CPU_BINARY) return;
  const built = path.join(repo, "build/Release/geb_cpu.node");
  if (!existsSync(built)) throw new Error(`${built} is missing; run \`npm run build:native\` first`);
  await mkdir(cacheDir, { recursive: true });
  addonSnapshot = path.join(cacheDir, `geb_cpu.${process.pid}.${Date.now()}.node`);
  await copyFile(built, addonSnapshot);
  process.on("exit", () => rmSync(addonSnapshot, { force: true }));
  workerEnv = { ...process.env, GEB_CPU_BINARY: addonSnapshot };
}

function runWorker(job) {
  const result = spawnSync(process.execPath, [path.join(here, "worker.mjs"), JSON.stringify(job)], {
    cwd: here,
    env: workerEnv,
    encoding: "utf8",
    maxBuffer: 16 * 2 ** 20,
    timeout: 30 * 60 * 1000,
  });
  const line = (result.stdout ?? "").trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line);
  } catch {
    return { ok: false, error: `worker exited with status ${result.status}: ${(result.stderr ?? "").slice(-500)}` };
  }
}

const median = (values) => {
  const sorted = values.filter((v) => typeof v === "number" && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

// Bytes of weights one decode step reads: every tensor once, except the embedding table, of which
// only one row is read (unless it is also the output matrix).
async function weightBytesPerToken(file) {
  const { readGguf } = await import(path.join(repo, "dist/formats/gguf.js"));
  const gguf = await readGguf(file);
  const tied = !gguf.tensors.some((t) => t.name === "output.weight");
  let bytes = 0;
  for (const tensor of gguf.tensors) {
    if (tensor.name === "token_embd.weight" && !tied) bytes += tensor.nbytes / Number(tensor.ne[1] ?? 1);
    else bytes += tensor.nbytes;
  }
  return bytes;
}

async function main() {
  ensureBenchDependencies();
  ensureBuilt();
  const { measureReadBandwidth } = await import("./bandwidth.mjs");
  const { benchCacheDir, ensureBenchModels } = await import("./models.mjs");
  await snapshotAddon(benchCacheDir());

  const files = [];
  if (models.includes("llama-tiny")) {
    files.push({ label: "llama-tiny f32", file: LLAMA_TINY, engines: ["ours", "ours-api", "peer"], decode: tinyDecodeSteps });
  }
  if (models.includes("geb")) {
    const geb = await ensureBenchModels(types, { gebDir: !quick && !args["no-geb-dir"], log });
    for (const type of types) files.push({ label: `geb-1.3b ${type}`, file: geb[type], engines: ["ours", "peer"], decode: decodeSteps });
    if (geb.gebDir) {
      files.push({ label: "geb-1.3b bf16 dir -> q8_0 at load", file: geb.gebDir, engines: ["ours"], weightType: "q8_0", decode: decodeSteps });
    }
  }
  if (args.prepare) {
    log(`prepared: ${files.map((entry) => entry.file).join(", ")}`);
    return;
  }

  // measured before and after the cases; the better pass counts, because other work on a shared
  // machine can only lower a bandwidth reading
  const bandwidth = {};
  const probeBandwidth = async (when) => {
    for (const threads of threadCounts) {
      const measured = (await measureReadBandwidth(threads, 5, workerEnv.GEB_CPU_BINARY)).bytesPerSecond;
      bandwidth[threads] = Math.max(bandwidth[threads] ?? 0, measured);
      log(`read bandwidth ${when}, ${threads} thread(s): ${(measured / 1e9).toFixed(1)} GB/s`);
    }
  };
  await probeBandwidth("before");

  // check before timing: same top-1 for the same prompt, on the F32 files
  const checks = [];
  for (const entry of files.filter((f) => f.label.endsWith("f32"))) {
    const job = { file: entry.file, threads: threadCounts.at(-1), contextSize, prefill: [], decode: 0 };
    const ours = runWorker({ ...job, engine: "ours" });
    const peer = runWorker({ ...job, engine: "peer" });
    const agree = ours.ok && peer.ok && ours.top1 === peer.top1;
    checks.push({ label: entry.label, ours: ours.top1 ?? ours.error, peer: peer.top1 ?? peer.error, agree });
    log(`top-1 check ${entry.label}: ours ${ours.top1 ?? ours.error}, llama.cpp ${peer.top1 ?? peer.error} -> ${agree ? "agree" : "DIFFER"}`);
  }

  const rows = [];
  for (const entry of files) {
    const perToken = entry.weightType ? null : await weightBytesPerToken(entry.file);
    const fileBytes = (await stat(entry.file)).isDirectory() ? null : (await stat(entry.file)).size;
    for (const threads of threadCounts) {
      const runs = { ours: [], "ours-api": [], peer: [] };
      for (let round = 0; round < rounds; round++) {
        // alternate which engine goes first, so neither always meets a warmer page cache
        const order = round % 2 === 0 ? entry.engines : [...entry.engines].reverse();
        for (const engine of order) {
          // the API run times decode only; the other two time prefill too
          const prefill = engine === "ours-api" ? [] : prefillLengths;
          const job = { engine, file: entry.file, threads, contextSize, prefill, decode: entry.decode, weightType: entry.weightType };
          if (entry.weightType) job.quantCacheDir = path.join(path.dirname(entry.file), "quantized");
          const result = runWorker(job);
          if (!result.ok) log(`${entry.label} t=${threads} ${engine}: ${result.error}`);
          runs[engine].push(result);
          log(`${entry.label} t=${threads} round ${round + 1} ${engine}: ${result.ok ? `decode ${result.decode?.toFixed(2)} tok/s` : "failed"}`);
        }
      }
      const summary = (engine) => {
        const ok = runs[engine].filter((r) => r.ok);
        if (ok.length === 0) return null;
        const prefill = {};
        for (const n of prefillLengths) prefill[n] = median(ok.map((r) => r.prefill[n]));
        return {
          prefill,
          decode: median(ok.map((r) => r.decode)),
          loadMs: median(ok.map((r) => r.loadMs)),
          rssAfterLoadMiB: median(ok.map((r) => r.rssAfterLoadMiB)),
          rssAfterRunMiB: median(ok.map((r) => r.rssAfterRunMiB)),
          errors: runs[engine].filter((r) => !r.ok).map((r) => r.error),
        };
      };
      const ours = summary("ours");
      const peer = entry.engines.includes("peer") ? summary("peer") : null;
      const api = entry.engines.includes("ours-api") ? summary("ours-api") : null;
      const roofline = perToken ? bandwidth[threads] / perToken : null;
      rows.push({
        label: entry.label,
        threads,
        fileBytes,
        weightBytesPerToken: perToken,
        rooflineTokensPerSecond: roofline,
        decodeSteps: entry.decode,
        ours,
        peer,
        apiDecode: api?.decode ?? null,
        apiErrors: api?.errors ?? [],
        decodeRatio: ours?.decode && peer?.decode ? ours.decode / peer.decode : null,
        decodeRooflineShare: ours?.decode && roofline ? ours.decode / roofline : null,
        prefillRatio: Object.fromEntries(prefillLengths.map((n) => [n, ours?.prefill[n] && peer?.prefill[n] ? ours.prefill[n] / peer.prefill[n] : null])),
      });
    }
  }

  await probeBandwidth("after");
  for (const row of rows) {
    if (!row.weightBytesPerToken) continue;
    row.rooflineTokensPerSecond = bandwidth[row.threads] / row.weightBytesPerToken;
    row.decodeRooflineShare = row.ours?.decode ? row.ours.decode / row.rooflineTokensPerSecond : null;
  }

  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, memoryGiB: os.totalmem() / 2 ** 30, node: process.version, loadAverage: os.loadavg() };
  const report = { date: new Date().toISOString(), quick, rounds, contextSize, decodeSteps, prefillLengths, machine, bandwidth, checks, rows };
  await mkdir(path.join(here, "results"), { recursive: true });
  await writeFile(path.join(here, "results/latest.json"), JSON.stringify(report, null, 2) + "\n");
  const markdown = renderMarkdown(report);
  await writeFile(path.join(here, "results/latest.md"), markdown);
  process.stdout.write(markdown);
}

const fmt = (v, digits = 1) => (v === null || v === undefined ? "-" : v.toFixed(digits));

function renderMarkdown(report) {
  const lines = [];
  lines.push(`# geb-cpu vs llama.cpp (node-llama-cpp 3.21.1)`);
  lines.push("");
  lines.push(
    `${report.date}; ${report.machine.cpu}, ${report.machine.cores} cores, Node ${report.machine.node}; ` +
      `${report.rounds} round(s), medians; context ${report.contextSize}; decode ${report.decodeSteps} tokens (llama-tiny ${tinyDecodeSteps}) after a 16-token prompt and 8 untimed steps; ` +
      `load average at the end ${report.machine.loadAverage.map((v) => v.toFixed(1)).join(" ")}.`,
  );
  lines.push("");
  lines.push(
    `Read bandwidth (native probe, bench/bandwidth.mjs): ` +
      Object.entries(report.bandwidth)
        .map(([t, b]) => `${t} thread(s) ${(b / 1e9).toFixed(1)} GB/s`)
        .join(", "),
  );
  lines.push("");
  for (const check of report.checks) lines.push(`Top-1 check ${check.label}: ours ${check.ours}, llama.cpp ${check.peer} (${check.agree ? "agree" : "DIFFER"})`);
  lines.push("");
  const prefillHeads = report.prefillLengths.flatMap((n) => [`pp${n} ours`, `pp${n} l.cpp`, `pp${n} ratio`]);
  lines.push(`| model | thr | ${prefillHeads.join(" | ")} | tg ours | tg api | tg l.cpp | tg ratio | tg % roofline | RSS load ours/l.cpp MiB | RSS end ours/l.cpp MiB | load s ours/l.cpp |`);
  lines.push(`|${" --- |".repeat(2 + prefillHeads.length + 8)}`);
  for (const row of report.rows) {
    const prefill = report.prefillLengths.flatMap((n) => [fmt(row.ours?.prefill[n]), fmt(row.peer?.prefill[n]), fmt(row.prefillRatio[n], 2)]);
    lines.push(
      `| ${row.label} | ${row.threads} | ${prefill.join(" | ")} | ${fmt(row.ours?.decode, 2)} | ${fmt(row.apiDecode, 2)} | ${fmt(row.peer?.decode, 2)} | ${fmt(row.decodeRatio, 2)} | ` +
        `${row.decodeRooflineShare === null ? "-" : (100 * row.decodeRooflineShare).toFixed(0) + "%"} | ` +
        `${fmt(row.ours?.rssAfterLoadMiB, 0)}/${fmt(row.peer?.rssAfterLoadMiB, 0)} | ${fmt(row.ours?.rssAfterRunMiB, 0)}/${fmt(row.peer?.rssAfterRunMiB, 0)} | ` +
        `${fmt(row.ours && row.ours.loadMs / 1000, 1)}/${fmt(row.peer && row.peer.loadMs / 1000, 1)} |`,
    );
  }
  lines.push("");
  lines.push(
    "Tokens/s; pp = prefill, tg = decode; tg ours = Engine.forward() plus an argmax per step, tg api = Model.generate() (llama-tiny only); " +
      "ratio = tg ours / llama.cpp. RSS is the worker process's resident set (mapped weight pages count once touched).",
  );
  for (const row of report.rows) {
    for (const [engine, summary] of [["ours", row.ours], ["llama.cpp", row.peer]]) {
      if (summary?.errors?.length) lines.push(`- ${row.label} t=${row.threads} ${engine}: ${summary.errors.length} failed run(s): ${summary.errors[0]}`);
    }
    if (row.apiErrors.length) lines.push(`- ${row.label} t=${row.threads} ours-api: ${row.apiErrors.length} failed run(s): ${row.apiErrors[0]}`);
  }
  return lines.join("\n") + "\n";
}

main().catch((error) => {
  process.stderr.write(`[bench] failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
