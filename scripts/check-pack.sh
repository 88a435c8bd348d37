#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Proves the npm package works without a compiler. It packs geb-cpu with a prebuilt addon and
# checks the tarball's file list: dist, prebuilds, the native sources for `npm rebuild` and the
# demo model must be there, and tests, benches and fixtures must not. It then installs the
# tarball into an empty folder with --ignore-scripts, imports it and runs its bin with a PATH
# that contains only `node`, so no compiler can run.
#
#   bash scripts/check-pack.sh            use prebuilds/<platform>-<arch> (runs `npm run prebuild`
#                                         when it is missing)
#   GEB_PACK_PREBUILD=build bash ...      stage build/Release/geb_cpu.node as the prebuild instead
#                                         (fast; what tests/foundation-pack.test.ts does)
#
# The package is staged in a temporary folder, so the repository's dist/ and prebuilds/ are
# not changed (except by `npm run prebuild` in the first form).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/geb-cpu-pack.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stage="$work/stage"
app="$work/app"
mkdir -p "$stage" "$app" "$work/bin"
platform_arch="$(node -p 'process.platform + "-" + process.arch')"

fail() {
  echo "check-pack: $*" >&2
  exit 1
}

# 1. The files the manifest selects, taken from the repository. dist/ and prebuilds/ are staged
#    fresh below, so an old build in the repository cannot hide a problem.
npm pack --dry-run --json --ignore-scripts >"$work/dry-run.json" 2>/dev/null
node -e '
  const [entry] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const f of entry.files) console.log(f.path);
