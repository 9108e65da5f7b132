// The gateway's upstream login, called directly (no gateway process, no client): against a real
// PostgreSQL 15 cluster (SCRAM, md5, trust, TLS, cancel, catalog lookups) and against scripted
// stub servers that send what a real server would not (split and malformed frames, unexpected
// requests, silence). The stubs record what reached them, so a test can show the password did
// not. The gateway-level attacks (an impostor that does not know the password, TLS verification)
// are in upstream-attacks.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { getEventListeners } from 'node:events'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { createServer, Socket as NetSocket, type Server, type Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import { deriveScramSecret, GatewayError, ScramServer } from '@gatehouse/core'
import { cancelUpstream, connectUpstream, queryUpstream, UpstreamRefused } from '../../../adapters/postgres/dist/upstream.js'
import { buildQuery } from '../../../adapters/postgres/dist/codec/frontend.js'
import type { UpstreamConfig } from '../../../adapters/postgres/dist/config.js'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { errorFields, typed } from '../../fixtures/pg-raw.js'

let cluster: PgCluster

beforeAll(async () => {
  cluster = await startPgCluster({ tls: true })
}, 60_000)
afterAll(async () => {
  await cluster?.stop()
})

const live = () => new AbortController().signal
const config = (over: Partial<UpstreamConfig> = {}): UpstreamConfig => ({
  host: '127.0.0.1',
  port: cluster.port,
  database: cluster.database,
  user: cluster.users.scram.user,
  password: cluster.users.scram.password,
  auth: 'auto',
  tls: { mode: 'disable' },
  connectTimeoutMs: 5000,
  ...over,
})
const params = { client_encoding: 'UTF8', application_name: 'upstream-login test' }

/** The rejection of a promise that must reject, as a GatewayError. */
async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error('expected a refusal, the login succeeded')
}

/** Reads backend messages from a logged-in upstream socket. */
function messages(socket: Socket) {
  let buf = Buffer.alloc(0)
  const seen: { type: string; body: Buffer }[] = []
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    while (buf.length >= 5 && buf.length >= buf.readInt32BE(1) + 1) {
      const len = buf.readInt32BE(1)
      seen.push({ type: String.fromCharCode(buf[0] as number), body: buf.subarray(5, len + 1) })
      buf = buf.subarray(len + 1)
    }
  })
  return {
    seen,
    async until(type: string, ms = 10_000) {
      const end = Date.now() + ms
      while (!seen.some((m) => m.type === type)) {
        if (Date.now() > end) throw new Error(`no '${type}' within ${ms} ms; saw ${seen.map((m) => m.type).join('')}`)
        await new Promise((r) => setTimeout(r, 10))
      }
      return seen.find((m) => m.type === type) as { type: string; body: Buffer }
    },
  }
}

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}
const auth = (code: number, rest: Buffer = Buffer.alloc(0)): Buffer => typed('R', Buffer.concat([int32(code), rest]))
const cstrs = (...s: string[]) => Buffer.from(s.map((x) => `${x}\0`).join(''))
const loggedIn = (extra: Buffer[] = []): Buffer =>
  Buffer.concat([
    auth(0),
    typed('S', cstrs('server_version', '15.0')),
    typed('S', cstrs('client_encoding', 'UTF8')),
    ...extra,
    typed('K', Buffer.from([0, 0, 0, 7, 1, 2, 3, 4])),
    typed('Z', Buffer.from('I')),
  ])
const errorResponse = (fields: Record<string, string>): Buffer =>
  typed('E', Buffer.concat([...Object.entries(fields).map(([k, v]) => Buffer.from(`${k}${v}\0`)), Buffer.from([0])]))

interface Stub {
  port: number
  /** Startup packets received. */
  startups: number
  /** Their parameters, in order. */
  startupParams: Record<string, string>[]
  /** Bytes received after the startup packet, per connection, as latin1 text. */
  received: string[]
  /** Connections whose socket the gateway closed. */
  closed: number
  /** The TLS server name (SNI) each TLS connection asked for, '' for none. */
  servernames: string[]
  close(): Promise<void>
}

/**
 * A scripted upstream. `ssl`: what it answers to an SSLRequest ('N', 'S' to go on in TLS with the
 * cluster's certificate, 'hangup' to close without answering, or other bytes); `login`: called with
 * the socket after the startup packet; `onMessage`: called with each later message.
 */
