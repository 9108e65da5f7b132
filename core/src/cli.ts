#!/usr/bin/env node
/** The `gatehouse` command line. */
import 'reflect-metadata'
import { Command, Option } from 'commander'
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileLines, storesHash, verifyLines, chainTextLines, type ChainLine } from './audit/chain.js'
import { loadConfigFile } from './config/load.js'
import { editorSchema } from './config/schema.js'
import { ConfigError, splitPathMessage } from './config/validate.js'
import { checkParts } from './config/partial.js'
import { isGatewayError } from './errors.js'
import { configWarnings, Gateway, type ExplainedDecision } from './gateway.js'
import { createLogger } from './logger.js'
import { generateToken, hashToken, parseDuration, type TokenHashAlgorithm } from './auth/tokens.js'
import { runDemo } from './cli/demo.js'
import { readConfigFile, readReloadStatus, runningGateway, runUntilSignal } from './cli/run.js'
import { replay } from './cli/replay.js'
import { BUILTIN_PLUGINS } from './plugin/loader.js'

const program = new Command()
program.name('gatehouse').description('Layer 7 access gateway for automation and AI-agent runtimes').version('0.1.0', '-v, --version', 'print the version').showHelpAfterError()

program
  .command('start')
  .description('start the gateway with a config file; SIGTERM/SIGINT shut it down gracefully')
  .requiredOption('-c, --config <file>', 'gatehouse.yaml')
  .action(async (opts: { config: string }) => {
    const config = loadOrExit(opts.config)
    const gateway = await Gateway.build(config).catch(exitWithError)
    await runUntilSignal(gateway, undefined, { configFile: opts.config })
  })

program
  .command('reload')
  .description('check a config file, then have the gateway running on it reload it (SIGHUP): identities, tokens, policies, limits; sessions stay up')
  .requiredOption('-c, --config <file>', 'gatehouse.yaml (the file the gateway was started with)')
  .option('--timeout <seconds>', 'how long to wait for the gateway to answer', '30')
  .action(async (opts: { config: string; timeout: string }) => {
    const notReloaded = (err: unknown): never => {
      process.stderr.write('gatehouse: not reloaded; the running gateway was not touched\n')
      return exitWithError(err)
    }
    let file: ReturnType<typeof readConfigFile>
    try {
      file = readConfigFile(opts.config)
    } catch (err) {
      return notReloaded(err)
    }
    const config = file.config
    await Gateway.build(config, { logger: createLogger('silent') }).catch(notReloaded)
    const running = runningGateway(config.dataDir)
    if ('error' in running) return exitWithError(new Error(running.error))
    const pid = running.pid
    const before = readReloadStatus(config.dataDir)
    process.kill(pid, 'SIGHUP')
    const deadline = Date.now() + Number(opts.timeout) * 1000
    for (;;) {
      const status = readReloadStatus(config.dataDir)
      if (status && status.pid === pid && (before === undefined || before.pid !== pid || status.seq > before.seq)) {
        const elsewhere = status.config !== undefined && (status.config.path !== file.path || status.config.sha256 !== file.sha256)
        if (elsewhere) {
          process.stderr.write(`gatehouse: the gateway (pid ${pid}) read ${status.config?.path} (sha256 ${status.config?.sha256.slice(0, 12)}…), not the file checked here (${file.path}, sha256 ${file.sha256.slice(0, 12)}…): it reloads the file it was started with\n`)
        }
        if (!status.ok) {
          process.stderr.write(`gatehouse: reload refused by the gateway (pid ${pid}); the configuration in force is unchanged:\n${(status.errors ?? []).map((e) => `  ${e}`).join('\n')}\n`)
          process.exit(1)
        }
        process.stdout.write(`reloaded${elsewhere ? ` ${status.config?.path}` : ''} (pid ${pid})${status.sessionsEnded ? `; ${status.sessionsEnded} session(s) ended: their credential is no longer accepted` : ''}\n`)
        if (elsewhere) process.exit(1)
        return
      }
      if (Date.now() > deadline) exitWithError(new Error(`gateway pid ${pid} did not report a reload within ${opts.timeout} s; see its log`))
      await new Promise((r) => setTimeout(r, 100))
    }
  })

