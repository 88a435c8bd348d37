// SPDX-License-Identifier: MIT
// Fails `npm publish` (as the prepublishOnly script) when prebuilds/ lacks a prebuilt addon that
// the README's platform table promises. Without this check, publishing from a fresh checkout
// makes a package whose users all need a C++ compiler. `npm pack` does not run it, so packing a
// local build for testing still works.
//
//   node scripts/check-prebuilds.mjs [package-root]    (default: the folder above scripts/)

import { closeSync, openSync, readSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// The prebuilds the package promises, with the ELF machine each must be built for. Keep this
// list in step with "Platforms with prebuilt binaries" in README.md and README.zh-CN.md.
const PROMISED = [{ file: "prebuilds/linux-x64/geb-cpu.glibc.node", machine: 0x3e, machineName: "x86-64" }];

// ELF header fields: the magic at offset 0, e_machine (little-endian u16) at offset 18.
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const E_MACHINE_OFFSET = 18;

/** Returns why the prebuild at `file` is unusable, or undefined when it looks right. */
function checkPrebuild(file, machine, machineName) {
  let size;
  try {
    const info = statSync(file);
    if (!info.isFile()) return "not a regular file";
    size = info.size;
  } catch {
    return "missing";
  }
  if (size < E_MACHINE_OFFSET + 2) return `only ${size} bytes, too short for an ELF file`;
  const header = Buffer.alloc(E_MACHINE_OFFSET + 2);
  const fd = openSync(file, "r");
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  if (!ELF_MAGIC.every((byte, i) => header[i] === byte)) return "not an ELF shared object";
  const found = header.readUInt16LE(E_MACHINE_OFFSET);
  if (found !== machine) return `built for ELF machine 0x${found.toString(16)}, not ${machineName}`;
  return undefined;
}

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), ".."));
const problems = [];
for (const { file, machine, machineName } of PROMISED) {
  const reason = checkPrebuild(path.join(root, file), machine, machineName);
  if (reason !== undefined) problems.push(`  - ${file}: ${reason}`);
}
if (problems.length > 0) {
  console.error(
    `check-prebuilds: refusing to publish, because the package would lack prebuilt addons that README.md promises:\n` +
      `${problems.join("\n")}\n` +
      `Build them first: \`npm run prebuild\` on linux-x64 writes prebuilds/linux-x64/geb-cpu.glibc.node. ` +
      `Then check the tarball with \`npm run check:pack\`.`,
  );
  process.exit(1);
}
console.log(`check-prebuilds: ${PROMISED.length} promised prebuild(s) present in ${path.join(root, "prebuilds")}`);
