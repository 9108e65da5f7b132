/**
 * Held requests, end to end with psql: a statement a policy sends to `review` waits (psql shows
 * a NOTICE naming the review), with the session's later statements queued behind it, until an
 * approver decides through the admin API or the CLI. Approved, it runs; denied or timed out, it
 * is refused in PostgreSQL's terms and the session goes on. The requester cannot decide its own
 * request; a rule can need two approvers; an approval releases only the request it showed; a
 * grant lets the next matching statement through without a review; roles are enforced; held
 * requests end denied and audited when the gateway stops, and reviews left pending by a gateway
 * that died end denied and audited when it starts again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger, Gateway, generateToken, hashToken, loadConfigFile, openEmbedded, SqlStateStore } from '@gatehouse/core'
import pg from 'pg'
import { startPgCluster, type PgCluster } from '../fixtures/pg-cluster.js'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(REPO, 'core', 'dist', 'cli.js')

let cluster: PgCluster
let dir: string
const tokens = { agent: generateToken(), alice: generateToken(), bob: generateToken(), audrey: generateToken(), agentApprover: generateToken(), root: generateToken() }

interface Running {
  gateway: Gateway
  port: number
  admin: string
  dataDir: string
  audit(): { type: string; [k: string]: unknown }[]
}

async function start(dataDir: string, extra = ''): Promise<Running> {
  const u = cluster.users.scram
  const path = join(dataDir, 'gatehouse.yaml')
  writeFileSync(
    path,
    `dataDir: ${dataDir}
log: { level: silent }
admin:
  listen: "127.0.0.1:0"
  tokens:
    - "${hashToken(tokens.root, 'admin')}"
    - { id: alice, role: approver, hash: "${hashToken(tokens.alice, 'alice')}" }
    - { id: bob, role: approver, hash: "${hashToken(tokens.bob, 'bob')}" }
    - { id: audrey, role: auditor, hash: "${hashToken(tokens.audrey, 'audrey')}" }
    - { id: agent-1, role: approver, hash: "${hashToken(tokens.agentApprover, 'agent-1')}" }
identities:
  - { id: agent-1, groups: [agents], tokens: [ { hash: "${hashToken(tokens.agent, 'agent-1')}" } ] }
plugins:
  - { use: audit-jsonl, config: { path: audit.jsonl } }
connections:
  - { name: orders, adapter: postgres, listen: "127.0.0.1:0", upstream: { host: 127.0.0.1, port: ${cluster.port}, database: app, user: ${u.user}, password: "${u.password}" } }
policies:
  - id: p
    principals: { groups: [agents] }
    rules:
      - { id: reads, effect: allow, match: { sql.statement: [SELECT] } }
      - { id: deletes, effect: review, match: { sql.statement: [DELETE] }, reason: deletes need a person, review: { timeoutSeconds: 60 } }
      - { id: updates, effect: review, match: { sql.statement: [UPDATE] }, reason: updates need two people, review: { approvals: 2, timeoutSeconds: 60 } }
      - { id: inserts, effect: review, match: { sql.statement: [INSERT] }, reason: inserts wait briefly, review: { timeoutSeconds: 2 } }
${extra}`,
  )
  const gateway = await Gateway.build(loadConfigFile(path), { logger: createLogger('silent') })
  await gateway.start()
  return {
    gateway,
    port: gateway.address('orders').port,
    admin: `http://127.0.0.1:${gateway.adminPort}`,
    dataDir,
    audit: () =>
      readFileSync(join(dataDir, 'audit.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string }),
  }
}

/** psql running `sql`, with a way to wait for what it prints on stderr (the NOTICE) and for its end. */
function psqlLive(port: number, sql: string): { stderrMatch(re: RegExp): Promise<RegExpExecArray>; interrupt(): void; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn('psql', ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', 'agent-1', '-d', 'app', '-At'], {
    env: { PATH: process.env.PATH ?? '', PGPASSWORD: tokens.agent, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' },
  })
  let stdout = ''
  let stderr = ''
  const waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void }[] = []
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
    for (const w of [...waiters]) {
      const m = w.re.exec(stderr)
      if (m) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(m)
      }
    }
  })
  child.stdin.end(sql)
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
  return {
    stderrMatch: (re) =>
      new Promise((resolve, reject) => {
        const m = re.exec(stderr)
        if (m) return resolve(m)
        waiters.push({ re, resolve })
        setTimeout(() => reject(new Error(`psql printed no ${re} within 20 s; stderr so far: ${stderr}`)), 20_000).unref()
      }),
    interrupt: () => child.kill('SIGINT'),
    done,
  }
}

