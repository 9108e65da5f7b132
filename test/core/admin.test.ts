/**
 * The admin API: bearer-token auth on every route, Prometheus metrics (requests by verdict),
 * and terminal recordings served from the data directory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdirSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { generateToken, hashToken } from '@gatehouse/core'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../fixtures/gateway.js'
import { psql } from '../fixtures/clients.js'

let cluster: PgCluster
let gw: TestGateway
const adminToken = generateToken()
let base: string

beforeAll(async () => {
  cluster = await startPgCluster()
  gw = await startGateway({ upstream: pgUpstream(cluster), admin: { listen: '127.0.0.1:0', tokens: [hashToken(adminToken, 'admin')] } })
  base = `http://127.0.0.1:${gw.gateway.adminPort}`
})
afterAll(async () => {
  await gw?.stop()
  await cluster?.stop()
})

const get = (path: string, token?: string) => fetch(`${base}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {})

describe('admin API', () => {
  it('refuses requests without a valid admin token', async () => {
    expect((await get('/metrics')).status).toBe(401)
    expect((await get('/metrics', 'gh_wrong')).status).toBe(401)
    expect((await get('/metrics', gw.tokens['agent-1'])).status).toBe(401)
  })

  it('serves Prometheus metrics with requests counted by verdict', async () => {
    await psql({ port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'] as string }, 'SELECT 1;\nDROP TABLE nothing;\n')
    const res = await get('/metrics', adminToken)
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text).toMatch(/gatehouse_requests_total\{connection="pg",action="sql.query",verdict="allow"\} 1/)
    expect(text).toMatch(/gatehouse_requests_total\{connection="pg",action="sql.query",verdict="deny"\} 1/)
  })

  it('lists and serves a session\u2019s terminal recordings', async () => {
    const dir = join(gw.dir, 'recordings', 'sess-1')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'sess-1.3.cast'), '{"version":2,"width":80,"height":24}\n[0.1,"o","hi\\r\\n"]\n')
    const list = await (await get('/recordings/sess-1', adminToken)).json()
    expect(list).toEqual({ session: 'sess-1', recordings: ['sess-1.3.cast'] })
    const file = await get('/recordings/sess-1/sess-1.3.cast', adminToken)
    expect(file.headers.get('content-type')).toContain('application/x-asciicast')
    expect(await file.text()).toContain('"version":2')
    expect((await get('/recordings/sess-1/..%2F..%2Faudit.jsonl', adminToken)).status).toBe(404)
    expect((await get('/recordings/nope/x.cast', adminToken)).status).toBe(404)
    // over a real socket the path is not normalised: `..` must not reach outside recordings/
    writeFileSync(join(gw.dir, 'outside.cast'), 'secret')
    const raw = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve) => {
        const req = httpRequest({ host: '127.0.0.1', port: gw.gateway.adminPort, path, headers: { authorization: `Bearer ${adminToken}` } }, (res) => {
          let body = ''
          res.on('data', (d: Buffer) => (body += d.toString()))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        })
        req.end()
      })
    for (const path of ['/recordings/..', '/recordings/../outside.cast', '/recordings/%2e%2e/outside.cast', '/recordings/./sess-1.3.cast']) {
      const r = await raw(path)
      expect(r.body, path).not.toContain('secret')
      expect(r.body, path).not.toContain('outside.cast')
    }
  })
})