program
  .command('validate')
  .description('check a config file (schema, references, plugins) without opening listeners; exit 1 with the errors')
  .requiredOption('-c, --config <file>', 'gatehouse.yaml')
  .action(async (opts: { config: string }) => {
    let config: ReturnType<typeof loadConfigFile>
    try {
      config = loadConfigFile(opts.config)
    } catch (err) {
      // A file that fails the schema: what its plugins would check too, so one run lists it all.
      if (!(err instanceof ConfigError) || err.partial === undefined) return exitWithError(err)
      const seen = new Set(err.issues.map((i) => i.path))
      const more = (await checkParts(err.partial, [process.cwd()])).filter((i) => !seen.has(i.path))
      return exitWithError(new ConfigError([...err.issues, ...more], err.code))
    }
    // One format for every error, whatever step found it: `  <path>: <message>`.
    await Gateway.build(config, { logger: createLogger('silent') }).catch((err: unknown) => exitWithError(asConfigError(err)))
    for (const w of configWarnings(config)) process.stderr.write(`gatehouse: warning: ${w.path}: ${w.message}\n`)
    process.stdout.write(`${opts.config}: ok (${config.connections.length} connection(s), ${config.identities.length} identit${config.identities.length === 1 ? 'y' : 'ies'}, ${config.policies.length} polic${config.policies.length === 1 ? 'y' : 'ies'})\n`)
  })

