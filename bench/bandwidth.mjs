// Memory read bandwidth probe: each of `threads` worker threads sums its own 512 MiB typed
// array (far larger than any cache) with four independent accumulators, and the best of several
// passes counts. This is the roofline the decode numbers are compared against: decoding one
// token must read every weight once, so tokens/s can at most be bandwidth / weight bytes.
// NOTE: this JS loop reads slower than native code. On the 2-core EPYC used for development it
// measured 10 GB/s on one thread where an AVX2 loop read 12.8 GB/s and the F32 matmul streamed
// 15 GB/s, so roofline shares above 100% are possible. A native probe in the addon would fix it.
import { Worker } from "node:worker_threads";

const PROBE_BYTES = 512 * 2 ** 20;

const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const words = new Float64Array(workerData.bytes / 8);
for (let i = 0; i < words.length; i += 512) words[i] = i;  // touch every page
parentPort.postMessage("ready");
parentPort.on("message", (passes) => {
  let best = Infinity;
  let sink = 0;
  for (let p = 0; p < passes; p++) {
    const t = performance.now();
    let a = 0, b = 0, c = 0, d = 0;
    for (let i = 0; i < words.length; i += 4) {
      a += words[i]; b += words[i + 1]; c += words[i + 2]; d += words[i + 3];
    }
    sink += a + b + c + d;
    best = Math.min(best, performance.now() - t);
  }
  parentPort.postMessage({ bestMs: best, sink });
});
`;

/** Measures read bandwidth in bytes/s with `threads` threads reading at the same time. */
export async function measureReadBandwidth(threads, passes = 5) {
  const workers = [];
  for (let i = 0; i < threads; i++) {
    const worker = new Worker(workerSource, { eval: true, workerData: { bytes: PROBE_BYTES } });
    workers.push(worker);
    await new Promise((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
  }
  const results = await Promise.all(
    workers.map(
      (worker) =>
        new Promise((resolve, reject) => {
          worker.once("message", resolve);
          worker.once("error", reject);
          worker.postMessage(passes);
        }),
    ),
  );
  await Promise.all(workers.map((worker) => worker.terminate()));
  // every thread read PROBE_BYTES; the slowest best pass bounds the aggregate rate
  const slowest = Math.max(...results.map((r) => r.bestMs));
  return { bytesPerSecond: (threads * PROBE_BYTES) / (slowest / 1000), probe: "js-typed-array" };
}
