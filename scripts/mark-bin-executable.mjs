#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// Marks the compiled CLI (dist/cli.js) executable after tsc, which writes files with mode 0644.
// npm sets the mode itself when it links an installed package's bin, but a git checkout runs
// the file in place, so the build sets it too. Also fails the build if the shebang went missing.
// Usage: node scripts/mark-bin-executable.mjs [DIST_DIR]   (default: the package's dist/)
import { chmodSync, existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const distDir = process.argv[2] ? path.resolve(process.argv[2]) : path.join(root, "dist");
const cli = path.join(distDir, "cli.js");

if (!existsSync(cli)) {
  process.stderr.write(`mark-bin-executable: ${cli} is missing; did tsc compile lib/cli.ts?\n`);
  process.exit(1);
}
if (!readFileSync(cli, "utf8").startsWith("#!/usr/bin/env node\n")) {
  process.stderr.write(`mark-bin-executable: ${cli} must start with "#!/usr/bin/env node"\n`);
  process.exit(1);
}
chmodSync(cli, 0o755);
