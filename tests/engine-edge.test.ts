// Edge cases of the native engine, through lib/engine.ts and the raw binding. Every bad argument,
// bad plan or call after dispose must end in a typed error with a code and leave the cache as it
// was. Also checks that creating and disposing engines in a loop releases file descriptors and
// mappings. Uses llama-tiny with a small context so the whole file runs in a few seconds.

import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdtempSync,
  openSync,
  closeSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../lib/engine.js";
import { GebError } from "../lib/errors.js";
import { openModelFiles } from "../lib/model/load-plan.js";
import type { ModelPlan } from "../lib/model/plan.js";
import { binding, bindingPath, KERNEL_TIERS } from "../lib/native.js";
import { LLAMA_TINY_GGUF } from "./fixtures.js";

const i32 = (...values: number[]): Int32Array => Int32Array.from(values);
const u8 = (...values: number[]): Uint8Array => Uint8Array.from(values);

function clonePlan(plan: ModelPlan): ModelPlan {
  return JSON.parse(JSON.stringify(plan)) as ModelPlan;
}

// Resolves to the `code` of the error that `run` throws or rejects with. Fails the test when `run` succeeds.
async function errorCode(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return String((error as { code?: unknown }).code);
  }
  throw new Error("expected an error, but the call succeeded");
}

function countModelMappings(file: string): number {
  return readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((line) => line.endsWith(file)).length;
}

let plan: ModelPlan;
let workDir: string;

