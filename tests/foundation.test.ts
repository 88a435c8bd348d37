// Tests of the package foundation: loading the native addon, CPU feature detection, kernel-tier
// selection (GEB_CPU_ISA), loading in several worker_threads, and the `geb-cpu` dispatcher with
// its `info` command, run in-process. tests/foundation-pack.test.ts runs the compiled bin.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it, vi } from "vitest";

import { runCli } from "../lib/cli.js";
// @ts-expect-error: a plain ES module script without type declarations
import { KERNEL_ISAS, listSources } from "../scripts/list-sources.mjs";
import { CpuFeatureError, InvalidArgumentError, ModelFormatError, InternalError, GebError } from "../lib/errors.js";
import { binding, bindingPath, cpuInfo, fromNativeError, KERNEL_TIERS, resolveTier } from "../lib/native.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const packageJson = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string };

// A tier of the other architecture, which this CPU can never run.
const foreignTier = process.arch === "arm64" ? "avx2" : "neon";

const savedEnv = { ...process.env };
afterEach(() => {
  for (const key of ["GEB_CPU_ISA", "GEB_CPU_BINARY"]) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
  vi.restoreAllMocks();
});

// Flags of the first processor in /proc/cpuinfo (x86 "flags", arm64 "Features").
function procCpuFlags(): Set<string> {
  const text = readFileSync("/proc/cpuinfo", "utf8");
  const line = text.split("\n").find((l) => l.startsWith("flags") || l.startsWith("Features"));
  return new Set((line ?? "").split(":")[1]?.trim().split(/\s+/) ?? []);
}

// Runs the CLI in-process and captures what it writes.
async function runCaptured(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  try {
    const code = await runCli(argv);
    return { code, stdout, stderr };
  } finally {
    vi.restoreAllMocks();
  }
}

describe("build source groups", () => {
  it("put each kernel file in one ISA group", () => {
    const kernelsDir = path.join(repoRoot, "native", "kernels");
    const kernelFiles = readdirSync(kernelsDir).filter((name) => name.endsWith(".cpp"));
    expect(kernelFiles.length).toBeGreaterThan(0);
    const grouped = (KERNEL_ISAS as string[]).flatMap((isa) => listSources(isa) as string[]);
    expect([...grouped].sort()).toEqual(kernelFiles.map((name) => `native/kernels/${name}`).sort());
  });

  it("compile CPU detection with the core", () => {
    const core = listSources("core") as string[];
    expect(core).toContain("native/cpu/cpu.cpp");
    expect(core).toContain("native/cpu/topology.cpp");
    expect(listSources("binding")).toContain("native/binding/addon.cpp");
    expect(listSources("tests")).toContain("native/tests/main.cpp");
  });

  it("reject an unknown group", () => {
    expect(() => listSources("avx1024")).toThrow(/unknown source group "avx1024"/);
  });
});

