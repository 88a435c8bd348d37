// Runs `geb-cpu` from the TypeScript sources in a process of its own, so that tests can send it
// real signals: `node tests/cli-from-source.mjs generate ...`. Vite, which vitest runs on, compiles
// lib/*.ts on the fly as in the tests; its server is closed before the command starts.

import { fileURLToPath } from "node:url";

import { createServer } from "vite";

const server = await createServer({
  root: fileURLToPath(new URL("..", import.meta.url)),
  configFile: false,
  logLevel: "silent",
  server: { middlewareMode: true, hmr: false, ws: false },
  optimizeDeps: { noDiscovery: true, include: [] },
});
let runCli;
try {
  ({ runCli } = await server.ssrLoadModule("/lib/cli.ts"));
} finally {
  await server.close();
}
process.exitCode = await runCli(process.argv.slice(2));
