// What a package user relies on beyond the API calls: the exported demo model path, and the
// prepublishOnly check (scripts/check-prebuilds.mjs), which makes `npm publish` from a checkout
// without the promised prebuilt addons fail with a message that names what to build.

import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const script = path.join(repoRoot, "scripts", "check-prebuilds.mjs");
const workDir = mkdtempSync(path.join(tmpdir(), "geb-prebuild-check-"));
const PREBUILD = path.join("prebuilds", "linux-x64", "geb-cpu.glibc.node");

afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function runCheck(root: string): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [script, root], { encoding: "utf8" });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe("demoModelPath", () => {
  it("names the bundled demo model", async () => {
    const { demoModelPath, loadTokenizer } = await import("../lib/index.js");
    expect(demoModelPath).toBe(path.join(repoRoot, "models", "geb-tiny"));
    const tokenizer = await loadTokenizer(demoModelPath);
    expect(tokenizer.family).toBe("geb");
  });
});

describe("prepublishOnly prebuild check", () => {
  it("is the prepublishOnly script and not a pack hook", () => {
    const scripts = (JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
    expect(scripts.prepublishOnly).toBe("node scripts/check-prebuilds.mjs");
    expect(scripts.prepack).toBeUndefined();
  });

  it("fails without prebuilds", () => {
    const root = path.join(workDir, "empty");
    mkdirSync(root);
    const { status, output } = runCheck(root);
    expect(status).toBe(1);
    expect(output).toContain(`${PREBUILD}: missing`);
    expect(output).toContain("npm run prebuild");
  });

  it("fails on a file that is no x86-64 ELF", () => {
    const root = path.join(workDir, "fake");
    mkdirSync(path.dirname(path.join(root, PREBUILD)), { recursive: true });
    writeFileSync(path.join(root, PREBUILD), "not an addon, but long enough");
    expect(runCheck(root).output).toContain("not an ELF shared object");
    const arm = Buffer.alloc(64);
    Buffer.from([0x7f, 0x45, 0x4c, 0x46]).copy(arm);
    arm.writeUInt16LE(0xb7, 18);
    writeFileSync(path.join(root, PREBUILD), arm);
    const { status, output } = runCheck(root);
    expect(status).toBe(1);
    expect(output).toContain("built for ELF machine 0xb7, not x86-64");
  });

  it("passes with the built addon staged as the prebuild", () => {
    const root = path.join(workDir, "staged");
    mkdirSync(path.dirname(path.join(root, PREBUILD)), { recursive: true });
    copyFileSync(path.join(repoRoot, "build", "Release", "geb_cpu.node"), path.join(root, PREBUILD));
    const { status, output } = runCheck(root);
    expect(status, output).toBe(0);
    expect(output).toContain("1 promised prebuild(s) present");
  });
});
