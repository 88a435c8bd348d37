#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// Prints the native sources of one build group, one path per line, relative to the package root.
// binding.gyp calls it as `<!@(node scripts/list-sources.mjs <group>)`, so adding a file under
// native/ needs no build-file edit. CMakeLists.txt globs the same layout itself, because the C++
// kernel tests must build without Node.
//
// Groups: core (native/core + native/cpu), binding, tests, and one per kernel ISA suffix:
// scalar, avx2, avx512, avx512vnni, avx512bf16, neon, neondot (native/kernels/<family>_<isa>.cpp).
// A kernel file with any other suffix is an error, so a misnamed file cannot silently drop out.
import { readdirSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export const KERNEL_ISAS = ["scalar", "avx2", "avx512", "avx512vnni", "avx512bf16", "neon", "neondot"];

function cppFiles(dir) {
  const abs = path.join(root, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs)
    .filter((name) => name.endsWith(".cpp"))
    .sort()
    .map((name) => `${dir}/${name}`);
}

// Returns the ISA suffix of a kernel file name, or undefined when it has none.
function kernelIsa(file) {
  const match = /_([a-z0-9]+)\.cpp$/.exec(path.basename(file));
  return match && KERNEL_ISAS.includes(match[1]) ? match[1] : undefined;
}

export function listSources(group) {
  switch (group) {
    case "core":
      return [...cppFiles("native/core"), ...cppFiles("native/cpu")];
    case "binding":
      return cppFiles("native/binding");
    case "tests":
      return cppFiles("native/tests");
    default: {
      if (!KERNEL_ISAS.includes(group)) {
        throw new Error(
          `unknown source group "${group}"; expected core, binding, tests or one of ${KERNEL_ISAS.join(", ")}`,
        );
      }
      const kernels = cppFiles("native/kernels");
      const misnamed = kernels.filter((file) => kernelIsa(file) === undefined);
      if (misnamed.length > 0) {
        throw new Error(
          `kernel sources must end in _<isa>.cpp with <isa> one of ${KERNEL_ISAS.join(", ")}; ` +
            `rename: ${misnamed.join(", ")}`,
        );
      }
      return kernels.filter((file) => kernelIsa(file) === group);
    }
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const group = process.argv[2];
  if (!group) {
    process.stderr.write("usage: node scripts/list-sources.mjs <group>\n");
    process.exit(2);
  }
  try {
    const files = listSources(group);
    if (files.length > 0) process.stdout.write(files.join("\n") + "\n");
  } catch (error) {
    process.stderr.write(`list-sources: ${error.message}\n`);
    process.exit(1);
  }
}