async function stub(opts: {
  ssl?: string | Buffer
  login: (s: Socket) => void
  onMessage?: (s: Socket, type: string, body: Buffer) => void
}): Promise<Stub> {
  const state = { startups: 0, startupParams: [] as Record<string, string>[], received: [] as string[], closed: 0, servernames: [] as string[] }
  const sockets = new Set<Socket>()
  const server: Server = createServer((raw) => {
    sockets.add(raw)
    raw.on('error', () => undefined)
    raw.on('close', () => {
      sockets.delete(raw)
      state.closed++
    })
    const index = state.received.push('') - 1
    let s: Socket = raw
    let buf = Buffer.alloc(0)
    let started = false
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        if (!started) {
          if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return
          const len = buf.readInt32BE(0)
          const code = buf.readInt32BE(4)
          const pairs = buf.toString('utf8', 8, len - 1).split('\0')
          const startup = Object.fromEntries(pairs.flatMap((k, i) => (i % 2 === 0 && k !== '' ? [[k, pairs[i + 1] ?? '']] : [])))
          buf = buf.subarray(len)
          if (code === 80877103) {
            const answer = opts.ssl ?? 'N'
            if (answer === 'hangup') {
              s.end()
              return
            }
            s.write(answer)
            if (answer === 'S') {
              s.off('data', onData)
              const dir = dirname(cluster.tlsCaFile as string)
              const tls = new TLSSocket(raw, { isServer: true, key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.crt')) })
              tls.on('secure', () => state.servernames.push(typeof tls.servername === 'string' ? tls.servername : ''))
              s = tls
              s.on('error', () => undefined)
              s.on('data', onData)
            }
            continue
          }
          started = true
          state.startups++
          state.startupParams.push(startup)
          opts.login(s)
          continue
        }
        if (buf.length < 5 || buf.length < buf.readInt32BE(1) + 1) return
        const len = buf.readInt32BE(1)
        const type = String.fromCharCode(buf[0] as number)
        const body = buf.subarray(5, len + 1)
        buf = buf.subarray(len + 1)
        state.received[index] += type + body.toString('latin1')
        opts.onMessage?.(s, type, body)
      }
    }
    s.on('data', onData)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return Object.assign(state, {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  })
}

async function withStub<T>(opts: Parameters<typeof stub>[0], body: (s: Stub) => Promise<T>): Promise<T> {
  const s = await stub(opts)
  try {
    return await body(s)
  } finally {
    await s.close()
  }
}

const stubConfig = (s: Stub, over: Partial<UpstreamConfig> = {}) => config({ port: s.port, user: 'app', password: 'stub-Pw-secret-5521', ...over })

describe('login to a real PostgreSQL 15', () => {
  it('SCRAM: the session carries the server’s parameters (raw and parsed), its backend key and status', async () => {
    const up = await connectUpstream(config(), params, live())
    try {
      expect(up.parameters.get('server_version')).toMatch(/^15\./)
      expect(up.parameters.get('client_encoding')).toBe('UTF8')
      expect(up.parameters.get('application_name')).toBe('upstream-login test')
      // the raw messages are ParameterStatus frames holding the same pairs, to relay as they came
      const relayed = new Map<string, string>()
      for (const raw of up.parameterMessages) {
        expect(String.fromCharCode(raw[0] as number)).toBe('S')
        expect(raw.readInt32BE(1)).toBe(raw.length - 1)
        const [k, v] = raw.subarray(5).toString('utf8').split('\0')
        relayed.set(k as string, v as string)
      }
      expect(relayed).toEqual(up.parameters)
      expect(up.status).toBe('I'.charCodeAt(0))
      expect(up.leftover.length).toBe(0)
      expect(up.secret.length).toBe(4)
      // the pid is the backend's own: the server says so over the same connection
      const m = messages(up.socket)
      up.socket.write(buildQuery('SELECT pg_backend_pid()'))
      const row = await m.until('D')
      expect(Number(row.body.toString('utf8', 6))).toBe(up.pid)
    } finally {
      up.socket.destroy()
    }
  })

  it('a cancel with the backend key stops the running statement (57014), the connection stays', async () => {
    const cfg = config()
    const up = await connectUpstream(cfg, params, live())
    try {
      const m = messages(up.socket)
      up.socket.write(buildQuery('SELECT pg_sleep(30)'))
      await new Promise((r) => setTimeout(r, 200))
      const started = Date.now()
      await cancelUpstream(cfg, up.pid, up.secret)
      const err = await m.until('E')
      expect(errorFields(err.body).C).toBe('57014')
      expect(Date.now() - started).toBeLessThan(10_000)
      await m.until('Z')
      // a cancel with another secret is ignored by the server
      const before = m.seen.length
      up.socket.write(buildQuery('SELECT pg_sleep(0.5), 1'))
      await cancelUpstream(cfg, up.pid, Buffer.from([9, 9, 9, 9]))
      await new Promise((r) => setTimeout(r, 800))
      expect(m.seen.slice(before).map((x) => x.type)).not.toContain('E')
      expect(m.seen.slice(before).map((x) => x.type)).toContain('D')
    } finally {
      up.socket.destroy()
    }
  }, 20_000)

  it('md5 logs in with the right password; a wrong one is the server’s 28P01, without the password', async () => {
    const md5 = config({ user: cluster.users.md5.user, password: cluster.users.md5.password })
    const up = await connectUpstream(md5, params, live())
    up.socket.destroy()
    const wrong = 'not-the-Pw-8812'
    const err = await refusal(connectUpstream({ ...md5, password: wrong }, params, live()))
    expect(err).toBeInstanceOf(UpstreamRefused)
    expect(err.code).toBe('GH_ERR_UPSTREAM_AUTH')
    expect((err as UpstreamRefused).sqlstate).toBe('28P01')
    expect((err as UpstreamRefused).setting).toBe(false)
    expect(err.message).toMatch(/password authentication failed/)
    expect(err.message).not.toContain(wrong)
  })

  it('a wrong SCRAM password is 28P01 too', async () => {
    const err = await refusal(connectUpstream(config({ password: 'wrong-Pw-0071' }), params, live()))
    expect(err.code).toBe('GH_ERR_UPSTREAM_AUTH')
    expect((err as UpstreamRefused).sqlstate).toBe('28P01')
    expect(err.message).not.toContain('wrong-Pw-0071')
  })

  it('auth: trust logs in a trust user and refuses a server that asks for a password', async () => {
    const up = await connectUpstream(config({ user: cluster.users.trust.user, password: undefined, auth: 'trust' }), params, live())
    expect(up.parameters.get('session_authorization')).toBe(cluster.users.trust.user)
    up.socket.destroy()
    const err = await refusal(connectUpstream(config({ auth: 'trust' }), params, live()))
    expect(err.code).toBe('GH_ERR_UPSTREAM_AUTH')
    expect(err.message).toMatch(/configured for trust/)
  })

  it('a server that asks for a password the connection does not have: refused by the gateway', async () => {
    const err = await refusal(connectUpstream(config({ password: undefined }), params, live()))
    expect(err.code).toBe('GH_ERR_UPSTREAM_AUTH')
    expect(err.message).toMatch(/has none configured/)
  })

  it('a database that does not exist: unavailable (3D000), not a refused setting', async () => {
    const err = await refusal(connectUpstream(config({ database: 'no_such_db' }), params, live()))
    expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
    expect((err as UpstreamRefused).sqlstate).toBe('3D000')
    expect((err as UpstreamRefused).setting).toBe(false)
    expect((err as UpstreamRefused).serverMessage).toMatch(/no_such_db/)
  })

  it('a setting the server refuses is a refused setting, with the server’s SQLSTATE and message', async () => {
    const bad = await refusal(connectUpstream(config(), { ...params, DateStyle: 'bogus' }, live()))
    expect((bad as UpstreamRefused).sqlstate).toBe('22023')
    expect((bad as UpstreamRefused).setting).toBe(true)
    expect(bad.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
    const unknown = await refusal(connectUpstream(config(), { ...params, no_such_setting: '1' }, live()))
    expect((unknown as UpstreamRefused).sqlstate).toBe('42704')
    expect((unknown as UpstreamRefused).setting).toBe(true)
    expect((unknown as UpstreamRefused).serverMessage).toMatch(/no_such_setting/)
  })

  it('TLS: require encrypts (even with a CA that did not sign the server), verify-full checks CA and name', async () => {
    const ca = readFileSync(cluster.tlsCaFile as string, 'utf8')
    for (const [host, tls] of [
      ['127.0.0.1', { mode: 'require' }],
      ['127.0.0.1', { mode: 'verify-full', ca }],
      ['localhost', { mode: 'verify-full', ca }],
      ['127.0.0.1', { mode: 'verify-full', ca, servername: 'localhost' }],
    ] as const) {
      const up = await connectUpstream(config({ host, tls }), params, live())
      expect('encrypted' in up.socket && up.socket.encrypted).toBe(true)
      up.socket.destroy()
    }
    const wrongName = await refusal(connectUpstream(config({ tls: { mode: 'verify-full', ca, servername: 'db.example' } }), params, live()))
    expect(wrongName.message).toMatch(/TLS to upstream failed/)
    const noCa = await refusal(connectUpstream(config({ tls: { mode: 'verify-full' } }), params, live()))
    expect(noCa.message).toMatch(/TLS to upstream failed/)
  })

  it('catalog lookups return rows as text with NULLs, and the server’s error as a lookup failure', async () => {
    const rows = await queryUpstream(config(), `SELECT 1, NULL::text, '', 'é' UNION ALL SELECT 2, 'x', 'yy', 'z' ORDER BY 1`, live())
    expect(rows).toEqual([
      ['1', null, '', 'é'],
      ['2', 'x', 'yy', 'z'],
    ])
    expect(await queryUpstream(config(), 'SELECT 1 WHERE false', live())).toEqual([])
    const err = await refusal(queryUpstream(config(), 'SELECT 1/0', live()))
    expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
    expect(err.message).toBe('catalog lookup failed: division by zero')
    // each lookup ends its connection: none is left behind on the server
    await new Promise((r) => setTimeout(r, 200))
    expect(await cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gatehouse catalog lookup'`)).toBe('0')
  })

  it('a closed port: unavailable, naming the address and the error code', async () => {
    const s = await stub({ login: () => undefined })
    const port = s.port
    await s.close()
    const err = await refusal(connectUpstream(config({ port }), params, live()))
    expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
    expect(err.message).toBe(`cannot reach upstream 127.0.0.1:${port}: ECONNREFUSED`)
    // the operator's log gets the socket error itself
    expect((err.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED')
  })
})

describe('login to a scripted upstream', () => {
  it('frames split byte by byte are reassembled; notices and protocol negotiation are skipped', async () => {
    await withStub(
      {
        login: (s) => {
          const bytes = loggedIn([typed('N', cstrs('SNOTICE', '')), typed('v', Buffer.concat([int32(0), int32(0)]))])
          let i = 0
          const next = () => {
            if (i < bytes.length && !s.destroyed) {
              s.write(bytes.subarray(i, ++i))
              setImmediate(next)
            }
          }
          next()
        },
      },
      async (s) => {
        const up = await connectUpstream(stubConfig(s, { auth: 'trust' }), params, live())
        expect(up.pid).toBe(7)
        expect([...up.secret]).toEqual([1, 2, 3, 4])
        expect(up.parameters.get('server_version')).toBe('15.0')
        expect(up.parameterMessages.length).toBe(2)
        expect(up.status).toBe('I'.charCodeAt(0))
        up.socket.destroy()
      },
    )
  })

  it('bytes after ReadyForQuery are handed over as leftover, not lost', async () => {
    const extra = typed('N', cstrs('SNOTICE', 'Mlate', ''))
    await withStub({ login: (s) => s.write(Buffer.concat([loggedIn(), extra])) }, async (s) => {
      const up = await connectUpstream(stubConfig(s, { auth: 'trust' }), params, live())
      expect(up.leftover).toEqual(extra)
      up.socket.destroy()
    })
  })

  it('the startup packet names the configured user and database, over what the client asked for', async () => {
    await withStub({ login: (s) => s.write(loggedIn()) }, async (s) => {
      const up = await connectUpstream(stubConfig(s, { auth: 'trust', user: 'svc', database: 'appdb' }), { user: 'caller', database: 'other', TimeZone: 'UTC' }, live())
      up.socket.destroy()
      expect(s.startupParams).toEqual([{ user: 'svc', database: 'appdb', TimeZone: 'UTC' }])
      expect(s.received).toEqual([''])
    })
  })

  for (const [name, bytes, reason] of [
    ['a length below 4', Buffer.from([0x52, 0, 0, 0, 3]), /invalid message length 3 /],
    ['a length above 1 MiB', Buffer.concat([Buffer.from('R'), int32((1 << 20) + 1)]), /invalid message length 1048577 /],
    ['a data row before ReadyForQuery', typed('D', Buffer.from([0, 0])), /unexpected message 'D' from upstream during login/],
    ['GSSAPI (method 7)', auth(7), /unsupported authentication method 7/],
    ['SASLContinue before SASL', auth(11, Buffer.from('r=x,s=eA==,i=4096')), /unexpected SASLContinue/],
    ['SASLFinal before SASL', auth(12, Buffer.from('v=eA==')), /unexpected SASLFinal/],
    ['SASL without SCRAM-SHA-256', auth(10, cstrs('SCRAM-SHA-256-PLUS', '')), /upstream offers only SCRAM-SHA-256-PLUS$/],
  ] as const) {
    it(`${name}: refused, and nothing but the startup reaches the stub`, async () => {
      await withStub({ login: (s) => s.write(bytes) }, async (s) => {
        const err = await refusal(connectUpstream(stubConfig(s), params, live()))
        expect(err.message).toMatch(reason)
        expect(s.received).toEqual([''])
        await new Promise((r) => setTimeout(r, 50))
        expect(s.closed).toBe(1)
      })
    })
  }

  it('an upstream that closes during login', async () => {
    await withStub({ login: (s) => s.end() }, async (s) => {
      const err = await refusal(connectUpstream(stubConfig(s), params, live()))
      expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
      expect(err.message).toBe('upstream login failed: upstream closed the connection during login')
    })
  })

  it('an ErrorResponse: 28xxx is an authentication refusal, others keep the code, missing fields are named', async () => {
    for (const [fields, code, sqlstate, message] of [
      [{ S: 'FATAL', C: '28000', M: 'no pg_hba.conf entry' }, 'GH_ERR_UPSTREAM_AUTH', '28000', 'no pg_hba.conf entry'],
      [{ S: 'FATAL', C: '53300', M: 'sorry, too many clients already' }, 'GH_ERR_UPSTREAM_UNAVAILABLE', '53300', 'sorry, too many clients already'],
      [{ S: 'FATAL' }, 'GH_ERR_UPSTREAM_UNAVAILABLE', '', 'unknown error'],
    ] as const) {
      await withStub({ login: (s) => s.write(errorResponse(fields)) }, async (s) => {
        const err = await refusal(connectUpstream(stubConfig(s), params, live()))
        expect(err).toBeInstanceOf(UpstreamRefused)
        expect(err.code).toBe(code)
        expect((err as UpstreamRefused).sqlstate).toBe(sqlstate)
        expect((err as UpstreamRefused).serverMessage).toBe(message)
        expect(err.message).toBe(`upstream refused the connection: ${message} (SQLSTATE ${sqlstate})`)
      })
    }
  })

  it('md5: the answer is md5(md5(password + user) + salt), the password itself never sent', async () => {
    const salt = Buffer.from([0xde, 0xad, 0xbe, 0xef])
    await withStub({ login: (s) => s.write(auth(5, salt)), onMessage: (s) => s.write(loggedIn()) }, async (s) => {
      const up = await connectUpstream(stubConfig(s), params, live())
      up.socket.destroy()
      const inner = createHash('md5').update('stub-Pw-secret-5521app').digest('hex')
      const outer = createHash('md5').update(inner).update(salt).digest('hex')
      expect(s.received[0]).toBe(`pmd5${outer}\0`)
    })
  })

  it('cleartext: refused over plain TCP; over TLS the password goes, inside TLS only', async () => {
    await withStub({ login: (s) => s.write(auth(3)), onMessage: (s) => s.write(loggedIn()) }, async (s) => {
      const err = await refusal(connectUpstream(stubConfig(s), params, live()))
      expect(err.message).toMatch(/cleartext over an unencrypted connection/)
      expect(s.received).toEqual([''])
    })
    await withStub({ ssl: 'S', login: (s) => s.write(auth(3)), onMessage: (s) => s.write(loggedIn()) }, async (s) => {
      const up = await connectUpstream(stubConfig(s, { tls: { mode: 'require' } }), params, live())
      expect('encrypted' in up.socket && up.socket.encrypted).toBe(true)
      up.socket.destroy()
      expect(s.received).toEqual(['pstub-Pw-secret-5521\0'])
    })
  })

  it('auth: scram-sha-256 refuses md5 and cleartext before answering them', async () => {
    for (const request of [auth(5, Buffer.alloc(4)), auth(3)]) {
      await withStub({ ssl: 'S', login: (s) => s.write(request), onMessage: (s) => s.write(loggedIn()) }, async (s) => {
        const err = await refusal(connectUpstream(stubConfig(s, { auth: 'scram-sha-256', tls: { mode: 'require' } }), params, live()))
        expect(err.code).toBe('GH_ERR_UPSTREAM_AUTH')
        expect(err.message).toMatch(/requires SCRAM-SHA-256/)
        expect(s.received).toEqual([''])
      })
    }
  })

  it('TLS required: a server without TLS, one that answers more than one byte, one that hangs up', async () => {
    for (const [ssl, reason] of [
      ['N', /does not accept TLS but the connection requires it/],
      ['SX', /unexpected bytes after SSLRequest/],
      ['E', /does not accept TLS/],
    ] as const) {
      await withStub({ ssl, login: (s) => s.write(loggedIn()) }, async (s) => {
        const err = await refusal(connectUpstream(stubConfig(s, { tls: { mode: 'require' }, auth: 'trust' }), params, live()))
        expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
        expect(err.message).toMatch(reason)
        expect(s.startups).toBe(0)
      })
    }
  })
})

describe('a login that does not finish is bounded', () => {
  it('an upstream that accepts and says nothing: refused after connectTimeoutMs, its socket closed', async () => {
    await withStub({ login: () => undefined }, async (s) => {
      const started = Date.now()
      const err = await refusal(connectUpstream(stubConfig(s, { connectTimeoutMs: 300 }), params, live()))
      expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
      expect(err.message).toBe('upstream login failed: login did not finish within 300 ms')
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      expect(Date.now() - started).toBeLessThan(3000)
      await new Promise((r) => setTimeout(r, 50))
      expect(s.closed).toBe(1)
    })
  })

  it('an upstream silent after the SSLRequest, or during the TLS handshake, is bounded the same way', async () => {
    // Buffer.from('S'): the stub says yes to TLS and then never speaks it
    for (const ssl of [Buffer.alloc(0), Buffer.from('S')]) {
      await withStub({ ssl, login: () => undefined }, async (s) => {
        const err = await refusal(connectUpstream(stubConfig(s, { connectTimeoutMs: 300, tls: { mode: 'require' } }), params, live()))
        expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
        expect(err.message).toMatch(/ login did not finish within 300 ms$/)
        await new Promise((r) => setTimeout(r, 50))
        expect(s.closed).toBe(1)
      })
    }
  })

  it('the session closing during the login ends it at once and closes the upstream socket', async () => {
    await withStub({ login: () => undefined }, async (s) => {
      const session = new AbortController()
      const pending = refusal(connectUpstream(stubConfig(s, { connectTimeoutMs: 60_000 }), params, session.signal))
      await new Promise((r) => setTimeout(r, 100))
      session.abort()
      const err = await pending
      expect(err.message).toBe('upstream login failed: session closed')
      await new Promise((r) => setTimeout(r, 50))
      expect(s.closed).toBe(1)
    })
  })

  it('a session already closed does not connect at all', async () => {
    await withStub({ login: (s) => s.write(loggedIn()) }, async (s) => {
      const session = new AbortController()
      session.abort()
      const err = await refusal(connectUpstream(stubConfig(s, { auth: 'trust' }), params, session.signal))
      expect(err.message).toBe(`cannot reach upstream 127.0.0.1:${s.port}: session closed`)
      await new Promise((r) => setTimeout(r, 50))
      expect(s.startups).toBe(0)
    })
  })

  it('a catalog lookup whose query gets no answer fails after the deadline instead of holding statements', async () => {
    await withStub({ login: (s) => s.write(loggedIn()) }, async (s) => {
      const err = await refusal(queryUpstream(stubConfig(s, { auth: 'trust', connectTimeoutMs: 300 }), 'SELECT 1', live()))
      expect(err.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE')
      expect(err.message).toBe('catalog lookup failed: catalog lookup did not finish within 300 ms')
      expect(s.received[0]).toBe('QSELECT 1\0')
    })
  })

  it('a catalog lookup gets rows (and an error) from a scripted server, and a NULL column', async () => {
    const row = (...cols: (string | null)[]) =>
      typed('D', Buffer.concat([Buffer.from([0, cols.length]), ...cols.map((c) => (c === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(c)), Buffer.from(c)])))]))
    await withStub(
      {
        login: (s) => s.write(loggedIn()),
        onMessage: (s, type) => {
          if (type === 'Q') s.write(Buffer.concat([row('a', null, ''), row('bc', 'd', 'e'), errorResponse({ C: 'XX000' }), typed('Z', Buffer.from('I'))]))
        },
      },
      async (s) => {
        const err = await refusal(queryUpstream(stubConfig(s, { auth: 'trust' }), 'SELECT 1', live()))
        expect(err.message).toBe('catalog lookup failed: error')
      },
    )
  })
})

/** Timers alive in this process (a login must not leave its deadline behind). */
/**
 * Active timers in the process. Another test's timer may expire while a check runs, so a check
 * asserts "no more than before" (a timer left behind shows as one more), never "exactly as many".
 */
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length

/**
 * A port whose listen queue is full: the kernel drops further SYNs, so a TCP connect to it neither
 * succeeds nor fails, as with an upstream host that is down behind a firewall. Node accepts
 * connections by itself, so the listener is a python process that never calls accept().
 */
async function blackhole(): Promise<{ port: number; close(): void }> {
  const py = spawn('python3', [
    '-c',
    [
      'import socket, sys',
      's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
      'c = socket.socket(); c.connect(s.getsockname())',
      'print(s.getsockname()[1], flush=True)',
      'sys.stdin.read()',
    ].join('\n'),
  ])
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: py.stdout }).once('line', resolve)
    py.once('error', reject)
    py.once('exit', (code) => reject(new Error(`python3 exited with ${code}`)))
  })
  return { port: Number(line), close: () => py.stdin.end() }
}

