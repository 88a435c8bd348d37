// Vitest settings of `npm run test:large`: tests that write multi-gigabyte checkpoints and take
// minutes, kept out of `npm test` by their `.large.ts` suffix.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/large/**/*.large.ts"],
    pool: "forks",
    testTimeout: 20 * 60_000,
    hookTimeout: 20 * 60_000,
  },
});
