// Packs geb-cpu, installs the tarball into an empty folder without install scripts, and runs it
// with only `node` on PATH (scripts/check-pack.sh). The repository's build/Release addon is
// staged as the prebuild, so the test needs no prebuildify run.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

describe("npm package", () => {
  it("installs and runs without a compiler", () => {
    const result = spawnSync("bash", [path.join(repoRoot, "scripts/check-pack.sh")], {
      cwd: repoRoot,
      encoding: "utf8",
      env: { ...process.env, GEB_PACK_PREBUILD: "build", GEB_CPU_ISA: "", GEB_CPU_BINARY: "" },
    });
    const output = `${result.stdout}\n${result.stderr}`;
    expect(result.status, output).toBe(0);
    expect(result.stdout).toMatch(/^check-pack: import\("geb-cpu"\) loaded geb-cpu\/prebuilds\/.*geb-cpu\.glibc\.node/m);
    expect(result.stdout).toMatch(/^check-pack: geb-cpu info ran from the bin/m);
    expect(result.stdout).toMatch(/^check-pack: the bin's exit codes are 0, 2 and 1 as documented$/m);
    expect(result.stdout).toMatch(/^check-pack: geb-cpu generate on the demo model printed: \S/m);
    expect(result.stdout).toMatch(/^check-pack: ok$/m);
  }, 240_000);
});
