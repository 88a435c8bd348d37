// Memory read bandwidth probe: the native addon's kernels.readBandwidth reads a 512 MiB buffer
// (far larger than any cache) with the engine's thread pool class and the best tier's read loop
// (256-bit loads on AVX2). Each thread reads four streams at once, from 2 MiB pages where Linux
// allows them, because a single stream in 4 KiB pages read less than F32 decode did. The best of
// several passes counts. This is the roofline the
// decode numbers are compared against: decoding one token must read every weight once, so
// tokens/s can at most be bandwidth / weight bytes.
// NOTE: the roofline is DRAM bandwidth. Weights that fit in the last-level cache (llama-tiny's
// 15 MB against a 32 MiB L3) are read from the cache, so their roofline share can exceed 100%.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROBE_BYTES = 512 * 2 ** 20;

/**
 * Measures read bandwidth in bytes/s with `threads` threads reading at the same time.
 * `addonPath` is the geb_cpu.node to use (default: GEB_CPU_BINARY, then build/Release).
 */
export async function measureReadBandwidth(threads, passes = 5, addonPath) {
  const file = addonPath ?? process.env.GEB_CPU_BINARY ?? path.resolve(here, "../build/Release/geb_cpu.node");
  if (!existsSync(file)) throw new Error(`${file} is missing; run \`npm run build:native\` first`);
  const addon = createRequire(import.meta.url)(file);
  const tier = addon.bestTier();
  const result = addon.kernels.readBandwidth(PROBE_BYTES, threads, passes, tier);
  return { bytesPerSecond: result.bytesPerSecond, probe: `native-${tier}` };
}
