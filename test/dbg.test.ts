import { it } from 'vitest'
import { runClient } from './fixtures/clients.js'
import { pgUpstream, startGateway } from './fixtures/gateway.js'
import { startPgCluster } from './fixtures/pg-cluster.js'

it('probe', async () => {
  const pg = await startPgCluster()
  await pg.psql(`CREATE TABLE items (id int primary key, name text); INSERT INTO items VALUES (1,'a'),(2,'b'); CREATE VIEW v AS SELECT * FROM items; SELECT lo_from_bytea(1, 'hello'); GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_scram; ALTER LARGE OBJECT 1 OWNER TO app_scram`).catch(e=>console.log('setup',String(e)))
  const gw = await startGateway({ upstream: pgUpstream(pg), policies: [{ id: 'all', principals: { groups: ['agents'] }, rules: [{ id: 'all', effect: 'allow', allowOpaque: true }] }] })
  const env = { PGPASSWORD: gw.tokens['agent-1'], PGSSLMODE: 'disable' }
  const base = ['-h', '127.0.0.1', '-p', String(gw.port), '-U', 'agent-1', '-d', 'app']
  for (const args of [['pg_dump', ...base], ['pg_dump', ...base, '-Fc', '-f', '/tmp/dump.c'], ['psql', ...base, '-Atc', 'show statement_timeout; select pg_backend_pid(); select current_database()']]) {
    const r = await runClient(args[0] as string, args.slice(1), { env })
    console.log(args[0], r.code, r.stderr.slice(0, 800), r.stdout.slice(0, 300))
  }
  const r2 = await runClient('psql', [...base, '-Atc', 'show statement_timeout; show search_path'], { env: { ...env, PGOPTIONS: '-c statement_timeout=5s -c search_path=foo' } })
  console.log('PGOPTIONS', r2.code, r2.stderr, r2.stdout)
  const r3 = await runClient('pg_restore', [...base, '-d', 'app', '--list', '/tmp/dump.c'], { env })
  console.log('restore list', r3.code, r3.stderr.slice(0, 300), r3.stdout.slice(0, 300))
  await gw.stop(); await pg.stop()
}, 60000)
