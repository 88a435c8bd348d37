// Temporary files that `geb-cpu convert` and convert-at-load write before renaming them into
// place, named `<prefix>.<pid>.<uuid>.tmp` beside the final file. A process killed by SIGKILL or
// a power cut leaves its file behind, often gigabytes, so the next writer of the same final file
// removes the leftovers whose writer no longer runs.

import { randomUUID } from "node:crypto";
import { lstat, readdir, rm } from "node:fs/promises";
import { join } from "node:path";

// Pattern of the part after `<prefix>.` in a name from temporaryFileName: a decimal pid, then a
// version 4 UUID in the lowercase form that node:crypto's randomUUID returns.
const SUFFIX_PATTERN = /^([1-9][0-9]{0,9})\.[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.tmp$/;

// Largest pid process.kill accepts (a signed 32-bit value); larger numbers are no pid of ours.
const MAX_PID = 2 ** 31 - 1;

/**
 * Age, from the last write, below which a leftover is kept even when its pid is not running here.
 * A writer in another pid namespace (another container sharing the folder) looks dead, but it
 * writes its file continuously, so a file written to within the last minute may still be in use.
 */
export const STALE_AFTER_MS = 60_000;

/** Returns a fresh temporary file name for `prefix`, unique per call, with this process's pid. */
export function temporaryFileName(prefix: string): string {
  return `${prefix}.${process.pid}.${randomUUID()}.tmp`;
}

/** Returns true unless the system reports that no process has this pid (ESRCH). */
function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM means a process of another user has the pid, so it is alive.
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/**
 * Removes the files in `folder` named by `temporaryFileName(prefix)` whose writer process no
 * longer exists, and returns their paths. Only regular files with exactly that name pattern and
 * not written to for STALE_AFTER_MS are touched. A file whose pid belongs to a live process (a
 * concurrent writer, this process included) is kept. Failures to list the folder or to remove a file are ignored, because the
 * caller's write reports a folder it cannot use, and a file left behind is tried again next time.
 *
 * NOTE: the pid is checked on this machine only. A writer on another host sharing the folder
 * (a network file system) or in another pid namespace (a container) looks dead, and only the age
 * check protects its file. If such a writer stalls for longer than STALE_AFTER_MS, its file is
 * removed and its final rename fails. A dead writer's pid reused by a new process keeps
 * its file until that process ends. A leftover younger than STALE_AFTER_MS waits for the next
 * write of the same target.
 */
export async function removeStaleTemporaryFiles(folder: string, prefix: string): Promise<string[]> {
  const names = await readdir(folder).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(`${prefix}.`)) continue;
    const match = SUFFIX_PATTERN.exec(name.slice(prefix.length + 1));
    if (match === null) continue;
    const pid = Number(match[1]);
    if (pid > MAX_PID || isProcessAlive(pid)) continue;
    const path = join(folder, name);
    const entry = await lstat(path).catch(() => undefined);
    if (entry === undefined || !entry.isFile() || Date.now() - entry.mtimeMs < STALE_AFTER_MS) continue;
    try {
      await rm(path);
      removed.push(path);
    } catch {
      // Removed by another cleaner meanwhile, or not removable: nothing to report.
    }
  }
  return removed;
}
