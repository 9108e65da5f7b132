#!/usr/bin/env node
// Makes a fresh clone runnable: installs dependencies when node_modules is missing or older than
// the lockfile, then builds (tsc -b is incremental, so this is fast when nothing changed) and links
// the `gatehouse` command.
import { execSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const run = (cmd) => execSync(cmd, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
const marker = join(root, 'node_modules', '.package-lock.json')
const lock = join(root, 'package-lock.json')
if (!existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000)) {
  process.stderr.write('gatehouse: installing dependencies (npm ci)…\n')
  run('npm ci --no-audit --no-fund')
}
run('npx tsc -b')
// The Redis adapter in examples/ is a package of its own, outside the workspace (as a vendor's
// would be): built on its own, against the installed @gatehouse/core.
run('npx tsc -p examples/redis-adapter/tsconfig.json')
// npm links a workspace's bin only if its target exists at install time, and `npm ci` runs before
// the build: link `gatehouse` now, so the README's `npx gatehouse …` works on a fresh clone.
if (!existsSync(join(root, 'node_modules', '.bin', 'gatehouse'))) run('npm rebuild @gatehouse/core --ignore-scripts --no-audit --no-fund')