describe("native addon", () => {
  it("loads and reports the package version", () => {
    const addon = binding();
    expect(addon.version).toBe(packageJson.version);
    expect(existsSync(bindingPath())).toBe(true);
    expect(bindingPath().endsWith(".node")).toBe(true);
  });

  it("cpuFeatures has every flag as a boolean", () => {
    const features = binding().cpuFeatures();
    let expectedArch = "other";
    if (process.arch === "x64" || process.arch === "arm64") expectedArch = process.arch;
    expect(features.arch).toBe(expectedArch);
    const flags = Object.entries(features).filter(([key]) => key !== "arch");
    expect(flags.length).toBe(16);
    for (const [key, value] of flags) expect(typeof value, key).toBe("boolean");
    if (features.avx2) expect(features.osYmm).toBe(true);
    if (features.avx512f) expect(features.osZmm).toBe(true);
  });

  it("cpuFeatures agrees with /proc/cpuinfo", () => {
    expect(process.platform).toBe("linux");
    const flags = procCpuFlags();
    const features = binding().cpuFeatures();
    if (process.arch === "x64") {
      expect(features.avx2).toBe(flags.has("avx2"));
      expect(features.fma).toBe(flags.has("fma"));
      expect(features.f16c).toBe(flags.has("f16c"));
      expect(features.avx512f).toBe(flags.has("avx512f"));
      expect(features.avx512vnni).toBe(flags.has("avx512_vnni"));
      expect(features.avx512bf16).toBe(flags.has("avx512_bf16"));
    } else {
      expect(features.neon).toBe(flags.has("asimd"));
      expect(features.dotprod).toBe(flags.has("asimddp"));
    }
  });

  it("kernelTiers ascend from scalar to bestTier", () => {
    const tiers = binding().kernelTiers();
    expect(tiers[0]).toBe("scalar");
    expect(tiers[tiers.length - 1]).toBe(binding().bestTier());
    const order = tiers.map((t) => KERNEL_TIERS.indexOf(t));
    expect(order.every((index) => index >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(tiers).not.toContain(foreignTier);
    const features = binding().cpuFeatures();
    if (process.arch === "x64") {
      const hasAvx2Set = features.avx2 && features.fma && features.f16c;
      expect(tiers.includes("avx2")).toBe(hasAvx2Set);
      const hasVnniSet = tiers.includes("avx512") && features.avx512vnni;
      expect(tiers.includes("avx512vnni")).toBe(hasVnniSet);
    }
  });

  it("defaultThreads counts physical cores", () => {
    const threads = binding().defaultThreads();
    expect(Number.isInteger(threads)).toBe(true);
    expect(threads).toBeGreaterThanOrEqual(1);
    expect(threads).toBeLessThanOrEqual(os.availableParallelism());
  });

  it("loads in two worker threads at once", async () => {
    const file = bindingPath();
    const source = `
      const { parentPort, workerData } = require("node:worker_threads");
      const addon = require(workerData.file);
      parentPort.postMessage({
        version: addon.version,
        features: addon.cpuFeatures(),
        tiers: addon.kernelTiers(),
        threads: addon.defaultThreads(),
      });
    `;
    const runWorker = () =>
      new Promise<unknown>((resolve, reject) => {
        const worker = new Worker(source, { eval: true, workerData: { file } });
        worker.once("message", resolve);
        worker.once("error", reject);
        worker.once("exit", (code) => {
          if (code !== 0) reject(new Error(`worker exited with code ${code}`));
        });
      });
    const results = await Promise.all([runWorker(), runWorker()]);
    const expected = {
      version: binding().version,
      features: binding().cpuFeatures(),
      tiers: binding().kernelTiers(),
      threads: binding().defaultThreads(),
    };
    expect(results[0]).toEqual(expected);
    expect(results[1]).toEqual(expected);
  });
});

describe("kernel tier selection", () => {
  it("defaults to the best tier", () => {
    delete process.env.GEB_CPU_ISA;
    expect(resolveTier()).toBe(binding().bestTier());
    expect(resolveTier("")).toBe(binding().bestTier());
    const info = cpuInfo();
    expect(info.selectedTier).toBe(info.bestTier);
    expect(info.tierSource).toBe("best");
  });

  it("accepts any supported tier, ignoring case", () => {
    for (const tier of binding().kernelTiers()) {
      expect(resolveTier(tier.toUpperCase())).toBe(tier);
    }
    expect(resolveTier(" scalar ")).toBe("scalar");
  });

  it("honours GEB_CPU_ISA", () => {
    process.env.GEB_CPU_ISA = "scalar";
    expect(resolveTier()).toBe("scalar");
    const info = cpuInfo();
    expect(info.selectedTier).toBe("scalar");
    expect(info.tierSource).toBe("GEB_CPU_ISA");
    // An explicit request wins over the environment.
    expect(resolveTier(binding().bestTier())).toBe(binding().bestTier());
  });

  it("rejects an unknown tier name with InvalidArgumentError", () => {
    process.env.GEB_CPU_ISA = "sse9";
    const error = (() => {
      try {
        resolveTier();
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as GebError).code).toBe("ERR_GEB_INVALID_ARGUMENT");
    expect((error as GebError).message).toContain("GEB_CPU_ISA");
    expect((error as GebError).message).toContain("sse9");
    expect(() => cpuInfo()).toThrow(InvalidArgumentError);
    expect(() => resolveTier(42 as unknown as string)).toThrow(InvalidArgumentError);
  });

  it("rejects a tier this CPU lacks with CpuFeatureError", () => {
    const error = (() => {
      try {
        resolveTier(foreignTier);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(CpuFeatureError);
    expect((error as GebError).code).toBe("ERR_GEB_CPU_FEATURE");
    expect((error as GebError).message).toContain(foreignTier);
    expect((error as GebError).message).toContain("scalar");
    process.env.GEB_CPU_ISA = foreignTier;
    expect(() => resolveTier()).toThrow(CpuFeatureError);
  });
});

describe("native error mapping", () => {
  it("maps a native code to its error class", () => {
    const native = Object.assign(new Error("bad magic in /tmp/x.gguf"), { code: "ERR_GEB_MODEL_FORMAT" });
    const mapped = fromNativeError(native);
    expect(mapped).toBeInstanceOf(ModelFormatError);
    expect(mapped.code).toBe("ERR_GEB_MODEL_FORMAT");
    expect(mapped.message).toBe("bad magic in /tmp/x.gguf");
    expect(mapped.cause).toBe(native);
  });

  it("turns an error without a code into InternalError", () => {
    const mapped = fromNativeError(new TypeError("oops"));
    expect(mapped).toBeInstanceOf(InternalError);
    expect(mapped.message).toContain("oops");
    const passthrough = new CpuFeatureError("x");
    expect(fromNativeError(passthrough)).toBe(passthrough);
  });
});

/** Loads the addon afresh with GEB_CPU_BINARY set to `file`, and returns what binding() threw. */
async function bindingErrorFor(file: string): Promise<unknown> {
  process.env.GEB_CPU_BINARY = file;
  vi.resetModules();
  const fresh = await import("../lib/native.js");
  try {
    fresh.binding();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe("addon loader errors", () => {
  it("names the platform, each attempt and the fix", async () => {
    const missing = path.join(os.tmpdir(), `geb-cpu-missing-${process.pid}.node`);
    const caught = await bindingErrorFor(missing);
    expect((caught as GebError).code).toBe("ERR_GEB_NATIVE_LOAD");
    expect((caught as GebError).name).toBe("NativeLoadError");
    const message = (caught as Error).message;
    expect(message).toContain(`${process.platform}-${process.arch}`);
    expect(message).toContain(`N-API ${process.versions.napi}`);
    expect(message).toContain(`GEB_CPU_BINARY ${missing}: file not found`);
    expect(message).toContain("npm rebuild geb-cpu");
  });

  it("reports a file that is not an addon", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "geb-cpu-notaddon-"));
    try {
      const fake = path.join(dir, "fake.node");
      writeFileSync(fake, "not an ELF file");
      process.env.GEB_CPU_BINARY = fake;
      vi.resetModules();
      const fresh = await import("../lib/native.js");
      expect(() => fresh.binding()).toThrow(/GEB_CPU_BINARY .*fake\.node: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("never runs a script GEB_CPU_BINARY names", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "geb-cpu-script-"));
    const marker = path.join(dir, "ran");
    const script = path.join(dir, "addon.js");
    writeFileSync(script, `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "x");`);
    const disguised = path.join(dir, "addon.node");
    symlinkSync(script, disguised);
    const folder = path.join(dir, "folder.node");
    mkdirSync(folder);
    writeFileSync(path.join(folder, "index.js"), `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "x");`);
    try {
      for (const [file, reason] of [
        [script, "does not end in .node"],
        [disguised, `resolves to ${script}`],
        [folder, "not a regular file"],
      ] as const) {
        const caught = await bindingErrorFor(file);
        expect((caught as GebError).code, file).toBe("ERR_GEB_NATIVE_LOAD");
        expect((caught as Error).message).toContain(reason);
        expect((caught as Error).message).toContain("Node-API addon file (geb_cpu.node) built for this package");
        expect(existsSync(marker), file).toBe(false);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("loads the file GEB_CPU_BINARY names", async () => {
    const real = bindingPath();
    process.env.GEB_CPU_BINARY = real;
    vi.resetModules();
    const fresh = await import("../lib/native.js");
    expect(fresh.bindingPath()).toBe(real);
    expect(fresh.binding().version).toBe(packageJson.version);
  });
});

describe("geb-cpu CLI in-process", () => {
  it("--help lists commands and exits 0", async () => {
    const { code, stdout } = await runCaptured(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: geb-cpu <command>");
    expect(stdout).toMatch(/^ {2}info +show the version/m);
  });

  it("--version prints the package version", async () => {
    const { code, stdout } = await runCaptured(["--version"]);
    expect(code).toBe(0);
    expect(stdout).toBe(`${packageJson.version}\n`);
  });

  it("no arguments is a usage error", async () => {
    const { code, stderr } = await runCaptured([]);
    expect(code).toBe(2);
    expect(stderr).toContain("Usage: geb-cpu");
  });

  it("unknown command is a usage error", async () => {
    const { code, stderr } = await runCaptured(["frobnicate"]);
    expect(code).toBe(2);
    expect(stderr).toBe('geb-cpu: unknown command "frobnicate"; run "geb-cpu --help" for usage\n');
  });

  it("help info prints the info usage", async () => {
    const { code, stdout } = await runCaptured(["help", "info"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: geb-cpu info [--json]");
  });

  it("info prints tier, features and threads", async () => {
    delete process.env.GEB_CPU_ISA;
    const { code, stdout } = await runCaptured(["info"]);
    expect(code).toBe(0);
    expect(stdout).toContain(`geb-cpu:         ${packageJson.version}`);
    expect(stdout).toContain(`kernel tier:     ${binding().bestTier()} (best for this CPU`);
    expect(stdout).toContain(`default threads: ${binding().defaultThreads()} (physical cores)`);
    expect(stdout).toContain(`kernel tiers:    ${binding().kernelTiers().join(", ")}`);
  });

  it("info --json reports the forced tier", async () => {
    process.env.GEB_CPU_ISA = "scalar";
    const { code, stdout } = await runCaptured(["info", "--json"]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as Record<string, unknown>;
    expect(report.version).toBe(packageJson.version);
    expect(report.selectedTier).toBe("scalar");
    expect(report.tierSource).toBe("GEB_CPU_ISA");
    expect(report.bestTier).toBe(binding().bestTier());
    expect(report.tiers).toEqual(binding().kernelTiers());
    expect(report.defaultThreads).toBe(binding().defaultThreads());
    expect(report.features).toEqual(binding().cpuFeatures());
    expect(report.addonPath).toBe(bindingPath());
  });

  it("info with an unsupported GEB_CPU_ISA exits 1 with the code", async () => {
    process.env.GEB_CPU_ISA = foreignTier;
    const { code, stderr } = await runCaptured(["info"]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^geb-cpu: kernel tier .* \(ERR_GEB_CPU_FEATURE\)\n$/);
  });

  it("info with an unknown option exits 2", async () => {
    const { code, stderr } = await runCaptured(["info", "--bogus"]);
    expect(code).toBe(2);
    expect(stderr).toContain("geb-cpu: ");
    expect(stderr).toContain("--bogus");
    expect(stderr).toContain("(ERR_GEB_INVALID_ARGUMENT)");
  });
});