const token = program.command('token').description('make gateway tokens and the hashes that go in the config')
token
  .command('issue')
  .description('generate a new random token and print it with the hash to put under identities[].tokens')
  .requiredOption('-i, --identity <id>', 'identity the token belongs to (its id salts the hash)')
  .option('--connections <names>', 'comma-separated connections the token may open')
  .option('--ttl <duration>', 'expiry from now, e.g. 30m, 12h, 7d')
  .addOption(new Option('--algorithm <alg>', 'hash form').choices(['scram-sha-256', 'sha256']).default('scram-sha-256'))
  .option('--json', 'print one JSON object')
  .option('--admin <url>', "mint the token in a running gateway (its admin API, e.g. http://127.0.0.1:8080), stored there as a hash; needs --ttl and the admin token in $GATEHOUSE_ADMIN_TOKEN")
  .option('--description <text>', 'with --admin: a note stored with the token')
  .action(async (opts: { identity: string; connections?: string; ttl?: string; algorithm: TokenHashAlgorithm; json?: boolean; admin?: string; description?: string }) => {
    if (opts.admin) {
      if (!opts.ttl) return exitWithError(new Error('--admin needs --ttl: a token issued at run time always expires (e.g. --ttl 15m)'))
      const connections = opts.connections?.split(',').map((s) => s.trim()).filter(Boolean)
      const issued = (await adminCall(opts.admin, 'POST', '/tokens', { identity: opts.identity, ttl: opts.ttl, ...(connections?.length ? { connections } : {}), ...(opts.description ? { description: opts.description } : {}) })) as { token: string; id: string; expiresAt: string }
      if (opts.json) process.stdout.write(`${JSON.stringify(issued)}\n`)
      else process.stdout.write(`token (give this to the runtime; the gateway keeps only its hash):\n  ${issued.token}\n\nid ${issued.id}, identity ${opts.identity}, expires ${issued.expiresAt}\nrevoke it with: gatehouse token revoke ${issued.id} --admin ${opts.admin}\n`)
      return
    }
    const secret = generateToken()
    const entry: Record<string, unknown> = { hash: hashToken(secret, opts.identity, opts.algorithm) }
    if (opts.connections) entry.connections = opts.connections.split(',').map((s) => s.trim()).filter(Boolean)
    if (opts.ttl) {
      let ms: number
      try {
        ms = parseDuration(opts.ttl)
      } catch (err) {
        return exitWithError(err)
      }
      entry.expires = new Date(Date.now() + ms).toISOString()
    }
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ token: secret, identity: opts.identity, ...entry })}\n`)
      return
    }
    process.stdout.write(`token (give this to the runtime; it is not stored anywhere):\n  ${secret}\n\nconfig entry for identities[id=${opts.identity}].tokens:\n  - ${JSON.stringify(entry)}\n`)
  })
token
  .command('revoke')
  .description('revoke a token issued at run time; the sessions that logged in with it end at once')
  .argument('<id>', 'the token id (from token issue --admin, or token list)')
  .requiredOption('--admin <url>', "the gateway's admin API, e.g. http://127.0.0.1:8080 (admin token in $GATEHOUSE_ADMIN_TOKEN)")
  .option('--reason <text>', 'recorded with the revocation')
  .action(async (id: string, opts: { admin: string; reason?: string }) => {
    const revoked = await adminCall(opts.admin, 'DELETE', `/tokens/${encodeURIComponent(id)}${opts.reason ? `?reason=${encodeURIComponent(opts.reason)}` : ''}`)
    process.stdout.write(`${JSON.stringify(revoked)}\n`)
  })
token
  .command('list')
  .description('list the tokens a running gateway issued (never their hashes)')
  .requiredOption('--admin <url>', "the gateway's admin API (admin token in $GATEHOUSE_ADMIN_TOKEN)")
  .option('-i, --identity <id>', 'only this identity')
  .option('--all', 'also revoked and expired ones')
  .action(async (opts: { admin: string; identity?: string; all?: boolean }) => {
    const q = new URLSearchParams({ ...(opts.identity ? { identity: opts.identity } : {}), ...(opts.all ? { all: 'true' } : {}) })
    const { tokens } = (await adminCall(opts.admin, 'GET', `/tokens${q.size > 0 ? `?${q}` : ''}`)) as { tokens: unknown[] }
    for (const t of tokens) process.stdout.write(`${JSON.stringify(t)}\n`)
  })
const sessions = program.command('sessions').description("the sessions open in a running gateway, through its admin API (admin token in $GATEHOUSE_ADMIN_TOKEN)")
sessions
  .command('list')
  .description('sessions open now, one JSON object per line')
  .requiredOption('--admin <url>', "the gateway's admin API, e.g. http://127.0.0.1:8080")
  .option('--connection <name>', 'only this connection')
  .option('-i, --identity <id>', 'only sessions of this principal')
  .action(async (opts: { admin: string; connection?: string; identity?: string }) => {
    const q = new URLSearchParams({ ...(opts.connection ? { connection: opts.connection } : {}), ...(opts.identity ? { principal: opts.identity } : {}) })
    const { sessions: list } = (await adminCall(opts.admin, 'GET', `/sessions${q.size > 0 ? `?${q}` : ''}`)) as { sessions: unknown[] }
    for (const one of list) process.stdout.write(`${JSON.stringify(one)}\n`)
  })
sessions
  .command('kill')
  .description('end a session now (the client is told an operator ended it; the audit names you)')
  .argument('<id>', 'the session id (from sessions list, or the audit)')
  .requiredOption('--admin <url>', "the gateway's admin API")
  .option('--reason <text>', 'told to the client and recorded')
  .action(async (id: string, opts: { admin: string; reason?: string }) => {
    process.stdout.write(`${JSON.stringify(await adminCall(opts.admin, 'DELETE', `/sessions/${encodeURIComponent(id)}${opts.reason ? `?reason=${encodeURIComponent(opts.reason)}` : ''}`))}\n`)
  })

const review = program.command('review').description("list and decide held requests through a running gateway's admin API (admin token in $GATEHOUSE_ADMIN_TOKEN)")
review
  .command('list')
  .description('reviews, pending ones by default, one JSON object per line')
  .requiredOption('--admin <url>', "the gateway's admin API, e.g. http://127.0.0.1:8080")
  .option('--status <status>', 'pending, approved, denied, expired or all', 'pending')
  .option('--connection <name>', 'only this connection')
  .action(async (opts: { admin: string; status: string; connection?: string }) => {
    const q = new URLSearchParams({ status: opts.status, ...(opts.connection ? { connection: opts.connection } : {}) })
    const { reviews } = (await adminCall(opts.admin, 'GET', `/reviews?${q}`)) as { reviews: unknown[] }
    for (const r of reviews) process.stdout.write(`${JSON.stringify(r)}\n`)
  })
review
  .command('show')
  .description('one review: the request as the approver sees it (text, parameters, attributes)')
  .argument('<id>', 'the review id (rev_…)')
  .requiredOption('--admin <url>', "the gateway's admin API")
  .action(async (id: string, opts: { admin: string }) => {
    process.stdout.write(`${JSON.stringify(await adminCall(opts.admin, 'GET', `/reviews/${encodeURIComponent(id)}`), null, 2)}\n`)
  })
review
  .command('grants')
  .description('grants in force (given with approvals), one JSON object per line')
  .requiredOption('--admin <url>', "the gateway's admin API")
  .option('-i, --identity <id>', 'only grants of this principal')
  .action(async (opts: { admin: string; identity?: string }) => {
    const { grants } = (await adminCall(opts.admin, 'GET', `/grants${opts.identity ? `?principal=${encodeURIComponent(opts.identity)}` : ''}`)) as { grants: unknown[] }
    for (const g of grants) process.stdout.write(`${JSON.stringify(g)}\n`)
  })
review
  .command('revoke-grant')
  .description('end a grant now: what it covered is held for review again')
  .argument('<id>', 'the grant id (grant_…)')
  .requiredOption('--admin <url>', "the gateway's admin API")
  .action(async (id: string, opts: { admin: string }) => {
    process.stdout.write(`${JSON.stringify(await adminCall(opts.admin, 'DELETE', `/grants/${encodeURIComponent(id)}`))}\n`)
  })
for (const approve of [true, false]) {
  const decide = review
    .command(approve ? 'approve' : 'deny')
    .description(approve ? 'approve a held request (it runs once the approvals it needs are in)' : 'deny a held request (it is refused at once)')
    .argument('<id>', 'the review id (rev_…)')
    .requiredOption('--admin <url>', "the gateway's admin API")
    .option('--reason <text>', 'recorded with the decision; the requester sees it on a denial')
  if (approve) decide.option('--grant <minutes>', 'also let this principal run matching requests (same action, statement kind and tables) on this connection for this many minutes without review')
  decide.action(async (id: string, opts: { admin: string; reason?: string; grant?: string | boolean }) => {
      const minutes = typeof opts.grant === 'string' ? Number(opts.grant) : undefined
      if (minutes !== undefined && (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440)) return exitWithError(new Error('--grant takes whole minutes, 1 to 1440'))
      const r = await adminCall(opts.admin, 'POST', `/reviews/${encodeURIComponent(id)}/${approve ? 'approve' : 'deny'}`, { ...(opts.reason ? { reason: opts.reason } : {}), ...(minutes ? { grant: { minutes } } : {}) })
      process.stdout.write(`${JSON.stringify(r)}\n`)
    })
}

token
  .command('hash')
  .description('hash an existing token (read from stdin, or --token) for the config')
  .requiredOption('-i, --identity <id>', 'identity the token belongs to')
  .option('--token <token>', 'the token (prefer stdin, so it stays out of shell history)')
  .addOption(new Option('--algorithm <alg>', 'hash form').choices(['scram-sha-256', 'sha256']).default('scram-sha-256'))
  .action(async (opts: { identity: string; token?: string; algorithm: TokenHashAlgorithm }) => {
    let secret = opts.token
    if (secret === undefined) {
      const chunks: Buffer[] = []
      for await (const c of process.stdin) chunks.push(c as Buffer)
      secret = Buffer.concat(chunks).toString('utf8').trim()
    }
    if (!secret) exitWithError(new Error('no token given (pipe it on stdin or use --token)'))
    process.stdout.write(`${hashToken(secret, opts.identity, opts.algorithm)}\n`)
  })

program
  .command('schema')
  .description('print the JSON Schema of gatehouse.yaml (for editor completion)')
  .option('-o, --output <file>', 'write to a file instead of stdout')
  .action((opts: { output?: string }) => {
    const text = `${JSON.stringify(editorSchema(), null, 2)}\n`
    if (opts.output) writeFileSync(opts.output, text)
    else process.stdout.write(text)
  })

const policy = program.command('policy').description('inspect what policies decide')
policy
  .command('explain')
  .description('print what the gateway would decide for a request, with the rule, the reason and the analysed attributes; sends nothing to any upstream')
  .requiredOption('-c, --config <file>', 'gatehouse.yaml')
  .option('-i, --identity <id>', 'identity id from the config (as token issue names it)')
  // The option's earlier name, still accepted; not shown.
  .addOption(new Option('-p, --principal <id>').hideHelp())
  .requiredOption('--connection <name>', 'connection name from the config')
  .option('--sql <text>', 'a SQL query string (postgres connections); several statements are judged one by one')
  .option('--command <text>', 'a command line run with ssh exec (ssh connections), or a command in extended JSON (mongodb connections)')
  .option('--k8s <request>', 'a Kubernetes API request as "METHOD PATH", e.g. "DELETE /api/v1/namespaces/prod/pods/web-1" (kubernetes connections)')
  .option('--claim <name=value...>', 'extra principal claims, as a JWT would carry them')
  .option('--json', 'print one JSON object {verdict, rule, reason, attrs}')
  .action(async (opts: { config: string; identity?: string; principal?: string; connection: string; sql?: string; command?: string; k8s?: string; claim?: string[]; json?: boolean }) => {
    const identity = opts.identity ?? opts.principal
    if (identity === undefined) exitWithError(new Error("required option '-i, --identity <id>' not specified"))
    // Explaining never connects anywhere, so it does not need the upstream secrets.
    const config = loadOrExit(opts.config, { unresolved: 'placeholder' })
    const claims: Record<string, string> = {}
    for (const c of opts.claim ?? []) {
      const eq = c.indexOf('=')
      if (eq <= 0) exitWithError(new Error(`--claim ${c}: expected name=value`))
      claims[c.slice(0, eq)] = c.slice(eq + 1)
    }
    if (opts.sql === undefined && opts.command === undefined && opts.k8s === undefined) exitWithError(new Error('say what to explain: --sql TEXT, --command TEXT or --k8s "METHOD PATH"'))
    const gateway = await Gateway.build(config, { logger: createLogger('silent') }).catch(exitWithError)
    const input = { ...(opts.sql !== undefined ? { sql: opts.sql } : {}), ...(opts.command !== undefined ? { command: opts.command } : {}), ...(opts.k8s !== undefined ? { k8s: opts.k8s } : {}) }
    const decisions = await gateway.explain(opts.connection, identity as string, input, claims).catch(exitWithError)
    process.stdout.write(formatExplanation(decisions, opts.json === true))
  })

const audit = program.command('audit').description('work with audit logs')
audit
  .command('verify')
  .description('check the hash chain of JSONL audit files (rotated files oldest first); report the first edited, removed or reordered event; exit 1 if there is one')
  .argument('[files...]', 'audit.jsonl files, in order')
  .option('--postgres <url>', 'verify the audit-postgres table at this database instead')
  .option('--table <name>', 'audit-postgres table', 'gatehouse_audit')
  .option('--chain <name>', 'audit-postgres chain (one per gateway instance)', 'default')
  .option('--continues-from <hash>', 'the hash the first file continues from (a checkpoint kept elsewhere)')
  .option('--public-key <file>', 'Ed25519 public key (PEM) to check the signed checkpoints with')
  .option('--expect <hash>', 'a hash printed by an earlier verify (kept elsewhere): it must still be in the chain, or events were cut from the end')
  .option('--json', 'print one JSON object')
  .action(async (files: string[], opts: { continuesFrom?: string; publicKey?: string; expect?: string; json?: boolean; postgres?: string; table: string; chain: string }) => {
    let source: () => Iterable<ChainLine>
    let names: string[]
    if (opts.postgres) {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(opts.table)) return exitWithError(new Error(`--table ${opts.table}: not a plain table name`))
      const { readChain } = (await import(BUILTIN_PLUGINS['audit-postgres'] as string)) as { readChain: (url: string, table: string, chain: string) => Promise<string> }
      const text = await readChain(opts.postgres, opts.table, opts.chain).catch((err: Error) => exitWithError(new Error(`cannot read the audit table: ${err.message}`)))
      // Rows are numbered in the report as if they were lines of a file named after the table.
      const name = `${opts.table}[chain=${opts.chain}]`
      names = [name]
      source = () => chainTextLines([{ name, text }])
    } else {
      if (files.length === 0) return exitWithError(new Error('give audit files, or --postgres URL'))
      for (const f of files) {
        try {
          accessSync(f, constants.R_OK)
        } catch (err) {
          return exitWithError(new Error(`cannot read ${f}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`))
        }
      }
      names = files
      // Read a chunk at a time: a log of any size, in constant memory; progress on a terminal.
      const size = files.reduce((n, f) => n + statSync(f).size, 0)
      let shown = 0
      const progress = process.stderr.isTTY && !opts.json && size > 64 * 1024 * 1024
        ? (bytes: number) => {
            const now = Date.now()
            if (now - shown < 500) return
            shown = now
            process.stderr.write(`\rverifying: ${Math.floor((100 * bytes) / size)}% of ${(size / 1024 / 1024).toFixed(0)} MiB`)
          }
        : undefined
      source = fileLines(files, progress)
    }
    let publicKey: KeyObject | undefined
    if (opts.publicKey) {
      try {
        publicKey = createPublicKey(readFileSync(opts.publicKey, 'utf8'))
      } catch (err) {
        return exitWithError(new Error(`--public-key ${opts.publicKey}: ${(err as NodeJS.ErrnoException).code ?? 'not a PEM public key'}`))
      }
    }
    const checked = verifyLines(source, { ...(opts.continuesFrom ? { continuesFrom: opts.continuesFrom } : {}), ...(publicKey ? { publicKey } : {}) })
    if (process.stderr.isTTY && !opts.json) process.stderr.write('\r\x1b[K')
    // With a key, a log without a single valid checkpoint is not vouched for: not ok, in every output form.
    const unsigned = checked.ok && publicKey !== undefined && checked.checkpoints === 0
    // An earlier head that is no longer in the chain: the end of the log was cut (and maybe regrown).
    const cut = checked.ok && opts.expect !== undefined && !storesHash(source, opts.expect)
    const report = unsigned
      ? { ...checked, ok: false, first: { problem: 'no-checkpoint', line: 0, file: names[0] ?? '', detail: 'no signed checkpoint: nothing here is vouched for by the key' } }
      : cut
        ? { ...checked, ok: false, first: { problem: 'truncated-tail', line: 0, file: names[names.length - 1] ?? '', detail: `the expected hash ${opts.expect?.slice(0, 12)}… is not in the chain: events were cut from the end` } }
        : checked
    if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`)
    else if (cut) process.stdout.write(`${report.first?.file}: truncated-tail: ${report.first?.detail}\n`)
    else if (unsigned) {
      // A log re-sealed by someone without the key has no valid checkpoint left.
      process.stdout.write(`no signed checkpoint in ${report.events} events: nothing here is vouched for by the key\n`)
      process.exitCode = 1
    } else if (report.ok) {
      const signed = publicKey ? `; ${report.checkpoints} signed checkpoints verified, ${report.unsignedTail} events after the last one` : ''
      process.stdout.write(`ok: ${report.events} events, chain intact${signed}; last hash ${report.last}\n`)
    }
    else {
      const f = report.first as NonNullable<typeof report.first>
      process.stdout.write(`${f.file}:${f.line}: ${f.problem}: ${f.detail}\n${report.events} events verified before it\n`)
    }
    if (!report.ok) process.exitCode = 1
  })
