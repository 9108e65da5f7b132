/**
 * Configuration loading: YAML → secret references → defaults → schema → cross-references.
 * Every error must name the path the operator has to fix (docs/architecture.md, "Boot, start and
 * shutdown").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, GatewayError, loadConfigFile, parseConfig, type ValidationIssue } from '@gatehouse/core'

const CONN_A = `  - { name: a, adapter: postgres, listen: "127.0.0.1:15001", upstream: { host: db, database: app, user: app } }`
const CONN_B = `  - { name: b, adapter: postgres, listen: "127.0.0.1:15002", upstream: { host: db, database: app, user: app } }`
const MINIMAL = `connections:\n${CONN_A}\n`

/** Runs `fn`, expects a ConfigError, returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    expect(err).toBeInstanceOf(GatewayError)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError, but the config was accepted')
}

function issueAt(err: ConfigError, path: string): ValidationIssue {
  const issue = err.issues.find((i) => i.path === path)
  if (!issue) throw new Error(`no issue at ${path}; got ${JSON.stringify(err.issues)}`)
  return issue
}

let dir: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-test-'))
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('loading a valid config', () => {
  it('loads a minimal config file and applies the defaults', () => {
    const sub = join(dir, 'minimal')
    mkdirSync(sub)
    const file = join(sub, 'gatehouse.yaml')
    writeFileSync(file, MINIMAL)
    const config = loadConfigFile(file)
    expect(config.dataDir).toBe(join(sub, '.gatehouse'))
    expect(config.log.level).toBe('info')
    expect(config.shutdown.graceMs).toBe(10000)
    expect(config.identities).toEqual([])
    expect(config.plugins).toEqual([])
    expect(config.policies).toEqual([])
    expect(config.connections).toHaveLength(1)
    expect(config.connections[0]).toMatchObject({ name: 'a', adapter: 'postgres', listen: '127.0.0.1:15001' })
  })

  it('resolves a relative dataDir against the config file directory, not the working directory', () => {
    const sub = join(dir, 'datadir')
    mkdirSync(sub)
    const file = join(sub, 'gatehouse.yaml')
    writeFileSync(file, `dataDir: ./state/here\n${MINIMAL}`)
    expect(loadConfigFile(file).dataDir).toBe(join(sub, 'state', 'here'))
  })

  it('keeps an absolute dataDir as given', () => {
    expect(parseConfig(`dataDir: /var/lib/gatehouse\n${MINIMAL}`, { baseDir: dir }).dataDir).toBe('/var/lib/gatehouse')
  })

  it('fills identity defaults: kind agent, no groups, no tokens, no SSH keys', () => {
    const config = parseConfig(`identities:\n  - id: ci\n${MINIMAL}`, { baseDir: dir })
    expect(config.identities[0]).toEqual({ id: 'ci', kind: 'agent', groups: [], tokens: [], sshKeys: [] })
  })

  it('reports an unreadable config file with its path', () => {
    const missing = join(dir, 'does-not-exist.yaml')
    const err = configError(() => loadConfigFile(missing))
    expect(err.issues[0]?.path).toBe(missing)
    expect(err.issues[0]?.message).toMatch(/ENOENT/)
  })
})

describe('schema errors name the path', () => {
  it('a connection without upstream is reported at connections[0].upstream', () => {
    const err = configError(() => parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:15001" }\n`))
    expect(err.code).toBe('GH_ERR_CONFIG_INVALID')
    expect(issueAt(err, 'connections[0].upstream').message).toMatch(/required/)
    expect(err.message).toContain('connections[0].upstream:')
  })

  it('a listen address that is not host:port is reported at connections[1].listen', () => {
    const err = configError(() => parseConfig(`connections:\n${CONN_A}\n  - { name: b, adapter: postgres, listen: "localhost", upstream: {} }\n`))
    expect(issueAt(err, 'connections[1].listen').message).toBe('expected host:port (e.g. 127.0.0.1:15432, [::1]:15432), got "localhost"')
    // the valid first connection is not blamed
    expect(err.issues.some((i) => i.path.startsWith('connections[0]'))).toBe(false)
  })

  it('an unknown field is reported as "unknown field" at its own path', () => {
    const err = configError(() => parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: {}, colour: red }\n`))
    expect(issueAt(err, 'connections[0].colour').message).toBe('unknown field')
  })

  it('an unknown top-level field is reported at its name', () => {
    const err = configError(() => parseConfig(`listeners: {}\n${MINIMAL}`))
    expect(issueAt(err, 'listeners').message).toBe('unknown field')
  })

  it('an unknown field inside a token entry is reported at the token path', () => {
    const err = configError(() => parseConfig(`identities:\n  - id: x\n    tokens: [{ hash: "sha256:${'a'.repeat(64)}", secret: nope }]\n${MINIMAL}`))
    expect(issueAt(err, 'identities[0].tokens[0].secret').message).toBe('unknown field')
  })

  it('a token expiry that is not a date-time is reported at identities[0].tokens[0].expires', () => {
    const err = configError(() => parseConfig(`identities:\n  - id: x\n    tokens: [{ hash: "sha256:${'a'.repeat(64)}", expires: tomorrow }]\n${MINIMAL}`))
    expect(issueAt(err, 'identities[0].tokens[0].expires').message).toMatch(/date-time/)
  })

  it('accepts an ISO-8601 token expiry with an offset', () => {
    const config = parseConfig(`identities:\n  - id: x\n    tokens: [{ hash: "sha256:${'a'.repeat(64)}", expires: "2030-01-02T03:04:05+02:00" }]\n${MINIMAL}`)
    expect(config.identities[0]?.tokens[0]?.expires).toBe('2030-01-02T03:04:05+02:00')
  })

  it('a wrong type names the path and the expected type', () => {
    const err = configError(() => parseConfig(`shutdown: { graceMs: soon }\n${MINIMAL}`))
    expect(issueAt(err, 'shutdown.graceMs').message).toMatch(/integer/)
  })

  it('an unknown log level is refused at log.level', () => {
    const err = configError(() => parseConfig(`log: { level: loud }\n${MINIMAL}`))
    expect(issueAt(err, 'log.level')).toBeDefined()
  })

  it('a config without connections is refused at connections', () => {
    const err = configError(() => parseConfig(`identities: []\n`))
    expect(issueAt(err, 'connections').message).toMatch(/required/)
  })

  it('reports every problem at once, not only the first', () => {
    const err = configError(() =>
      parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "bad", upstream: {} }\n  - { name: b, adapter: postgres, listen: "127.0.0.1:1" }\n`),
    )
    expect(err.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['connections[0].listen', 'connections[1].upstream']))
  })

  // Bug (core/src/config/schema.ts, HostPort): the pattern accepts any 1–5 digit port, so
  // 127.0.0.1:99999 passes validation (and `gatehouse validate`), and only fails at `start`
  // when parseHostPort throws "invalid port".
  it('a listen port above 65535 is refused at validation time', () => {
    const err = configError(() => parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:99999", upstream: {} }\n`))
    expect(issueAt(err, 'connections[0].listen')).toBeDefined()
  })
})

describe('cross-reference checks', () => {
  it('duplicate connection names are reported at the second one', () => {
    const err = configError(() =>
      parseConfig(`connections:\n${CONN_A}\n  - { name: a, adapter: postgres, listen: "127.0.0.1:15002", upstream: {} }\n`),
    )
    expect(issueAt(err, 'connections[1].name').message).toMatch(/duplicate name "a".*connections\[0\]/)
  })

  it('duplicate listen addresses are reported at the second one', () => {
    const err = configError(() =>
      parseConfig(`connections:\n${CONN_A}\n  - { name: b, adapter: postgres, listen: "127.0.0.1:15001", upstream: {} }\n`),
    )
    expect(issueAt(err, 'connections[1].listen').message).toMatch(/127\.0\.0\.1:15001.*connections\[0\]/)
  })

  it('several connections may listen on port 0 (ephemeral ports)', () => {
    const config = parseConfig(
      `connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:0", upstream: {} }\n  - { name: b, adapter: postgres, listen: "127.0.0.1:0", upstream: {} }\n`,
    )
    expect(config.connections.map((c) => c.name)).toEqual(['a', 'b'])
  })

  it('duplicate identity ids are reported', () => {
    const err = configError(() => parseConfig(`identities:\n  - id: x\n  - id: x\n${MINIMAL}`))
    expect(issueAt(err, 'identities[1].id').message).toMatch(/duplicate id "x"/)
  })

  it('a token scoped to an unknown connection is reported at its connections entry', () => {
    const err = configError(() =>
      parseConfig(`identities:\n  - id: x\n    tokens: [{ hash: "sha256:${'a'.repeat(64)}", connections: [a, nope] }]\nconnections:\n${CONN_A}\n${CONN_B}\n`),
    )
    expect(issueAt(err, 'identities[0].tokens[0].connections[1]').message).toBe('unknown connection "nope"')
    expect(err.issues).toHaveLength(1)
  })

  it('a policy naming an unknown connection is reported', () => {
    const err = configError(() =>
      parseConfig(`policies:\n  - { id: p, connections: [ghost], rules: [{ effect: allow }] }\n${MINIMAL}`),
    )
    expect(issueAt(err, 'policies[0].connections[0]').message).toBe('unknown connection "ghost"')
  })
})

describe('secret references', () => {
  it('${env:NAME} resolves from the given environment', () => {
    const config = parseConfig(
      `connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { host: db, password: "\${env:DB_PASSWORD}" } }\n`,
      { env: { DB_PASSWORD: 's3cr3t' } },
    )
    expect(config.connections[0]?.upstream.password).toBe('s3cr3t')
  })

  it('${env:NAME} resolves inside a longer string and in several places', () => {
    const config = parseConfig(`dataDir: "/srv/\${env:SITE}/data"\nconnections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { host: "\${env:SITE}.db" } }\n`, {
      env: { SITE: 'eu1' },
    })
    expect(config.dataDir).toBe('/srv/eu1/data')
    expect(config.connections[0]?.upstream.host).toBe('eu1.db')
  })

  it('${env:NAME} defaults to process.env', () => {
    const name = `GATEHOUSE_TEST_${process.pid}`
    process.env[name] = 'from-process-env'
    try {
      const config = parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { password: "\${env:${name}}" } }\n`)
      expect(config.connections[0]?.upstream.password).toBe('from-process-env')
    } finally {
      delete process.env[name]
    }
  })

  it('a missing environment variable is a GH_ERR_CONFIG_REF error naming the path and the variable', () => {
    const err = configError(() =>
      parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { password: "\${env:NOT_SET_ANYWHERE}" } }\n`, { env: {} }),
    )
    expect(err.code).toBe('GH_ERR_CONFIG_REF')
    expect(issueAt(err, 'connections[0].upstream.password').message).toContain('NOT_SET_ANYWHERE')
    expect(err.message).toContain('connections[0].upstream.password')
  })

  it('${file:PATH} resolves relative to the config file directory and strips one trailing newline', () => {
    const sub = join(dir, 'secrets')
    mkdirSync(join(sub, 'keys'), { recursive: true })
    writeFileSync(join(sub, 'keys', 'db-password'), 'hunter2\n')
    writeFileSync(join(sub, 'keys', 'two-newlines'), 'line\n\n')
    writeFileSync(join(sub, 'keys', 'crlf'), 'windows\r\n')
    const file = join(sub, 'gatehouse.yaml')
    writeFileSync(
      file,
      `connections:\n  - name: a\n    adapter: postgres\n    listen: "127.0.0.1:1"\n    upstream: { password: "\${file:keys/db-password}", two: "\${file:./keys/two-newlines}", crlf: "\${file:keys/crlf}" }\n`,
    )
    // the working directory is elsewhere: the reference must not resolve against it
    expect(process.cwd()).not.toBe(sub)
    const upstream = loadConfigFile(file).connections[0]?.upstream
    expect(upstream?.password).toBe('hunter2')
    expect(upstream?.two).toBe('line\n')
    expect(upstream?.crlf).toBe('windows')
  })

  it('${file:PATH} accepts an absolute path', () => {
    const secret = join(dir, 'absolute-secret')
    writeFileSync(secret, 'abs')
    const config = parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { password: "\${file:${secret}}" } }\n`, { baseDir: '/nonexistent' })
    expect(config.connections[0]?.upstream.password).toBe('abs')
  })

  it('a missing file is a GH_ERR_CONFIG_REF error naming the path and the file', () => {
    const err = configError(() =>
      parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { password: "\${file:no/such/file}" } }\n`, { baseDir: dir }),
    )
    expect(err.code).toBe('GH_ERR_CONFIG_REF')
    const issue = issueAt(err, 'connections[0].upstream.password')
    expect(issue.message).toContain('no/such/file')
    expect(issue.message).toContain('ENOENT')
  })

  it('every unresolvable reference is reported, with array indexes in the path', () => {
    const err = configError(() =>
      parseConfig(`identities:\n  - id: x\n    groups: ["\${env:G1}"]\nconnections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { password: "\${env:P1}" } }\n`, { env: {} }),
    )
    expect(err.issues.map((i) => i.path)).toEqual(['identities[0].groups[0]', 'connections[0].upstream.password'])
  })

  it('a resolved value is not resolved again (no reference injection through a secret)', () => {
    const config = parseConfig(`connections:\n  - { name: a, adapter: postgres, listen: "127.0.0.1:1", upstream: { password: "\${env:P}" } }\n`, {
      env: { P: '${env:OTHER}$&' },
    })
    expect(config.connections[0]?.upstream.password).toBe('${env:OTHER}$&')
  })
})

describe('YAML syntax errors', () => {
  it('a YAML syntax error is reported with its line', () => {
    const err = configError(() => parseConfig(`connections:\n  - name: a\n    adapter: [postgres\nlisten: x\n`))
    expect(err.code).toBe('GH_ERR_CONFIG_INVALID')
    expect(err.issues[0]?.path).toMatch(/^line \d+$/)
    expect(err.issues[0]?.message).toMatch(/line \d+, column \d+/)
  })

  it('a bad indentation is reported at the offending line', () => {
    const err = configError(() => parseConfig(`connections:\n  - name: a\n   adapter: x\n`))
    expect(err.issues[0]?.path).toBe('line 3')
  })

  it('a duplicate key is a syntax error, not silently last-wins', () => {
    const err = configError(() => parseConfig(`dataDir: /a\ndataDir: /b\n${MINIMAL}`))
    expect(err.issues[0]?.path).toBe('line 2')
    expect(err.issues[0]?.message).toMatch(/unique/i)
  })
})