describe('what a login leaves behind, and the edges of what it reads', () => {
  it('a finished login or lookup leaves no listener on the session, no timer and no reader on the socket', async () => {
    const session = new AbortController()
    const before = timers()
    const up = await connectUpstream(config(), params, session.signal)
    try {
      expect(getEventListeners(session.signal, 'abort')).toHaveLength(0)
      expect(timers()).toBeLessThanOrEqual(before)
      // the login's reader is gone: later bytes are the session's, not buffered a second time
      const fresh = new NetSocket()
      for (const event of ['data', 'end', 'close', 'error']) expect(up.socket.listenerCount(event), event).toBe(fresh.listenerCount(event))
    } finally {
      up.socket.destroy()
    }
    for (let i = 0; i < 3; i++) await queryUpstream(config(), 'SELECT 1', session.signal)
    expect(getEventListeners(session.signal, 'abort')).toHaveLength(0)
    expect(timers()).toBeLessThanOrEqual(before)
  })

  it('an empty message (EmptyQueryResponse, 4 bytes) is read; 1 MiB is the largest message, one byte more is refused', async () => {
    // '' makes the real server answer EmptyQueryResponse: a message whose length field is 4
    expect(await queryUpstream(config(), '', live())).toEqual([])
    const rowOfLength = (len: number) => {
      // DataRow: int16 count, int32 column length, the column: len = 4 + 2 + 4 + column
      const col = len - 10
      return typed('D', Buffer.concat([Buffer.from([0, 1]), int32(col), Buffer.alloc(col, 0x61)]))
    }
    for (const [len, ok] of [
      [1 << 20, true],
      [(1 << 20) + 1, false],
    ] as const) {
      await withStub({ login: (s) => s.write(loggedIn()), onMessage: (s, type) => type === 'Q' && s.write(Buffer.concat([rowOfLength(len), typed('Z', Buffer.from('I'))])) }, async (s) => {
        const lookup = queryUpstream(stubConfig(s, { auth: 'trust' }), 'SELECT 1', live())
        if (ok) expect((await lookup)[0]?.[0]).toHaveLength(len - 10)
        else expect((await refusal(lookup)).message).toBe(`catalog lookup failed: invalid message length ${len} from upstream during login`)
      })
    }
  })

  it('an upstream that sends half a message and closes: refused at once, not after the deadline', async () => {
    await withStub({ login: (s) => s.end(auth(0).subarray(0, 6)) }, async (s) => {
      const started = Date.now()
      const err = await refusal(connectUpstream(stubConfig(s, { connectTimeoutMs: 10_000 }), params, live()))
      expect(err.message).toBe('upstream login failed: upstream closed the connection during login')
      expect((err.cause as Error).message).toBe('upstream closed the connection during login')
      expect(Date.now() - started).toBeLessThan(5000)
    })
  })

  it('an upstream that hangs up on the SSLRequest: refused at once, naming it', async () => {
    await withStub({ ssl: 'hangup', login: () => undefined }, async (s) => {
      const started = Date.now()
      const err = await refusal(connectUpstream(stubConfig(s, { connectTimeoutMs: 10_000, tls: { mode: 'require' } }), params, live()))
      expect(err.message).toBe('upstream login failed: upstream closed during SSLRequest')
      expect(Date.now() - started).toBeLessThan(5000)
    })
  })

  it('TLS names the host (SNI) when it is a name, never when it is an address', async () => {
    for (const [host, expected] of [
      ['localhost', 'localhost'],
      ['127.0.0.1', ''],
    ] as const) {
      await withStub({ ssl: 'S', login: (s) => s.write(loggedIn()) }, async (s) => {
        const up = await connectUpstream(stubConfig(s, { host, auth: 'trust', tls: { mode: 'require' } }), params, live())
        up.socket.destroy()
        expect(s.servernames).toEqual([expected])
      })
    }
  })

  it('a TCP connect that never completes is bounded by connectTimeoutMs, and ends when the session closes', async () => {
    const hole = await blackhole()
    try {
      const started = Date.now()
      const err = await refusal(connectUpstream(config({ port: hole.port, connectTimeoutMs: 300 }), params, live()))
      expect(err.message).toBe(`cannot reach upstream 127.0.0.1:${hole.port}: connect did not finish within 300 ms`)
      expect(Date.now() - started).toBeLessThan(3000)
      const session = new AbortController()
      const pending = refusal(connectUpstream(config({ port: hole.port, connectTimeoutMs: 60_000 }), params, session.signal))
      await new Promise((r) => setTimeout(r, 100))
      session.abort()
      expect((await pending).message).toBe(`cannot reach upstream 127.0.0.1:${hole.port}: session closed`)
    } finally {
      hole.close()
    }
  })

  it('a catalog lookup logs in as the gateway’s lookup, in UTF-8; its failures keep their cause', async () => {
    await withStub({ login: (s) => s.write(loggedIn()) }, async (s) => {
      const err = await refusal(queryUpstream(stubConfig(s, { auth: 'trust', connectTimeoutMs: 300 }), 'SELECT 1', live()))
      expect((err.cause as Error).message).toBe('catalog lookup did not finish within 300 ms')
      expect(s.startupParams[0]).toEqual({ client_encoding: 'UTF8', application_name: 'gatehouse catalog lookup', user: 'app', database: cluster.database })
    })
  })

  it('an upstream offering several SASL mechanisms but not SCRAM-SHA-256 is named with all of them', async () => {
    await withStub({ login: (s) => s.write(auth(10, cstrs('SCRAM-SHA-256-PLUS', 'OAUTHBEARER', ''))) }, async (s) => {
      const err = await refusal(connectUpstream(stubConfig(s), params, live()))
      expect(err.message).toBe('upstream offers only SCRAM-SHA-256-PLUS, OAUTHBEARER')
    })
  })

  it('a SQLSTATE is a refused setting only by its class (22, 42, 55), not by digits elsewhere', () => {
    for (const [sqlstate, setting] of [
      ['22023', true],
      ['42704', true],
      ['55P02', true],
      ['53422', false],
      ['0A042', false],
      ['XX055', false],
    ] as const) {
      expect(new UpstreamRefused('GH_ERR_UPSTREAM_UNAVAILABLE', sqlstate, 'm').setting, sqlstate).toBe(setting)
    }
  })

  it('auth: scram-sha-256 — after a proven SCRAM login, a further request for the password is refused, the password not sent', async () => {
    const password = 'stub-Pw-secret-5521'
    for (const [after, name] of [
      [auth(3), 'cleartext'],
      [auth(5, Buffer.from([1, 2, 3, 4])), 'md5'],
    ] as const) {
      let server: ScramServer<number> | undefined
      let answers = 0
      const proven = deriveScramSecret(password, randomBytes(16))
      await withStub(
        {
          ssl: 'S',
          login: (s) => s.write(auth(10, cstrs('SCRAM-SHA-256', ''))),
          onMessage: (s, type, body) => {
            if (type !== 'p') return
            answers++
            if (!server) {
              // SASLInitialResponse: mechanism, int32 length, client-first-message
              const at = body.indexOf(0) + 1
              server = new ScramServer([{ ...proven, value: 1 }], randomBytes(16))
              s.write(auth(11, Buffer.from(server.start(body.toString('utf8', at + 4)))))
              return
            }
            const done = server.finish(body.toString('utf8'))
            if (!done) return s.write(errorResponse({ S: 'FATAL', C: '28P01', M: 'bad proof' }))
            s.write(Buffer.concat([auth(12, Buffer.from(done.serverFinal)), after]))
          },
        },
        async (s) => {
          const err = await refusal(connectUpstream(stubConfig(s, { auth: 'scram-sha-256', tls: { mode: 'require' } }), params, live()))
          expect(err.message, name).toMatch(/requires SCRAM-SHA-256/)
          // the SCRAM messages went, and nothing after them
          expect(answers, name).toBe(2)
          expect(s.received[0], name).not.toContain(password)
        },
      )
    }
  })
})