audit
  .command('keygen')
  .description('generate an Ed25519 key pair for signed audit checkpoints (audit-jsonl checkpoint.key)')
  .requiredOption('-o, --output <file>', 'private key (PEM, mode 0600); the public key goes to <file>.pub')
  .action((opts: { output: string }) => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    try {
      writeFileSync(opts.output, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' })
      writeFileSync(`${opts.output}.pub`, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx' })
    } catch (err) {
      return exitWithError(new Error(`cannot write ${opts.output}: ${(err as NodeJS.ErrnoException).code ?? String(err)} (an existing key is never overwritten)`))
    }
    process.stdout.write(`${opts.output}: new signing key; verify with --public-key ${opts.output}.pub\n`)
  })

program
  .command('replay')
  .description("play a session's terminal recordings here at recorded speed")
  .argument('<session>', 'session id (from the audit log)')
  .option('-c, --config <file>', 'gatehouse.yaml, for its dataDir')
  .option('--data-dir <dir>', 'the data directory (instead of --config)')
  .option('--request <id>', "only this request's recording")
  .option('--speed <factor>', 'play faster (2) or slower (0.5)', '1')
  .option('--idle-limit <seconds>', 'cap pauses at this many seconds', '2')
  .action(async (session: string, opts: { config?: string; dataDir?: string; request?: string; speed: string; idleLimit: string }) => {
    const dataDir = opts.dataDir ?? (opts.config ? loadOrExit(opts.config, { unresolved: 'placeholder' }).dataDir : './.gatehouse')
    const speed = Number(opts.speed)
    const idle = Number(opts.idleLimit)
    if (!(speed > 0) || !(idle > 0)) return exitWithError(new Error('--speed and --idle-limit must be positive numbers'))
    await replay({ dataDir, session, ...(opts.request ? { request: opts.request } : {}), speed, idleLimitSeconds: idle, write: (t) => process.stdout.write(t) }).catch(exitWithError)
  })

const ssh = program.command('ssh').description('SSH connections')
ssh
  .command('keygen')
  .description('generate an Ed25519 host key for an ssh connection (options.hostKeys); prints the public key and its fingerprint')
  .requiredOption('-o, --output <file>', 'where to write the private key (mode 0600); the public key goes to <file>.pub')
  .option('--comment <text>', 'key comment', 'gatehouse')
  .action(async (opts: { output: string; comment: string }) => {
    // The SSH adapter owns key formats; it is a built-in plugin, loaded here by its package name.
    const { generateHostKey, fingerprint } = (await import(BUILTIN_PLUGINS.ssh as string)) as {
      generateHostKey: (comment: string) => { privateKey: string; publicKey: string }
      fingerprint: (blob: Buffer) => string
    }
    const key = generateHostKey(opts.comment)
    try {
      writeFileSync(opts.output, key.privateKey, { mode: 0o600, flag: 'wx' })
      writeFileSync(`${opts.output}.pub`, `${key.publicKey.trim()}\n`, { flag: 'wx' })
    } catch (err) {
      return exitWithError(new Error(`cannot write ${opts.output}: ${(err as NodeJS.ErrnoException).code ?? String(err)} (an existing key is never overwritten)`))
    }
    const blob = Buffer.from(key.publicKey.trim().split(/\s+/)[1] ?? '', 'base64')
    process.stdout.write(`${opts.output}: new host key\n${key.publicKey.trim()}\n${fingerprint(blob)}\n`)
  })

const k8s = program.command('k8s').description('kubernetes connections')
k8s
  .command('cert')
  .description("make a CA and a serving certificate for a kubernetes connection's listener (tls.cert, tls.key); kubeconfigs carry the CA")
  .requiredOption('-o, --out <dir>', 'directory for ca.crt, ca.key, tls.crt and tls.key (keys mode 0600; existing files are never overwritten)')
  .option('--host <name>', 'a name or IP address callers reach the gateway at (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('--days <n>', 'validity of the serving certificate', '365')
  .action(async (opts: { out: string; host: string[]; days: string }) => {
    const { generateCertificates } = (await import(BUILTIN_PLUGINS.kubernetes as string)) as { generateCertificates: (hosts: readonly string[], days: number) => Promise<{ caCert: string; caKey: string; cert: string; key: string }> }
    const hosts = opts.host.length > 0 ? opts.host : ['127.0.0.1', 'localhost']
    const days = Number(opts.days)
    if (!(days > 0)) return exitWithError(new Error('--days must be a positive number'))
    const certs = await generateCertificates(hosts, days).catch(exitWithError)
    mkdirSync(opts.out, { recursive: true })
    const files: [string, string, number][] = [['ca.crt', certs.caCert, 0o644], ['ca.key', certs.caKey, 0o600], ['tls.crt', certs.cert, 0o644], ['tls.key', certs.key, 0o600]]
    // all four or none: a CA that does not match its certificate would be worse than no files
    const present = files.map(([name]) => name).filter((name) => existsSync(join(opts.out, name)))
    if (present.length > 0) return exitWithError(new Error(`cannot write into ${opts.out}: ${present.join(', ')} already there (existing files are never overwritten)`))
    try {
      for (const [name, text, mode] of files) writeFileSync(join(opts.out, name), text, { mode, flag: 'wx' })
    } catch (err) {
      return exitWithError(new Error(`cannot write into ${opts.out}: ${(err as NodeJS.ErrnoException).code ?? String(err)} (existing files are never overwritten)`))
    }
    process.stdout.write(`${opts.out}: ca.crt, ca.key, tls.crt, tls.key for ${hosts.join(', ')}\nin the connection: tls: { cert: "\${file:${join(opts.out, 'tls.crt')}}", key: "\${file:${join(opts.out, 'tls.key')}}" }\n`)
  })
k8s
  .command('kubeconfig')
  .description('print a kubeconfig for one caller of a kubernetes connection (the token is read from $GATEHOUSE_TOKEN, never from the command line)')
  .requiredOption('--server <url>', 'the gateway listener, e.g. https://127.0.0.1:6443')
  .requiredOption('--ca <file>', 'the CA certificate (ca.crt of `gatehouse k8s cert`)')
  .option('--identity <id>', 'the identity of a gateway token (omit for a JWT)')
  .option('--namespace <ns>', 'default namespace of the context')
  .option('--name <name>', 'cluster, user and context name', 'gatehouse')
  .action(async (opts: { server: string; ca: string; identity?: string; namespace?: string; name: string }) => {
    const token = process.env.GATEHOUSE_TOKEN
    if (!token) return exitWithError(new Error('set GATEHOUSE_TOKEN to the caller\'s gateway token or JWT'))
    const { kubeconfigFor } = (await import(BUILTIN_PLUGINS.kubernetes as string)) as { kubeconfigFor: (o: { server: string; ca: string; credential: string; name?: string; namespace?: string }) => string }
    let ca: string
    try {
      ca = readFileSync(opts.ca, 'utf8')
    } catch (err) {
      return exitWithError(new Error(`cannot read ${opts.ca}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`))
    }
    const credential = opts.identity === undefined ? token : `${opts.identity}:${token}`
    process.stdout.write(kubeconfigFor({ server: opts.server, ca, credential, name: opts.name, ...(opts.namespace ? { namespace: opts.namespace } : {}) }))
  })

program
  .command('demo')
  .description('start a gateway in front of an embedded PostgreSQL (PGlite) with a fresh token, and print how to connect')
  .option('--port <port>', 'gateway port', '15432')
  .option('--data-dir <dir>', 'where the demo keeps its audit log', './.gatehouse')
  .action(async (opts: { port: string; dataDir: string }) => {
    await runDemo({ port: Number(opts.port), dataDir: opts.dataDir }).catch(exitWithError)
  })

/** One decision for the whole input: the first statement that is not allowed decides (one refusal stops a query string). */
function formatExplanation(decisions: readonly ExplainedDecision[], json: boolean): string {
  const deciding = decisions.find((d) => d.decision.verdict !== 'allow') ?? decisions[0]
  const top = deciding
    ? { verdict: deciding.decision.verdict, rule: deciding.decision.rule ?? null, reason: deciding.decision.reason ?? null, attrs: deciding.attrs }
    : { verdict: 'allow', rule: null, reason: 'the text holds no statement', attrs: {} }
  const statements = decisions.map((d) => ({ text: d.text, action: d.action, verdict: d.decision.verdict, rule: d.decision.rule ?? null, reason: d.decision.reason ?? null, attrs: d.attrs }))
  if (json) return `${JSON.stringify(decisions.length > 1 ? { ...top, statements } : top)}\n`
  const lines = [`verdict: ${top.verdict}`, `rule:    ${top.rule ?? '-'}`, `reason:  ${top.reason ?? '-'}`]
  for (const [i, st] of statements.entries()) {
    lines.push('', `statement ${i + 1}/${statements.length}: ${st.text}`, `  ${st.verdict} by ${st.rule ?? '-'}: ${st.reason ?? '-'}`)
    for (const line of flatten(st.attrs)) lines.push(`  ${line}`)
  }
  return `${lines.join('\n')}\n`
}

/** `{sql: {statement: 'SELECT'}}` → `sql.statement: SELECT`, skipping empty lists and false flags. */
function flatten(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    if (value === false || (Array.isArray(value) && value.length === 0)) return []
    return [`${prefix}: ${Array.isArray(value) ? value.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))).join(', ') : String(value)}`]
  }
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k))
}