const HELD = /held for review (rev_[0-9a-f-]+)/

function api(base: string, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  return fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, unknown> }))
}

function cli(args: string[], token: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, GATEHOUSE_ADMIN_TOKEN: token }, timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
  })
}

let gw: Running

beforeAll(async () => {
  cluster = await startPgCluster()
  await cluster.psql(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g; CREATE TABLE other (id int); INSERT INTO other VALUES (1), (21), (22), (23); GRANT ALL ON t, other TO ${cluster.users.scram.user};`)
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-reviews-'))
  gw = await start(mkdtempSync(join(dir, 'gw-')))
}, 60_000)

afterAll(async () => {
  await gw?.gateway.shutdown(0)
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('held requests', () => {
  it('a DELETE waits with a NOTICE naming its review, the next statement queued behind it; approved with the CLI, both run, and the audit tells the story', async () => {
    const psql = psqlLive(gw.port, 'DELETE FROM t WHERE id = 1;\nSELECT count(*) FROM t;\n')
    const id = (await psql.stderrMatch(HELD))[1] as string
    // the statement waits: nothing ran, and the review is listed with what the approver needs to see
    expect(await cluster.psql('SELECT count(*) FROM t WHERE id = 1')).toBe('1')
    const listed = await cli(['review', 'list', '--admin', gw.admin], tokens.audrey)
    const pending = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; text: string; principal: string; rule: string; approvalsRequired: number })
    expect(pending.find((r) => r.id === id)).toMatchObject({ text: 'DELETE FROM t WHERE id = 1', principal: 'agent-1', rule: 'p/deletes', approvalsRequired: 1 })

    const approved = await cli(['review', 'approve', id, '--admin', gw.admin, '--reason', 'ticket 42'], tokens.alice)
    expect(approved.code, approved.stderr).toBe(0)
    expect(JSON.parse(approved.stdout)).toMatchObject({ result: 'approved', review: { status: 'approved', decidedBy: 'alice' } })
    const r = await psql.done
    expect(r.stdout.trim().split('\n')).toEqual(['DELETE 1', '19'])
    expect(r.stderr).toMatch(/NOTICE: {2}gatehouse: this statement is held for review rev_/)
    expect(await cluster.psql('SELECT count(*) FROM t WHERE id = 1')).toBe('0')

    const events = gw.audit()
    const intent = events.find((e) => e.type === 'request' && e.review === id) as { request: string; verdict: string }
    expect(intent).toMatchObject({ verdict: 'review', rule: 'p/deletes', text: 'DELETE FROM t WHERE id = 1' })
    expect(events.find((e) => e.type === 'review' && e.review === id)).toMatchObject({ decision: 'approved', by: 'alice', approvals: ['alice'], request: intent.request })
    expect(events.find((e) => e.type === 'outcome' && e.request === intent.request)).toMatchObject({ verdict: 'allow', status: 'DELETE 1' })
    // the order: intent, decision, outcome
    const at = (pred: (e: { type: string; [k: string]: unknown }) => boolean) => events.findIndex(pred)
    expect(at((e) => e.type === 'request' && e.review === id)).toBeLessThan(at((e) => e.type === 'review' && e.review === id))
    expect(at((e) => e.type === 'review' && e.review === id)).toBeLessThan(at((e) => e.type === 'outcome' && e.request === intent.request))
  })

  it('denied: the statement is refused with 42501 and the reason, the session goes on', async () => {
    const psql = psqlLive(gw.port, 'DELETE FROM t WHERE id = 2;\nSELECT 7;\n')
    const id = (await psql.stderrMatch(HELD))[1] as string
    const denied = await api(gw.admin, 'POST', `/reviews/${id}/deny`, tokens.bob, { reason: 'not on a Friday' })
    expect(denied).toMatchObject({ status: 200, json: { result: 'denied' } })
    const r = await psql.done
    expect(r.stderr).toMatch(/ERROR: {2}gatehouse: review denied: denied by bob: not on a Friday/)
    expect(r.stdout.trim()).toBe('7')
    expect(await cluster.psql('SELECT count(*) FROM t WHERE id = 2')).toBe('1')
    expect(gw.audit().find((e) => e.type === 'review' && e.review === id)).toMatchObject({ decision: 'denied', by: 'bob', reason: 'denied by bob: not on a Friday' })
  })

  it('nobody decides in time: the statement is refused as timed out', async () => {
    const psql = psqlLive(gw.port, 'INSERT INTO t VALUES (100, $$x$$);\nSELECT 8;\n')
    const id = (await psql.stderrMatch(HELD))[1] as string
    const r = await psql.done
    expect(r.stderr).toMatch(/review timed out/)
    expect(r.stdout.trim()).toBe('8')
    expect((await api(gw.admin, 'GET', `/reviews/${id}`, tokens.audrey)).json).toMatchObject({ status: 'expired', decidedBy: 'gatehouse' })
    expect((await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.alice)).status).toBe(409)
  })

  it('the requester cannot approve its own request; two approvals needed means two distinct people; roles are enforced', async () => {
    const psql = psqlLive(gw.port, "UPDATE t SET v = 'two' WHERE id = 3;\n")
    const id = (await psql.stderrMatch(HELD))[1] as string
    expect(await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.agentApprover)).toMatchObject({ status: 403, json: { error: 'a requester cannot decide its own request' } })
    expect(await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.audrey)).toMatchObject({ status: 403 })
    expect((await api(gw.admin, 'POST', `/reviews/${id}/approve`, 'gh_not_a_token')).status).toBe(401)
    expect((await fetch(`${gw.admin}/reviews`)).status).toBe(401)
    expect(await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.alice)).toMatchObject({ status: 200, json: { result: 'counted', review: { status: 'pending', approvals: ['alice'] } } })
    expect(await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.alice)).toMatchObject({ status: 409, json: { error: 'already-voted' } })
    expect(await cluster.psql('SELECT v FROM t WHERE id = 3')).toBe('v3')
    expect(await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.bob)).toMatchObject({ status: 200, json: { result: 'approved', review: { approvals: ['alice', 'bob'] } } })
    expect((await psql.done).stdout.trim()).toBe('UPDATE 1')
    expect(await cluster.psql('SELECT v FROM t WHERE id = 3')).toBe('two')
  })

  it('an approval releases only the request it showed: of two held DELETEs, approving one runs that one', async () => {
    const first = psqlLive(gw.port, 'DELETE FROM t WHERE id = 4;\n')
    const firstId = (await first.stderrMatch(HELD))[1] as string
    const second = psqlLive(gw.port, 'DELETE FROM t WHERE id = 5;\n')
    const secondId = (await second.stderrMatch(HELD))[1] as string
    expect(firstId).not.toBe(secondId)
    await api(gw.admin, 'POST', `/reviews/${secondId}/approve`, tokens.alice)
    await second.done
    expect(await cluster.psql('SELECT string_agg(id::text, $$,$$ ORDER BY id) FROM t WHERE id IN (4, 5)')).toBe('4')
    expect((await api(gw.admin, 'GET', `/reviews/${firstId}`, tokens.audrey)).json).toMatchObject({ status: 'pending' })
    await api(gw.admin, 'POST', `/reviews/${firstId}/deny`, tokens.alice, { reason: 'only 5' })
    expect((await first.done).stderr).toMatch(/review denied/)
    expect(await cluster.psql('SELECT count(*) FROM t WHERE id = 4')).toBe('1')
  })

  it('an approval with a grant lets the next matching statement through without a review, and only a matching one', async () => {
    const psql = psqlLive(gw.port, 'DELETE FROM t WHERE id = 6;\n')
    const id = (await psql.stderrMatch(HELD))[1] as string
    const approved = await cli(['review', 'approve', id, '--admin', gw.admin, '--grant', '5'], tokens.alice)
    expect(JSON.parse(approved.stdout)).toMatchObject({ result: 'approved', grant: { principal: 'agent-1', connection: 'orders', match: { action: ['sql.query'], 'sql.statement': ['DELETE'], 'sql.tables': ['t'], 'sql.functions': false, 'sql.sideEffects': false }, review: id } })
    await psql.done
    // the same kind of statement on the same table: runs at once, no NOTICE
    const next = psqlLive(gw.port, 'DELETE FROM t WHERE id = 7;\n')
    const r = await next.done
    expect(r.stdout.trim()).toBe('DELETE 1')
    expect(r.stderr).not.toMatch(/held for review/)
    expect(await cluster.psql('SELECT count(*) FROM t WHERE id IN (6, 7)')).toBe('0')
    const intent = gw.audit().filter((e) => e.type === 'request' && e.text === 'DELETE FROM t WHERE id = 7')
    expect(intent[0]).toMatchObject({ verdict: 'allow', rule: 'p/deletes' })
    expect(String(intent[0]?.reason)).toMatch(/let through by grant grant_/)
    // another table: held again
    const elsewhere = psqlLive(gw.port, 'DELETE FROM other;\n')
    const otherId = (await elsewhere.stderrMatch(HELD))[1] as string
    await api(gw.admin, 'POST', `/reviews/${otherId}/deny`, tokens.alice)
    expect((await elsewhere.done).stderr).toMatch(/review denied/)
    // the grant is listed, and an approver can end it: the next such DELETE is held again
    const listed = await cli(['review', 'grants', '--admin', gw.admin, '--identity', 'agent-1'], tokens.audrey)
    const grantId = (JSON.parse(listed.stdout.trim().split('\n')[0] as string) as { id: string; review: string }).id
    expect(listed.stdout).toContain(id)
    expect((await api(gw.admin, 'DELETE', `/grants/${grantId}`, tokens.audrey)).status).toBe(403)
    const revoked = await cli(['review', 'revoke-grant', grantId, '--admin', gw.admin], tokens.alice)
    expect(JSON.parse(revoked.stdout)).toMatchObject({ id: grantId, revokedBy: 'alice' })
    const again = psqlLive(gw.port, 'DELETE FROM t WHERE id = 8;\n')
    const againId = (await again.stderrMatch(HELD))[1] as string
    await api(gw.admin, 'POST', `/reviews/${againId}/deny`, tokens.alice)
    await again.done
  })

  // (table "other": the grant of the test before covers DELETEs on t)
  it('extended protocol (node-postgres with parameters): the Parse is prepared, the execution is held once, with its parameters, and a second execution is held again', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: tokens.agent, database: 'app' })
    const notices: string[] = []
    client.on('notice', (n) => notices.push(n.message ?? ''))
    await client.connect()
    try {
      const reviewsBefore = ((await api(gw.admin, 'GET', '/reviews?status=all', tokens.audrey)).json.reviews as unknown[]).length
      const waitHeld = async (n: number): Promise<string> => {
        for (let i = 0; i < 200; i++) {
          const m = notices.length >= n ? HELD.exec(notices[n - 1] as string) : null
          if (m) return m[1] as string
          await new Promise((r) => setTimeout(r, 25))
        }
        throw new Error(`no notice ${n}: ${JSON.stringify(notices)}; reviews ${JSON.stringify((await api(gw.admin, 'GET', '/reviews?status=all', tokens.audrey)).json.reviews).slice(-600)}`)
      }
      const first = client.query({ name: 'del', text: 'DELETE FROM other WHERE id = $1', values: [21] })
      const id1 = await waitHeld(1)
      expect((await api(gw.admin, 'GET', `/reviews/${id1}`, tokens.audrey)).json).toMatchObject({ text: 'DELETE FROM other WHERE id = $1', params: ['21'], attrs: { phase: 'execute' } })
      await api(gw.admin, 'POST', `/reviews/${id1}/approve`, tokens.alice)
      expect((await first).rowCount).toBe(1)
      // the prepared statement again, with another parameter: a new review
      const second = client.query({ name: 'del', text: 'DELETE FROM other WHERE id = $1', values: [22] })
      const id2 = await waitHeld(2)
      expect(id2).not.toBe(id1)
      expect((await api(gw.admin, 'GET', `/reviews/${id2}`, tokens.audrey)).json).toMatchObject({ params: ['22'] })
      await api(gw.admin, 'POST', `/reviews/${id2}/deny`, tokens.alice, { reason: 'enough' })
      await expect(second).rejects.toThrow(/review denied/)
      // one review per execution, none for the Parse
      const reviewsAfter = ((await api(gw.admin, 'GET', '/reviews?status=all', tokens.audrey)).json.reviews as unknown[]).length
      expect(reviewsAfter - reviewsBefore).toBe(2)
      expect((await client.query('SELECT count(*)::int AS n FROM other WHERE id IN (21, 22)')).rows).toEqual([{ n: 1 }])
    } finally {
      await client.end()
    }
  })

  it('one Query of several statements: when one is denied, none runs and none is held for review, wherever it stands; each is recorded', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: tokens.agent, database: 'app' })
    await client.connect()
    try {
      const reviewsBefore = ((await api(gw.admin, 'GET', '/reviews?status=all', tokens.audrey)).json.reviews as unknown[]).length
      // the DELETE (review) comes before the denied TRUNCATE, the UPDATE (review) after it
      const text = "SELECT 1; DELETE FROM other WHERE id = 1; TRUNCATE other; UPDATE other SET id = 2 WHERE id = 1"
      await expect(client.query(text)).rejects.toThrow(/denied/)
      expect((await client.query('SELECT count(*)::int AS n FROM other WHERE id = 1')).rows).toEqual([{ n: 1 }])
      const reviewsAfter = ((await api(gw.admin, 'GET', '/reviews?status=all', tokens.audrey)).json.reviews as unknown[]).length
      expect(reviewsAfter).toBe(reviewsBefore)
      const intents = gw.audit().filter((e) => e.type === 'request' && ['SELECT 1', 'DELETE FROM other WHERE id = 1', 'TRUNCATE other', 'UPDATE other SET id = 2 WHERE id = 1'].includes(e.text as string))
      expect(intents.map((e) => [e.text, e.verdict, e.rule])).toEqual([
        ['SELECT 1', 'allow', 'p/reads'],
        ['DELETE FROM other WHERE id = 1', 'deny', 'gatehouse/batch'],
        ['TRUNCATE other', 'deny', expect.not.stringMatching(/^gatehouse\/batch/)],
        ['UPDATE other SET id = 2 WHERE id = 1', 'deny', 'gatehouse/batch'],
      ])
      expect(intents[1]?.reason).toBe('not held for review: another request of the same batch was refused')
      const outcome = (req: unknown) => gw.audit().find((e) => e.type === 'outcome' && e.request === req)
      expect(outcome(intents[0]?.request)).toMatchObject({ skipped: true })
      // with nothing denied, the statements are admitted in order: the held one waits, and its denial stops the rest
      const held = client.query('SELECT 2; DELETE FROM other WHERE id = 1; SELECT 3')
      let id: string | undefined
      for (let i = 0; i < 200 && !id; i++) {
        const pending = (await api(gw.admin, 'GET', '/reviews', tokens.audrey)).json.reviews as { id: string; text: string }[]
        id = pending.find((r) => r.text === 'DELETE FROM other WHERE id = 1')?.id
        if (!id) await new Promise((r) => setTimeout(r, 25))
      }
      await api(gw.admin, 'POST', `/reviews/${id}/deny`, tokens.alice, { reason: 'no' })
      await expect(held).rejects.toThrow(/review denied/)
      // the SELECT after it was allowed, and did not run
      const later = gw.audit().filter((e) => e.type === 'request' && e.text === 'SELECT 3')
      expect(later.map((e) => [e.verdict, e.rule])).toEqual([['allow', 'p/reads']])
      expect((await client.query('SELECT count(*)::int AS n FROM other WHERE id = 1')).rows).toEqual([{ n: 1 }])
      expect(outcome(later[0]?.request)).toMatchObject({ skipped: true })
    } finally {
      await client.end()
    }
  })

  it('a cancel (psql interrupted) withdraws the held statement: it is refused and the review ends denied', async () => {
    // (table "other": DELETEs on t are granted by an earlier test)
    const psql = psqlLive(gw.port, 'DELETE FROM other WHERE id = 23;\nSELECT 9;\n')
    const id = (await psql.stderrMatch(HELD))[1] as string
    psql.interrupt()
    const r = await psql.done
    expect(r.stderr).toMatch(/review denied: .*the client cancelled the statement while it was held/)
    // (psql stops a script it was interrupted in: the SELECT after it is not sent)
    expect((await api(gw.admin, 'GET', `/reviews/${id}`, tokens.audrey)).json).toMatchObject({ status: 'denied', decidedBy: 'gatehouse' })
    expect(await cluster.psql('SELECT count(*) FROM other WHERE id = 23')).toBe('1')
  })

  it('a session waiting for its review is not idle: the idle limit does not end it', async () => {
    const own = await start(mkdtempSync(join(dir, 'gw-')), 'limits: { sessions: { idleMs: 1000 } }\n')
    try {
      const psql = psqlLive(own.port, 'DELETE FROM other WHERE id = 22;\n')
      const id = (await psql.stderrMatch(HELD))[1] as string
      await new Promise((r) => setTimeout(r, 2500))
      expect((await api(own.admin, 'POST', `/reviews/${id}/approve`, tokens.alice)).json).toMatchObject({ result: 'approved' })
      const r = await psql.done
      expect(r.stdout.trim(), r.stderr).toBe('DELETE 1')
    } finally {
      await own.gateway.shutdown(0)
    }
  })

  it('a state store that does not answer: the gateway starts, the statement sent to review is refused (fail closed), the session goes on', async () => {
    const own = await start(mkdtempSync(join(dir, 'gw-')), 'state: { store: postgres, url: "postgres://gh:secret@127.0.0.1:1/none?connect_timeout=2" }\n')
    try {
      const r = await psqlLive(own.port, 'DELETE FROM other WHERE id = 1;\nSELECT 5;\n').done
      expect(r.stderr).toMatch(/ERROR: {2}gatehouse: needs approval \(rule p\/deletes\), and the review could not be created: the state store is unavailable/)
      expect(r.stderr).not.toContain('secret')
      expect(r.stdout.trim()).toBe('5')
      expect(own.audit().find((e) => e.type === 'request' && e.text === 'DELETE FROM other WHERE id = 1')).toMatchObject({ verdict: 'deny', rule: 'p/deletes' })
    } finally {
      await own.gateway.shutdown(0)
    }
  })

  it('a grant is refused from a review that needs several approvals, and one that matches everything is refused too', async () => {
    const psql = psqlLive(gw.port, "UPDATE t SET v = 'g' WHERE id = 14;\n")
    const id = (await psql.stderrMatch(HELD))[1] as string
    expect(await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.alice, { grant: { minutes: 60 } })).toMatchObject({ status: 400, json: { error: `review ${id} needs 2 approvals: its rule takes no grants` } })
    expect(await api(gw.admin, 'POST', `/reviews/${id}/approve`, tokens.alice, { grant: { minutes: 60, match: {} } })).toMatchObject({ status: 400 })
    // neither refusal counted as a vote
    expect((await api(gw.admin, 'GET', `/reviews/${id}`, tokens.audrey)).json).toMatchObject({ status: 'pending', approvals: [] })
    await api(gw.admin, 'POST', `/reviews/${id}/deny`, tokens.alice)
    await psql.done
  })

  it('the metrics count what became of the requests sent to review', async () => {
    const text = await (await fetch(`${gw.admin}/metrics`, { headers: { authorization: `Bearer ${tokens.audrey}` } })).text()
    const n = (result: string) => Number(text.split('\n').find((l) => l.startsWith(`gatehouse_reviews_total{connection="orders",result="${result}"}`))?.split(' ').pop() ?? 0)
    // the tests above held statements and ended every one: approved, denied (incl. a cancel), one timed out, one let through by a grant
    expect(n('held')).toBeGreaterThanOrEqual(10)
    expect(n('approved')).toBeGreaterThanOrEqual(4)
    expect(n('denied')).toBeGreaterThanOrEqual(4)
    expect(n('expired')).toBe(1)
    expect(n('granted')).toBe(1)
    expect(n('held')).toBe(n('approved') + n('denied') + n('expired'))
  })

  it('a gateway that stops ends its held requests denied and audited; one that died finds its leftovers at start and ends them the same way', async () => {
    const dataDir = mkdtempSync(join(dir, 'gw-'))
    let own = await start(dataDir)
    const psql = psqlLive(own.port, 'DELETE FROM t WHERE id = 8;\n')
    const id = (await psql.stderrMatch(HELD))[1] as string
    await own.gateway.shutdown(0)
    const r = await psql.done
    expect(r.code).not.toBe(0)
    expect(own.audit().find((e) => e.type === 'review' && e.review === id)).toMatchObject({ decision: 'denied', by: 'gatehouse' })

    // a pending review of this gateway, as a crash would leave it
    const store = new SqlStateStore('embedded', () => openEmbedded(join(dataDir, 'state')))
    const gatewayId = readFileSync(join(dataDir, 'gateway-id'), 'utf8').trim()
    const now = Date.now()
    await store.createReview({ id: 'rev_left-over', connection: 'orders', protocol: 'postgres', principal: 'agent-1', session: 's-gone', request: 's-gone.1', action: 'sql.query', target: 'orders', text: 'DELETE FROM t', attrs: {}, fingerprint: 'f', rule: 'p/deletes', reason: 'r', approvalsRequired: 1, gateway: gatewayId, createdAt: now, expiresAt: now + 60_000 })
    await store.close()
    own = await start(dataDir)
    try {
      expect((await api(own.admin, 'GET', '/reviews/rev_left-over', tokens.audrey)).json).toMatchObject({ status: 'denied', decidedBy: 'gatehouse', decisionReason: 'the gateway restarted while the request was held' })
      expect(own.audit().find((e) => e.type === 'review' && e.review === 'rev_left-over')).toMatchObject({ decision: 'denied', request: 's-gone.1', session: 's-gone' })
    } finally {
      await own.gateway.shutdown(0)
    }
  })
})