' "$work/dry-run.json" >"$work/repo-files.txt"
while IFS= read -r file; do
  case "$file" in dist/* | prebuilds/*) continue ;; esac
  mkdir -p "$stage/$(dirname "$file")"
  cp -p "$file" "$stage/$file"
done <"$work/repo-files.txt"

# 2. dist/ from the current sources.
node node_modules/typescript/bin/tsc -p tsconfig.json --outDir "$stage/dist" --sourceMap false \
  || fail "tsc failed; fix the type errors above"
node scripts/mark-bin-executable.mjs "$stage/dist"

# 3. The prebuilt addon, named the way `prebuildify --napi --tag-libc` names it.
mkdir -p "$stage/prebuilds/$platform_arch"
if [[ "${GEB_PACK_PREBUILD:-}" == "build" ]]; then
  [[ -f build/Release/geb_cpu.node ]] || fail "build/Release/geb_cpu.node is missing; run npm run build:native"
  cp build/Release/geb_cpu.node "$stage/prebuilds/$platform_arch/geb-cpu.glibc.node"
else
  if ! compgen -G "prebuilds/$platform_arch/*.node" >/dev/null; then
    npm run prebuild
  fi
  cp prebuilds/"$platform_arch"/*.node "$stage/prebuilds/$platform_arch/"
fi

# The staged prebuilds must pass the check that `npm publish` runs (prepublishOnly).
node scripts/check-prebuilds.mjs "$stage" >/dev/null || fail "the staged prebuilds fail scripts/check-prebuilds.mjs"

# 4. Pack the staged package.
tarball_name="$(cd "$stage" && npm pack --ignore-scripts --pack-destination "$work" 2>/dev/null | tail -n 1)"
tarball="$work/$tarball_name"
[[ -f "$tarball" ]] || fail "npm pack did not write $tarball"
tar -tzf "$tarball" | sed 's|^package/||' | sort >"$work/tarball-files.txt"
echo "check-pack: $tarball_name has $(wc -l <"$work/tarball-files.txt") files, $(du -k "$tarball" | cut -f1) KiB"

# 5. What must and must not be in it.
required=(
  package.json README.md README.zh-CN.md LICENSE binding.gyp scripts/list-sources.mjs
  dist/index.js dist/index.d.ts dist/cli.js dist/native.js
  native/binding/addon.cpp native/binding/register.h native/cpu/cpu.cpp native/cpu/cpu.h
  "prebuilds/$platform_arch/geb-cpu.glibc.node"
  models/geb-tiny/config.json models/geb-tiny/model.safetensors models/geb-tiny/GEBtokenizer.model
  models/geb-tiny/tokenizer_config.json models/geb-tiny/LICENSE.md models/geb-tiny/README.md
  models/geb-tiny/NOTICE.md
)
for file in "${required[@]}"; do
  grep -qxF "$file" "$work/tarball-files.txt" || fail "the tarball lacks $file"
done
forbidden='^(tests/|bench/|native/tests/|\.ci/|docs/|build/|build-|lib/|node_modules/)|\.map$|\.test\.|fixtures|models/geb-tiny/(reference\.json|eval_split\.jsonl|train_log\.json|SPEC\.md)$'
if grep -E "$forbidden" "$work/tarball-files.txt" >"$work/forbidden.txt"; then
  fail "the tarball must not contain: $(tr '\n' ' ' <"$work/forbidden.txt")"
fi
# The repository's own dry run (the "files" field as npm applies it) must agree.
if grep -E '^(tests/|bench/|native/tests/)|fixtures' "$work/repo-files.txt" >"$work/forbidden.txt"; then
  fail "npm pack --dry-run lists: $(tr '\n' ' ' <"$work/forbidden.txt")"
fi

# 6. Install into an empty project without running install scripts, so nothing compiles.
cat >"$app/package.json" <<'JSON'
{ "name": "geb-cpu-pack-check", "version": "1.0.0", "private": true, "type": "module" }
JSON
(cd "$app" && npm install --ignore-scripts --no-audit --no-fund --prefer-offline "$tarball" >"$work/install.log" 2>&1) \
  || { cat "$work/install.log" >&2; fail "npm install of the tarball failed"; }
[[ ! -e "$app/node_modules/geb-cpu/build" ]] || fail "installing created node_modules/geb-cpu/build"

# 7. Load it with a PATH that contains node and nothing else: no compiler, make or python.
ln -s "$(command -v node)" "$work/bin/node"
run_isolated() {
  (cd "$app" && env -i HOME="$work" PATH="$work/bin" "$@")
}
run_isolated node --input-type=module -e '
  const geb = await import("geb-cpu");
  const info = geb.cpuInfo();
  if (!info.addonPath.includes("/node_modules/geb-cpu/prebuilds/")) {
    throw new Error(`loaded ${info.addonPath}, expected the bundled prebuild`);
  }
  console.log(`check-pack: import("geb-cpu") loaded ${info.addonPath.replace(/.*node_modules\//, "")} (tier ${info.selectedTier})`);
  if (!geb.demoModelPath.endsWith("/node_modules/geb-cpu/models/geb-tiny")) {
    throw new Error(`demoModelPath is ${geb.demoModelPath}, expected the installed models/geb-tiny`);
  }
  const model = await geb.loadModel(geb.demoModelPath, { threads: 1, contextSize: 32 });
  const { tokens } = await model.generate("你好", { maxTokens: 4, ignoreEos: true, seed: 1 });
  await model.dispose();
  if (tokens.length !== 4) throw new Error(`the demo model generated ${tokens.length} tokens, expected 4`);
  console.log("check-pack: loadModel(demoModelPath) generated 4 tokens");
' || fail "importing geb-cpu from the installed tarball failed"

run_isolated ./node_modules/.bin/geb-cpu info --json >"$work/info.json" \
  || fail "node_modules/.bin/geb-cpu info failed"
node -e '
  const info = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (!info.addonPath.includes("/prebuilds/")) throw new Error("bin loaded " + info.addonPath);
  console.log(`check-pack: geb-cpu info ran from the bin (version ${info.version}, tier ${info.selectedTier})`);
' "$work/info.json"

# 8. The bin's exit codes: 0 for --version, 2 for a usage error, 1 with the error code for a
#    bad GEB_CPU_ISA.
expected_version="$(node -p 'require("./package.json").version')"
[[ "$(run_isolated ./node_modules/.bin/geb-cpu --version)" == "$expected_version" ]] \
  || fail "geb-cpu --version did not print $expected_version"
status=0
run_isolated ./node_modules/.bin/geb-cpu no-such-command 2>"$work/stderr.txt" || status=$?
[[ $status -eq 2 ]] || fail "geb-cpu no-such-command exited $status, expected 2"
status=0
run_isolated GEB_CPU_ISA=sse9 ./node_modules/.bin/geb-cpu info 2>"$work/stderr.txt" >/dev/null || status=$?
[[ $status -eq 1 ]] || fail "geb-cpu info with GEB_CPU_ISA=sse9 exited $status, expected 1"
grep -q '^geb-cpu: .*sse9.*(ERR_GEB_INVALID_ARGUMENT)$' "$work/stderr.txt" \
  || fail "unexpected error output: $(cat "$work/stderr.txt")"
echo "check-pack: the bin's exit codes are 0, 2 and 1 as documented"

# 9. The README's first command, on the bundled demo model.
run_isolated ./node_modules/.bin/geb-cpu generate --prompt "你好" --max-tokens 8 --seed 1 >"$work/generate.txt" \
  || fail "geb-cpu generate --prompt 你好 failed on the bundled demo model"
[[ -n "$(tr -d '[:space:]' <"$work/generate.txt")" ]] || fail "geb-cpu generate printed nothing"
echo "check-pack: geb-cpu generate on the demo model printed: $(head -c 200 "$work/generate.txt" | tr '\n' ' ')"

echo "check-pack: ok"