function loadOrExit(file: string, opts: Parameters<typeof loadConfigFile>[1] = {}) {
  try {
    return loadConfigFile(file, opts)
  } catch (err) {
    return exitWithError(err)
  }
}

/** A build error whose message starts with a config path, as a ConfigError of one issue. */
function asConfigError(err: unknown): unknown {
  if (err instanceof ConfigError || !isGatewayError(err)) return err
  const at = splitPathMessage(err.message)
  return at ? new ConfigError([at], err.code) : err
}

function exitWithError(err: unknown): never {
  if (err instanceof ConfigError) {
    const codes = new Set(err.issues.map((i) => i.code ?? err.code))
    const code = codes.size === 1 ? [...codes][0] : err.code
    const line = (i: (typeof err.issues)[number]) => `  ${i.path}: ${i.message}${(i.code ?? err.code) === code ? '' : ` (${i.code})`}`
    process.stderr.write(`gatehouse: invalid configuration (${code}${err.issues.length > 1 ? `, ${err.issues.length} errors` : ''}):\n${err.issues.map(line).join('\n')}\n`)
  } else if (isGatewayError(err)) {
    process.stderr.write(`gatehouse: ${err.code}: ${err.message}\n`)
  } else {
    process.stderr.write(`gatehouse: ${err instanceof Error ? err.message : String(err)}\n`)
  }
  process.exit(1)
}

