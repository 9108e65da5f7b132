/**
 * auth-ssh-key in process: which registered key proves which identity, with keys OpenSSH's
 * ssh-keygen made. (test/adapters/ssh/keys.test.ts drives the same plugin through real ssh.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GatewayConfig, GatewayConfigToken, GatewayError, validate, type AuthContext, type Principal } from '@gatehouse/core'
import { container as tsyringeContainer } from 'tsyringe'
import { parseAuthorizedKey, plugin, SshKeyAuthenticator } from '@gatehouse/plugin-auth-ssh-key'

let dir: string
const keys: Record<string, string> = {}
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-sshkeys-'))
  for (const [name, type] of [['a', 'ed25519'], ['b', 'ed25519'], ['rsa', 'rsa'], ['ec', 'ecdsa']] as const) {
    execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', `${name} key for tests`, '-f', join(dir, name)])
    keys[name] = readFileSync(join(dir, `${name}.pub`), 'utf8').trim()
  }
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const blob = (line: string) => Buffer.from(line.split(' ')[1] as string, 'base64')
const ctx: AuthContext = { session: { id: 's', connection: 'web', protocol: 'ssh', clientAddress: '127.0.0.1:1', startedAt: 0, tls: false, signal: new AbortController().signal }, connection: 'web', now: 0 }
const config = (identities: { id: string; sshKeys: string[]; groups?: string[]; claims?: Record<string, unknown> }[]) =>
  validate(GatewayConfig, { connections: [{ name: 'web', adapter: 'ssh', listen: '127.0.0.1:0', upstream: { host: 'h', user: 'u' } }], identities: identities.map((i) => ({ kind: 'agent', ...i })) })
const offered = (user: string, line: string) => ({ kind: 'public-key' as const, user, algorithm: line.split(' ')[0] as string, key: blob(line) })

describe('parseAuthorizedKey', () => {
  it('reads the algorithm, the wire blob and the whole comment of keys ssh-keygen made', () => {
    for (const name of ['a', 'rsa', 'ec']) {
      const k = parseAuthorizedKey(`  ${keys[name]}  `)
      expect(k.algorithm).toBe((keys[name] as string).split(' ')[0])
      expect(k.blob).toEqual(blob(keys[name] as string))
      expect(k.comment).toBe(`${name} key for tests`)
    }
    expect(parseAuthorizedKey((keys.a as string).split(' ').slice(0, 2).join(' ')).comment).toBe('')
    // fields apart by several blanks, as authorized_keys files often are
    expect(parseAuthorizedKey((keys.a as string).replace(/ /g, ' \t ')).blob).toEqual(blob(keys.a as string))
    expect(parseAuthorizedKey((keys.a as string).replace(/ /g, ' \t ')).comment).toBe('a key for tests')
  })

  it('refuses a blob whose own algorithm name differs from the one written before it, and blobs too short to hold one', () => {
    const [, b64] = (keys.a as string).split(' ')
    expect(() => parseAuthorizedKey(`ssh-rsa ${b64}`)).toThrow('not a valid ssh-rsa public key')
    expect(() => parseAuthorizedKey(`ssh-ed25519 ${Buffer.from([0, 0, 0]).toString('base64')}`)).toThrow('not a valid ssh-ed25519 public key')
    expect(() => parseAuthorizedKey('')).toThrow('not a valid SSH public key')
    // a length prefix longer than the blob: the name read is cut short, so it differs
    expect(() => parseAuthorizedKey(`ssh-ed25519 ${Buffer.from([0, 0, 0, 99, 0x73]).toString('base64')}`)).toThrow('not a valid ssh-ed25519 public key')
  })
})

describe('SshKeyAuthenticator', () => {
  it('a registered key proves its identity: the principal names the key by its comment, or by its position without one', () => {
    const noComment = (keys.b as string).split(' ').slice(0, 2).join(' ')
    const auth = new SshKeyAuthenticator(config([{ id: 'ci', groups: ['ci'], claims: { team: 'platform' }, sshKeys: [keys.a as string, noComment] }]))
    expect(auth.authenticate(offered('ci', keys.a as string), ctx)).toEqual({ id: 'ci', kind: 'agent', groups: ['ci'], claims: { team: 'platform', sshKey: 'a key for tests' }, credential: 'ssh-key:a key for tests' })
    expect(auth.authenticate(offered('ci', keys.b as string), ctx)).toMatchObject({ credential: 'ssh-key:key1', claims: { sshKey: 'key1' } })
  })

  it('refuses a key registered to another identity, an unregistered key, an unknown user, and a key cut short; passes on other credentials', () => {
    const auth = new SshKeyAuthenticator(config([{ id: 'ci', sshKeys: [keys.a as string] }, { id: 'ops', sshKeys: [keys.rsa as string] }]))
    const refused = (fn: () => unknown) => {
      try {
        fn()
      } catch (err) {
        return err as GatewayError
      }
      throw new Error('expected a refusal')
    }
    expect(refused(() => auth.authenticate(offered('ci', keys.rsa as string), ctx))).toMatchObject({ code: 'GH_ERR_AUTH_FAILED', message: 'public key not registered to identity "ci"', clientMessage: 'authentication failed' })
    expect(refused(() => auth.authenticate(offered('ci', keys.b as string), ctx)).code).toBe('GH_ERR_AUTH_FAILED')
    expect(refused(() => auth.authenticate(offered('nobody', keys.a as string), ctx)).code).toBe('GH_ERR_AUTH_FAILED')
    const cut = { ...offered('ci', keys.a as string), key: blob(keys.a as string).subarray(0, 20) }
    expect(refused(() => auth.authenticate(cut, ctx)).code).toBe('GH_ERR_AUTH_FAILED')
    expect(auth.authenticate({ kind: 'password', user: 'ci', password: 'x' }, ctx)).toBeUndefined()
    // an identity without keys is not one this plugin can prove
    const none = new SshKeyAuthenticator(config([{ id: 'ci', sshKeys: [] }]))
    expect(refused(() => none.authenticate(offered('ci', keys.a as string), ctx)).code).toBe('GH_ERR_AUTH_FAILED')
  })

  it('a malformed key in the config names its path', () => {
    const [, b64] = (keys.a as string).split(' ')
    expect(() => new SshKeyAuthenticator(config([{ id: 'ci', sshKeys: [keys.b as string] }, { id: 'ops', sshKeys: [keys.a as string, `ssh-rsa ${b64} x`] }]))).toThrow(
      expect.objectContaining({ code: 'GH_ERR_CONFIG_INVALID', message: 'identities[1].sshKeys[1]: not a valid ssh-rsa public key' }),
    )
  })

  it('revalidate after a reload: a key still registered gives the principal as the config now describes it; a removed key is revoked; a principal it did not produce is not its business', () => {
    const before = new SshKeyAuthenticator(config([{ id: 'ci', groups: ['old'], sshKeys: [keys.a as string] }]))
    const principal = before.authenticate(offered('ci', keys.a as string), ctx) as Principal
    const after = new SshKeyAuthenticator(config([{ id: 'ci', groups: ['new'], sshKeys: [keys.b as string, keys.a as string] }]))
    expect(after.revalidate(principal, ctx)).toMatchObject({ id: 'ci', groups: ['new'], credential: 'ssh-key:a key for tests' })
    const removed = new SshKeyAuthenticator(config([{ id: 'ci', sshKeys: [keys.b as string] }]))
    expect(() => removed.revalidate(principal, ctx)).toThrow(expect.objectContaining({ code: 'GH_ERR_AUTH_REVOKED', message: 'the key is no longer registered to identity "ci"' }))
    const moved = new SshKeyAuthenticator(config([{ id: 'ops', sshKeys: [keys.a as string] }]))
    expect(() => moved.revalidate(principal, ctx)).toThrow(expect.objectContaining({ code: 'GH_ERR_AUTH_REVOKED' }))
    expect(after.revalidate({ id: 'ci', kind: 'agent', groups: [], claims: {}, credential: 'token:x' }, ctx)).toBeUndefined()
  })

  it('the plugin: an authenticate stage named auth-ssh-key, no config of its own', async () => {
    expect(plugin).toMatchObject({ name: 'auth-ssh-key', stage: 'authenticate', description: 'SSH public keys registered under identities[].sshKeys' })
    const root = tsyringeContainer.createChildContainer()
    const cfg = config([{ id: 'ci', sshKeys: [keys.a as string] }])
    root.registerInstance(GatewayConfigToken, cfg as never)
    const a = await plugin.register(root, {}, { gateway: cfg, instance: 'auth-ssh-key', logger: undefined as never, dataDir: '/tmp' })
    expect(a).toBeInstanceOf(SshKeyAuthenticator)
    expect((a.authenticate(offered('ci', keys.a as string), ctx) as Principal).id).toBe('ci')
    expect(validate(plugin.configSchema!, {})).toEqual({})
    expect(() => validate(plugin.configSchema!, { x: 1 })).toThrow('x: unknown field')
  })
})
