/**
 * Large statements are parsed on a worker thread with a time budget (sql/background.ts), so the
 * event loop every session shares is not held for them; the verdicts are the same as inline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { BackgroundPool } from '@gatehouse/core'
import { BackgroundParser, loadSqlParser, MAX_INLINE_TEXT, SqlAnalyzer } from '@gatehouse/adapter-postgres'
import { startPgCluster, type PgCluster } from '../../fixtures/pg-cluster.js'
import { pgUpstream, startGateway, type TestGateway } from '../../fixtures/gateway.js'

const bigInList = (n: number) => `SELECT count(*) FROM items WHERE id IN (${Array.from({ length: n }, (_, i) => i).join(',')})`

describe('the background parser', () => {
  beforeAll(() => loadSqlParser())

  it('gives the same analysis as parsing inline', async () => {
    const background = new BackgroundParser()
    try {
      const text = `${bigInList(5000)}; WITH d AS (DELETE FROM items RETURNING *) SELECT pg_read_file('/x') FROM d`
      expect(text.length).toBeGreaterThan(MAX_INLINE_TEXT)
      const deferred = await new SqlAnalyzer(16, background).analyzeOrDefer(text)
      const inline = new SqlAnalyzer(16).analyze(text)
      expect(JSON.stringify(deferred)).toBe(JSON.stringify(inline))
      expect(deferred.ok && deferred.statements[1]?.facts).toMatchObject({ writes: ['items'], functionNames: ['pg_read_file'] })
    } finally {
      await background.close()
    }
  })

  it('gives another owner a worker at once while one owner\'s costly texts take theirs', async () => {
    const background = new BackgroundParser(2000, 2)
    try {
      const order: string[] = []
      const run = (owner: string, label: string, text: string) => background.parse(text, owner).then(() => order.push(label))
      const slow = bigInList(30_000)
      await Promise.all([run('a', 'a1', slow), run('a', 'a2', slow), run('a', 'a3', slow), run('b', 'b1', 'SELECT 1'), run('c', 'c1', 'SELECT 2')])
      // one owner holds one worker at a time: b and c never wait behind a's texts
      expect(order.slice(0, 2).sort()).toEqual(['b1', 'c1'])
      expect(order.slice(2)).toEqual(['a1', 'a2', 'a3'])
    } finally {
      await background.close()
    }
  })

  it('takes texts in rotation by owner, so one owner with many texts does not starve another', async () => {
    const background = new BackgroundParser(2000, 1)
    try {
      const order: string[] = []
      const run = (owner: string, label: string, text: string) => background.parse(text, owner).then(() => order.push(label))
      const slow = bigInList(30_000)
      await Promise.all([run('a', 'a1', slow), run('a', 'a2', slow), run('a', 'a3', slow), run('b', 'b1', 'SELECT 1')])
      expect(order).toEqual(['a1', 'a2', 'b1', 'a3'])
    } finally {
      await background.close()
    }
  })

  it('counts a budget from when the worker is ready: a slow start does not refuse the first jobs; a worker that never gets ready is', async () => {
    // A worker that takes 3 s to get ready, then answers at once, under a 1 s budget per job.
    const script = new URL('../../fixtures/workers/slow-start.mjs', import.meta.url)
    const failed = (kind: string, detail: string) => `${kind}: ${detail}`
    process.env.GH_TEST_WORKER_LOAD_MS = '3000'
    const slow = new BackgroundPool<string, string>(script, { budgetMs: 1000, size: 2, failed })
    try {
      const started = performance.now()
      expect(await Promise.all(['a', 'b', 'c'].map((t, i) => slow.run(t, `owner-${i}`)))).toEqual(['A', 'B', 'C'])
      expect(performance.now() - started).toBeGreaterThan(2900)
    } finally {
      await slow.close()
    }
    process.env.GH_TEST_WORKER_LOAD_MS = '-1'
    const stuck = new BackgroundPool<string, string>(script, { budgetMs: 1000, loadBudgetMs: 1500, size: 2, failed })
    try {
      expect(await stuck.run('a')).toBe('crashed: did not load in 1500 ms')
    } finally {
      await stuck.close()
      delete process.env.GH_TEST_WORKER_LOAD_MS
    }
  })

  it('refuses a text that runs past its time budget, and the next text is parsed by a fresh worker', async () => {
    const background = new BackgroundParser(1)
    try {
      const slow = await background.parse(bigInList(150_000))
      expect(slow).toEqual({ error: 'the statement took longer than 1 ms to analyse' })
    } finally {
      await background.close()
    }
    const patient = new BackgroundParser(10_000)
    try {
      const ok = await patient.parse('SELECT 1')
      expect('error' in ok).toBe(false)
    } finally {
      await patient.close()
    }
  })
})

describe('large statements through a real gateway', () => {
  let cluster: PgCluster
  let gw: TestGateway
  beforeAll(async () => {
    cluster = await startPgCluster()
    await cluster.psql('CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100);', 'app_scram')
    gw = await startGateway({ upstream: pgUpstream(cluster) })
  })
  afterAll(async () => {
    await gw?.stop()
    await cluster?.stop()
  })

  it('runs a large allowed statement in both protocols and refuses a large one with a denial hidden at its end', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'agent-1', password: gw.tokens['agent-1'], database: 'app' })
    await c.connect()
    try {
      const text = bigInList(40_000)
      expect((await c.query(text)).rows[0].count).toBe('100')
      expect((await c.query({ text, name: 'big' })).rows[0].count).toBe('100')
      await expect(c.query(`${text}; DROP TABLE items`)).rejects.toMatchObject({ code: '42501' })
      expect((await c.query('SELECT count(*) FROM items')).rows[0].count).toBe('100')
    } finally {
      await c.end()
    }
  })
})