// `gatehouse help token issue` shows the help of `token issue` (commander's own help command stops at one level).
program.helpCommand(false)
program
  .command('help')
  .description('show the help of a command, e.g. gatehouse help token issue')
  .argument('[command...]', 'the command and its subcommands')
  .action((names: string[]) => {
    let cmd: Command = program
    for (const name of names) {
      const sub = cmd.commands.find((c) => c.name() === name || c.aliases().includes(name))
      if (!sub) exitWithError(new Error(`no command "${[...names.slice(0, names.indexOf(name)), name].join(' ')}"; see gatehouse --help`))
      cmd = sub
    }
    cmd.outputHelp()
  })

await program.parseAsync(process.argv)

/**
 * One call to a running gateway's admin API, with the admin token from $GATEHOUSE_ADMIN_TOKEN
 * (never an argument: it would be in the shell history and the process list). Exits with the
 * API's error on a refusal.
 */
async function adminCall(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const secret = process.env.GATEHOUSE_ADMIN_TOKEN
  if (!secret) return exitWithError(new Error('set GATEHOUSE_ADMIN_TOKEN to an admin token of the gateway (admin.tokens in its config)'))
  let res: Response
  try {
    res = await fetch(new URL(path, base), { method, headers: { authorization: `Bearer ${secret}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  } catch (err) {
    return exitWithError(new Error(`could not reach the admin API at ${base}: ${(err as Error).message}`))
  }
  const text = await res.text()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = { error: text }
  }
  if (!res.ok) return exitWithError(new Error(`admin API: ${res.status} ${(parsed as { error?: string }).error ?? res.statusText}`))
  return parsed
}
