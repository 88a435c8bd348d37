// `geb-cpu info`: prints the package version, the loaded addon, detected CPU features, the kernel
// tier in use and the default thread count, as text or as one JSON object (--json).
import { parseArgs } from "node:util";

import { packageVersion, printError, type CliCommand } from "./base.js";
import { cpuInfo, type CpuFeatures } from "../native.js";

const usage = `Usage: geb-cpu info [--json]

Print the geb-cpu version, the native addon in use, the CPU features it detected, the kernel
tier it will run and the default number of worker threads.

Options:
      --json   print one JSON object instead of text
  -h, --help   show this help

Environment:
  GEB_CPU_ISA  force a lower kernel tier (info reports an error if this CPU lacks it)`;

/** Fields of `geb-cpu info --json`. */
export interface InfoReport {
  version: string;
  addonVersion: string;
  addonPath: string;
  node: string;
  napi: string | null;
  platform: string;
  arch: string;
  features: CpuFeatures;
  /** Names of the true flags in `features`, in a fixed order. */
  featureList: string[];
  tiers: string[];
  bestTier: string;
  selectedTier: string;
  tierSource: "GEB_CPU_ISA" | "best";
  defaultThreads: number;
}

/** Collects the report that `geb-cpu info` prints. Throws what cpuInfo() throws. */
export function collectInfo(): InfoReport {
  const cpu = cpuInfo();
  const featureList = Object.entries(cpu.features)
    .filter(([name, on]) => on === true && name !== "osYmm" && name !== "osZmm")
    .map(([name]) => name);
  return {
    version: packageVersion(),
    addonVersion: cpu.addonVersion,
    addonPath: cpu.addonPath,
    node: process.version,
    napi: process.versions.napi ?? null,
    platform: process.platform,
    arch: process.arch,
    features: cpu.features,
    featureList,
    tiers: cpu.tiers,
    bestTier: cpu.bestTier,
    selectedTier: cpu.selectedTier,
    tierSource: cpu.tierSource,
    defaultThreads: cpu.defaultThreads,
  };
}

function formatText(report: InfoReport): string {
  const tierNote =
    report.tierSource === "GEB_CPU_ISA"
      ? `(forced by GEB_CPU_ISA; best is ${report.bestTier})`
      : "(best for this CPU; set GEB_CPU_ISA to force a lower one)";
  const rows: Array<[string, string]> = [
    ["geb-cpu", report.version],
    ["node", `${report.node} (N-API ${report.napi ?? "unknown"}, ${report.platform}-${report.arch})`],
    ["addon", `${report.addonPath} (built from ${report.addonVersion})`],
    ["cpu features", report.featureList.length > 0 ? report.featureList.join(" ") : "(none detected)"],
    ["kernel tiers", report.tiers.join(", ")],
    ["kernel tier", `${report.selectedTier} ${tierNote}`],
    ["default threads", `${report.defaultThreads} (physical cores)`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 1;
  return rows.map(([label, value]) => `${`${label}:`.padEnd(width)} ${value}`).join("\n");
}

async function run(argv: string[]): Promise<number> {
  let values: { json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
      allowPositionals: false,
      strict: true,
    }));
  } catch (error) {
    return printError(error, true);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }

  const report = collectInfo();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatText(report)}\n`);
  return 0;
}

/** The `info` subcommand. */
export const command: CliCommand = {
  name: "info",
  summary: "show the version, CPU features, kernel tier and default thread count",
  usage,
  run,
};