beforeAll(async () => {
  plan = (await openModelFiles(LLAMA_TINY_GGUF)).plan;
  workDir = mkdtempSync(path.join(tmpdir(), "geb-engine-edge-"));
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

describe("Engine.forward argument checks", () => {
  let engine: Engine;

  beforeAll(async () => {
    engine = await Engine.create(plan, { threads: 1, contextSize: 16, nSeqMax: 2 });
  });

  afterAll(async () => {
    await engine.dispose();
  });

  it("rejects bad batches with codes", async () => {
    const cases: Array<[string, () => Promise<unknown>, string]> = [
      ["empty batch", () => engine.forward(i32(), i32(), i32(), u8()), "ERR_GEB_INVALID_ARGUMENT"],
      ["mismatched lengths", () => engine.forward(i32(0, 0), i32(0), i32(1, 2), u8(1, 1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["negative sequence id", () => engine.forward(i32(-1), i32(0), i32(1), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["sequence id nSeqMax", () => engine.forward(i32(2), i32(0), i32(1), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["huge sequence id", () => engine.forward(i32(2 ** 31 - 1), i32(0), i32(1), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["token nVocab", () => engine.forward(i32(0), i32(0), i32(engine.nVocab), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["negative token", () => engine.forward(i32(0), i32(0), i32(-5), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["position skips ahead", () => engine.forward(i32(0), i32(1), i32(1), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["negative position", () => engine.forward(i32(0), i32(-1), i32(1), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["repeated position", () => engine.forward(i32(0, 0), i32(0, 0), i32(1, 1), u8(1, 1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["position at contextSize", () => engine.forward(i32(0), i32(16), i32(1), u8(1)), "ERR_GEB_CONTEXT_OVERFLOW"],
      ["plain arrays", () => engine.forward([0] as never, [0] as never, [1] as never, [1] as never), "ERR_GEB_INVALID_ARGUMENT"],
      ["Float64Array tokens", () => engine.forward(i32(0), i32(0), new Float64Array(1) as never, u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["abort flag plain array", () => engine.forward(i32(0), i32(0), i32(1), u8(1), [1] as never), "ERR_GEB_INVALID_ARGUMENT"],
      ["abort flag Uint8Array", () => engine.forward(i32(0), i32(0), i32(1), u8(1), u8(1) as never), "ERR_GEB_INVALID_ARGUMENT"],
      ["empty abort flag", () => engine.forward(i32(0), i32(0), i32(1), u8(1), i32()), "ERR_GEB_INVALID_ARGUMENT"],
      // a plain ArrayBuffer could be detached or shrunk while the step reads it
      ["abort flag over ArrayBuffer", () => engine.forward(i32(0), i32(0), i32(1), u8(1), new Int32Array(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["null seqIds", () => engine.forward(null as never, i32(0), i32(1), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["null positions", () => engine.forward(i32(0), null as never, i32(1), u8(1)), "ERR_GEB_INVALID_ARGUMENT"],
      ["no arguments", () => (engine.forward as () => Promise<Float32Array>)(), "ERR_GEB_INVALID_ARGUMENT"],
    ];
    for (const [name, run, code] of cases) {
      expect(await errorCode(run), name).toBe(code);
    }
    expect(engine.sequenceLength(0)).toBe(0);
    expect(engine.sequenceLength(1)).toBe(0);
  });

  it("rejects a batch longer than the context", async () => {
    const n = 17;
    const positions = Int32Array.from({ length: n }, (_, i) => i);
    const code = await errorCode(() =>
      engine.forward(new Int32Array(n).fill(1), positions, new Int32Array(n).fill(1), new Uint8Array(n)),
    );
    expect(code).toBe("ERR_GEB_CONTEXT_OVERFLOW");
    expect(engine.sequenceLength(1)).toBe(0);
  });

  it("returns no logits when no entry wants them", async () => {
    engine.clearSequence(0);
    const logits = await engine.forward(i32(0, 0), i32(0, 1), i32(5, 6), u8(0, 0));
    expect(logits).toBeInstanceOf(Float32Array);
    expect(logits.length).toBe(0);
    expect(engine.sequenceLength(0)).toBe(2);
  });

  it("reads subarray views at their offsets", async () => {
    engine.clearSequence(0);
    const plain = await engine.forward(i32(0, 0), i32(0, 1), i32(7, 9), u8(0, 1));

    const ints = new Int32Array(16).fill(-99);
    const bytes = new Uint8Array(16).fill(9);
    const seqIds = ints.subarray(3, 5);
    seqIds.set([0, 0]);
    const positions = ints.subarray(8, 10);
    positions.set([0, 1]);
    const tokens = ints.subarray(11, 13);
    tokens.set([7, 9]);
    const wants = bytes.subarray(5, 7);
    wants.set([0, 1]);
    engine.clearSequence(0);
    const viewed = await engine.forward(seqIds, positions, tokens, wants);

    expect(viewed).toEqual(plain);
  });

  it("aborts on a shared flag and keeps lengths", async () => {
    engine.clearSequence(0);
    const flag = new Int32Array(new SharedArrayBuffer(4));
    flag[0] = 1;
    expect(await errorCode(() => engine.forward(i32(0, 0), i32(0, 1), i32(1, 2), u8(0, 1), flag))).toBe("ERR_GEB_ABORTED");
    expect(engine.sequenceLength(0)).toBe(0);

    flag[0] = 0;
    const logits = await engine.forward(i32(0, 0), i32(0, 1), i32(1, 2), u8(0, 1), flag);
    expect(logits.length).toBe(engine.nVocab);
    expect(engine.sequenceLength(0)).toBe(2);
  });

  it("rejects absurd truncate and shift values", async () => {
    engine.clearSequence(0);
    await engine.forward(i32(0, 0, 0), i32(0, 1, 2), i32(1, 2, 3), u8(0, 0, 0));
    const cases: Array<[string, () => unknown]> = [
      ["truncate negative", () => engine.truncateSequence(0, -1)],
      ["truncate 2^31", () => engine.truncateSequence(0, 2 ** 31)],
      ["truncate NaN", () => engine.truncateSequence(0, Number.NaN)],
      ["truncate fraction", () => engine.truncateSequence(0, 1.5)],
      ["truncate string", () => engine.truncateSequence(0, "1" as never)],
      ["truncate unknown sequence", () => engine.truncateSequence(99, 0)],
      ["shift negative keep", () => engine.shiftSequence(0, -1, 1)],
      ["shift past length", () => engine.shiftSequence(0, 1, 100)],
      ["shift int32 overflow", () => engine.shiftSequence(0, 2 ** 31 - 1, 2 ** 31 - 1)],
      ["clear unknown sequence", () => engine.clearSequence(4096)],
      ["length of -1", () => engine.sequenceLength(-1)],
    ];
    for (const [name, run] of cases) {
      expect(await errorCode(run), name).toBe("ERR_GEB_INVALID_ARGUMENT");
    }
    expect(engine.sequenceLength(0)).toBe(3);

    engine.truncateSequence(0, 1e9);
    expect(engine.sequenceLength(0)).toBe(3);
    engine.shiftSequence(0, 1, 1);
    expect(engine.sequenceLength(0)).toBe(2);
  });

  it("rejects calls while a step runs", async () => {
    engine.clearSequence(0);
    const step = engine.forward(i32(0), i32(0), i32(1), u8(1));
    expect(await errorCode(() => engine.forward(i32(1), i32(0), i32(1), u8(1)))).toBe("ERR_GEB_INVALID_ARGUMENT");
    expect(await errorCode(() => engine.truncateSequence(0, 0))).toBe("ERR_GEB_INVALID_ARGUMENT");
    expect((await step).length).toBe(engine.nVocab);
    expect(engine.sequenceLength(0)).toBe(1);
  });
});

describe("Engine.dispose", () => {
  it("waits for a running step", async () => {
    const engine = await Engine.create(plan, { threads: 1, contextSize: 16 });
    const step = engine.forward(i32(0), i32(0), i32(1), u8(1));
    const disposed = engine.dispose();

    expect(await errorCode(() => engine.forward(i32(0), i32(0), i32(1), u8(1)))).toBe("ERR_GEB_DISPOSED");
    expect((await step).length).toBe(engine.nVocab);
    await disposed;
    await engine.dispose();
    expect(await errorCode(() => engine.info())).toBe("ERR_GEB_DISPOSED");
    expect(await errorCode(() => engine.sequenceLength(0))).toBe("ERR_GEB_DISPOSED");
  });

  it("releases fds and mappings in a loop", async () => {
    const fdsBefore = readdirSync("/proc/self/fd").length;
    for (let i = 0; i < 40; i++) {
      const engine = await Engine.create(plan, { threads: 2, contextSize: 16 });
      await engine.forward(i32(0), i32(0), i32(1), u8(1));
      await engine.dispose();
    }
    expect(countModelMappings(LLAMA_TINY_GGUF)).toBe(0);
    expect(readdirSync("/proc/self/fd").length).toBeLessThanOrEqual(fdsBefore + 2);
  });
});

describe("Engine.create plan checks", () => {
  const options = { threads: 1, contextSize: 16 };

  it("rejects broken plans with codes", async () => {
    const emptyFile = path.join(workDir, "empty.gguf");
    writeFileSync(emptyFile, "");

    const cases: Array<[string, (p: ModelPlan) => void, string]> = [
      ["offset past the end", (p) => void (p.tensors[0]!.offset = 1e15), "ERR_GEB_MODEL_FORMAT"],
      ["negative offset", (p) => void (p.tensors[0]!.offset = -1), "ERR_GEB_INVALID_ARGUMENT"],
      ["offset 2^53", (p) => void (p.tensors[0]!.offset = 2 ** 53), "ERR_GEB_INVALID_ARGUMENT"],
      ["nbytes off by 4", (p) => void (p.tensors[0]!.nbytes += 4), "ERR_GEB_MODEL_FORMAT"],
      ["type q8_0 with f32 bytes", (p) => void (p.tensors[0]!.type = "q8_0"), "ERR_GEB_MODEL_FORMAT"],
      ["unknown type", (p) => void (p.tensors[0]!.type = "q5_k" as never), "ERR_GEB_UNSUPPORTED"],
      ["wrong rank", (p) => void (p.tensors[0]!.shape = [p.hparams.nVocab]), "ERR_GEB_MODEL_FORMAT"],
      ["rank 3", (p) => void (p.tensors[0]!.shape = [1, 2, 3]), "ERR_GEB_INVALID_ARGUMENT"],
      ["missing ffn_up", (p) => void (p.tensors = p.tensors.filter((t) => t.name !== "blk.2.ffn_up")), "ERR_GEB_MODEL_FORMAT"],
      ["missing output_norm", (p) => void (p.tensors = p.tensors.filter((t) => t.name !== "output_norm")), "ERR_GEB_MODEL_FORMAT"],
      ["duplicate tensor", (p) => void p.tensors.push({ ...p.tensors[0]! }), "ERR_GEB_MODEL_FORMAT"],
      ["file index past files", (p) => void (p.tensors[0]!.file = 3), "ERR_GEB_MODEL_FORMAT"],
      ["missing file", (p) => void (p.files = [path.join(workDir, "absent.gguf")]), "ERR_GEB_IO"],
      ["empty file", (p) => void (p.files = [emptyFile]), "ERR_GEB_MODEL_FORMAT"],
      ["nHeadKv not dividing nHead", (p) => void (p.hparams.nHeadKv = 3), "ERR_GEB_MODEL_FORMAT"],
      ["odd ropeDim", (p) => void (p.hparams.ropeDim = 33), "ERR_GEB_MODEL_FORMAT"],
      ["unknown architecture", (p) => void (p.hparams.arch = "gpt2" as never), "ERR_GEB_UNSUPPORTED"],
    ];
    for (const [name, edit, code] of cases) {
      const broken = clonePlan(plan);
      edit(broken);
      expect(await errorCode(() => Engine.create(broken, options)), name).toBe(code);
    }
  });

  it("rejects a file truncated after planning", async () => {
    const copy = path.join(workDir, "truncated.gguf");
    copyFileSync(LLAMA_TINY_GGUF, copy);
    const copied = (await openModelFiles(copy)).plan;
    truncateSync(copy, 1 << 20);

    const error = await Engine.create(copied, options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GebError);
    expect((error as GebError).code).toBe("ERR_GEB_MODEL_FORMAT");
    expect((error as GebError).message).toContain("truncated");
  });

  it("rejects a KV cache too large to reserve", async () => {
    const raw = binding();
    const code = await errorCode(
      () => new raw.Engine(plan, { threads: 1, tier: "scalar", kvType: "f32", nSeqMax: 4096, contextSize: 2 ** 31 - 1 }),
    );
    expect(code).toBe("ERR_GEB_IO");
  });

  it("raw binding rejects wrong types", async () => {
    const raw = binding();
    const good = { threads: 1, tier: "scalar", kvType: "f32", nSeqMax: 1, contextSize: 16 };
    const Ctor = raw.Engine as unknown as new (...args: unknown[]) => unknown;
    expect(await errorCode(() => new Ctor())).toBe("ERR_GEB_INVALID_ARGUMENT");
    expect(await errorCode(() => new Ctor(null, good))).toBe("ERR_GEB_INVALID_ARGUMENT");
    expect(await errorCode(() => new Ctor(plan))).toBe("ERR_GEB_INVALID_ARGUMENT");
    expect(await errorCode(() => new Ctor(plan, { ...good, threads: 0 }))).toBe("ERR_GEB_INVALID_ARGUMENT");
    const missingTier = KERNEL_TIERS.find((tier) => !(raw.kernelTiers() as string[]).includes(tier));
    expect(missingTier).toBeDefined();
    expect(await errorCode(() => new Ctor(plan, { ...good, tier: missingTier }))).toBe("ERR_GEB_CPU_FEATURE");
  });
});

describe("native robustness", () => {
  const options = { threads: 1, contextSize: 16 };
  const rawOptions = { threads: 1, tier: "scalar", kvType: "f32", nSeqMax: 1, contextSize: 16 };

  // Runs a plain ESM script in a child node process, so a crash (abort, SIGSEGV, hang) fails the
  // test instead of taking vitest down. `shell` prefixes a bash command such as a ulimit.
  function runChild(name: string, source: string, args: string[], shell = ""): { status: number | null; out: string } {
    const script = path.join(workDir, name);
    writeFileSync(script, source);
    const command = `${shell} exec ${JSON.stringify(process.execPath)} ${[script, ...args].map((a) => JSON.stringify(a)).join(" ")}`;
    const result = spawnSync("bash", ["-c", command], { encoding: "utf8", timeout: 60_000 });
    return { status: result.status, out: `${result.stdout}${result.stderr}${result.signal ? ` signal ${result.signal}` : ""}` };
  }

  it("survives worker.terminate() during a forward step", () => {
    const planFile = path.join(workDir, "plan.json");
    writeFileSync(planFile, JSON.stringify(plan));
    // The worker loads the addon directly and starts a long step. The main thread terminates it
    // right after the step is queued, four times, so steps complete while the worker shuts down.
    const source = `
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
if (isMainThread) {
  const [bin, planFile] = process.argv.slice(2);
  for (let round = 0; round < 4; round++) {
    const worker = new Worker(new URL(import.meta.url), { workerData: { bin, planFile } });
    await new Promise((resolve, reject) => { worker.once("message", resolve); worker.once("error", reject); });
    await new Promise((resolve) => setTimeout(resolve, round * 3));
    await worker.terminate();
  }
  console.log("main survived");
} else {
  const addon = createRequire(import.meta.url)(workerData.bin);
  const plan = JSON.parse(readFileSync(workerData.planFile, "utf8"));
  const engine = new addon.Engine(plan, { threads: 1, tier: "scalar", kvType: "f32", nSeqMax: 1, contextSize: 256 });
  const n = 256;
  const step = engine.forward(new Int32Array(n), Int32Array.from({ length: n }, (_, i) => i), new Int32Array(n).fill(5), new Uint8Array(n).fill(1));
  parentPort.postMessage("started");
  await step;
}
`;
    const { status, out } = runChild("terminate-worker.mjs", source, [bindingPath(), planFile]);
    expect(out).toContain("main survived");
    expect(status).toBe(0);
  }, 60_000);

  it("raw binding rejects unshared abort flags", async () => {
    const raw = binding();
    const engine = new raw.Engine(plan, rawOptions);
    const resizable = new ArrayBuffer(16, { maxByteLength: 64 } as never);
    for (const flag of [new Int32Array(4), new Int32Array(resizable)]) {
      expect(await errorCode(() => engine.forward(i32(0), i32(0), i32(1), u8(1), flag))).toBe("ERR_GEB_INVALID_ARGUMENT");
    }
    const shared = new Int32Array(new SharedArrayBuffer(4));
    expect((await engine.forward(i32(0), i32(0), i32(1), u8(1), shared)).length).toBe(engine.info().nVocab);
    await engine.dispose();
  });

  it("fails steps after the file changes", async () => {
    for (const change of ["truncate", "rewrite"] as const) {
      const copy = path.join(workDir, `changed-${change}.gguf`);
      copyFileSync(LLAMA_TINY_GGUF, copy);
      // an old mtime, so the rewrite below changes it even on a coarse-grained clock
      utimesSync(copy, new Date(2020, 0, 1), new Date(2020, 0, 1));
      const engine = await Engine.create((await openModelFiles(copy)).plan, options);
      expect((await engine.forward(i32(0), i32(0), i32(1), u8(1))).length).toBe(engine.nVocab);
      if (change === "truncate") {
        truncateSync(copy, 1 << 20);
      } else {
        const fd = openSync(copy, "r+");
        writeSync(fd, Buffer.alloc(4096, 0x7f), 0, 4096, 1 << 16);
        closeSync(fd);
      }
      const error = await engine.forward(i32(0), i32(1), i32(2), u8(1)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, change).toBeInstanceOf(GebError);
      expect((error as GebError).code, change).toBe("ERR_GEB_MODEL_FORMAT");
      expect((error as GebError).message, change).toContain("changed on disk");
      expect(engine.sequenceLength(0)).toBe(1);
      await engine.dispose();
    }
  });

  it("keeps working after file deletion", async () => {
    const copy = path.join(workDir, "deleted.gguf");
    copyFileSync(LLAMA_TINY_GGUF, copy);
    const engine = await Engine.create((await openModelFiles(copy)).plan, options);
    const before = await engine.forward(i32(0, 0), i32(0, 1), i32(1, 2), u8(0, 1));
    rmSync(copy);
    engine.clearSequence(0);
    expect(await engine.forward(i32(0, 0), i32(0, 1), i32(1, 2), u8(0, 1))).toEqual(before);
    await engine.dispose();
  });

  it("rejects a FIFO or directory promptly", async () => {
    const fifo = path.join(workDir, "model.fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    for (const file of [fifo, workDir]) {
      const broken = clonePlan(plan);
      broken.files = [file];
      expect(await errorCode(() => Engine.create(broken, options)), file).toBe("ERR_GEB_MODEL_FORMAT");
    }
  });

  it("maps a failed huge allocation to ERR_GEB_IO", async () => {
    // 2^20 rows times 2^20 tokens is a 4 TiB output, which cannot be allocated
    const rows = 1 << 20;
    const w = new Uint8Array(rows * 4);
    const x = new Float32Array(rows);
    const code = await errorCode(() => binding().kernels.matmul("f32", w, rows, 1, x, rows, "scalar"));
    expect(code).toBe("ERR_GEB_IO");
  });

  it("maps a thread start failure to ERR_GEB_IO", () => {
    const planFile = path.join(workDir, "plan-threads.json");
    writeFileSync(planFile, JSON.stringify(plan));
    // glibc gives each thread a stack of the stack limit's size, so 1023 workers with 8 MiB stacks
    // need 8 GiB of address space and cannot all start under a 6 GB limit.
    const source = `
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const [bin, planFile] = process.argv.slice(2);
const addon = createRequire(import.meta.url)(bin);
const plan = JSON.parse(readFileSync(planFile, "utf8"));
try {
  const engine = new addon.Engine(plan, { threads: 1024, tier: "scalar", kvType: "f32", nSeqMax: 1, contextSize: 16 });
  console.log("created", engine.info().threads);
} catch (error) {
  console.log("code", error.code);
}
`;
    const { status, out } = runChild("many-threads.mjs", source, [bindingPath(), planFile], "ulimit -s 8192; ulimit -v 6000000;");
    expect(status, out).toBe(0);
    expect(out).toContain("code ERR_GEB_IO");
  }, 60_000);

  it("rejects null options and float32 overflow", async () => {
    expect(await errorCode(() => Engine.create(plan, null as never))).toBe("ERR_GEB_INVALID_ARGUMENT");
    expect(await errorCode(() => Engine.create(undefined as never))).toBe("ERR_GEB_INVALID_ARGUMENT");
    for (const field of ["rmsEps", "ropeBase"] as const) {
      const broken = clonePlan(plan);
      broken.hparams[field] = 1e300;
      expect(await errorCode(() => Engine.create(broken, options)), field).toBe("ERR_GEB_INVALID_ARGUMENT");
      expect(await errorCode(() => new (binding().Engine)(broken, rawOptions)), `raw ${field}`).toBe("ERR_GEB_INVALID_ARGUMENT");
    }
  });
});
