#!/usr/bin/env node
// Makes a fresh clone runnable: installs dependencies when node_modules is missing or older than
// the lockfile, then builds (tsc -b is incremental, so this is fast when nothing changed).
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
