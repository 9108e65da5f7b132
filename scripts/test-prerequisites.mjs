#!/usr/bin/env node
// Checks, before the test suite starts, that the external programs the tests drive are here, and
// names what is missing and how to install it (instead of a test failing deep inside with
// "expected 127 to be +0"). Exits 1 when something is missing.
//
//   node scripts/test-prerequisites.mjs
import { spawnSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

const PG_BIN = '/usr/lib/postgresql/15/bin'

// program, where the tests look for it (PATH unless a directory is given), Debian package, what needs it
const NEEDED = [
  ['initdb', PG_BIN, 'postgresql-15', 'throwaway PostgreSQL clusters (test/fixtures/pg-cluster.ts)'],
  ['pg_ctl', PG_BIN, 'postgresql-15', 'throwaway PostgreSQL clusters'],
  ['postgres', PG_BIN, 'postgresql-15', 'throwaway PostgreSQL clusters'],
  ['psql', undefined, 'postgresql-client-15', 'the PostgreSQL client the tests drive'],
  ['pgbench', undefined, 'postgresql-15', 'load and demo tests'],
  ['openssl', undefined, 'openssl', 'throwaway CAs and certificates for TLS tests'],
  ['sshd', '/usr/sbin', 'openssh-server', 'throwaway SSH servers (test/fixtures/sshd.ts)'],
  ['ssh', undefined, 'openssh-client', 'the SSH client the tests drive'],
  ['scp', undefined, 'openssh-client', 'file copy tests'],
  ['sftp', undefined, 'openssh-client', 'SFTP tests'],
  ['ssh-keygen', undefined, 'openssh-client', 'keys for SSH tests'],
  ['ssh-agent', undefined, 'openssh-client', 'agent-forwarding tests'],
  ['tmux', undefined, 'tmux', 'interactive ssh under a pty'],
  ['asciinema', undefined, 'asciinema', 'replaying terminal recordings'],
  ['java', undefined, 'openjdk-17-jdk-headless', 'pgjdbc driver tests'],
  ['strace', undefined, 'strace', 'the SSH wrapper oracle (programs-wrappers.test.ts)'],
  ['zsh', undefined, 'zsh', 'a zsh line the shell analysis reads, run for real (programs-handlers.test.ts)'],
  ['zip', undefined, 'zip', 'zip -TT run for real (programs-handlers.test.ts)'],
  ['/usr/bin/python3', '', 'python3', 'psycopg driver tests'],
  ['kubectl.1.32', '/usr/lib/google-cloud-sdk/bin', 'kubectl', 'the Kubernetes client the tests drive, pinned to 1.32 (test/fixtures/k8s-gateway.ts)'],
  ['script', undefined, 'bsdutils', 'kubectl exec -it under a pseudo-terminal'],
]

const executable = (path) => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}
const onPath = (name) => (process.env.PATH ?? '').split(delimiter).some((dir) => dir && executable(join(dir, name)))

const missing = NEEDED.filter(([name, dir]) => (dir === undefined ? !onPath(name) : !executable(dir === '' ? name : join(dir, name))))

// Python drivers and the JDBC jar: present as files, not programs.
const FILES = [
  ['/usr/share/java/postgresql.jar', 'libpostgresql-jdbc-java', 'pgjdbc driver tests'],
  ['node_modules/.bin/mongosh', 'the mongosh devDependency (npm ci)', 'the MongoDB shell the mongodb adapter tests drive'],
]
for (const [file, pkg, why] of FILES) {
  try {
    accessSync(file, constants.R_OK)
  } catch {
    missing.push([file, '', pkg, why])
  }
}

// The Python drivers are modules of the system python3.
for (const [module, pkg] of [['psycopg', 'python3-psycopg'], ['psycopg2', 'python3-psycopg2']]) {
  if (executable('/usr/bin/python3') && spawnSync('/usr/bin/python3', ['-c', `import ${module}`], { stdio: 'ignore' }).status !== 0) missing.push([`python3 module ${module}`, '', pkg, 'psycopg driver tests'])
}

// A locale other than C and POSIX, under which bash translates $"…" with a message catalog.
const locales = spawnSync('locale', ['-a'], { encoding: 'utf8' })
const localeMissing = !/^en_US\.utf8$/im.test(locales.stdout ?? '')
if (localeMissing) missing.push(['locale en_US.UTF-8', '', 'locales', 'bash translating $"…" (programs-handlers.test.ts); then: localedef -i en_US -f UTF-8 en_US.UTF-8'])

if (missing.length > 0) {
  const packages = [...new Set(missing.map(([, , pkg]) => pkg))]
  process.stderr.write(
    `npm test: the test suite needs programs that are not installed:\n${missing.map(([name, dir, pkg, why]) => `  ${dir ? join(dir, name) : name} (Debian package ${pkg}): ${why}`).join('\n')}\n\n` +
      `On Debian or Ubuntu:\n  apt-get install -y --no-install-recommends ${packages.join(' ')}\n` +
      '(.ci/run installs the full list; see the README, "Quickstart").\n',
  )
  process.exit(1)
}
