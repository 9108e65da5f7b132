#!/usr/bin/env node
/** The `gatehouse` command line. */
import 'reflect-metadata'
import { Command, Option } from 'commander'
import { writeFileSync } from 'node:fs'
import { loadConfigFile } from './config/load.js'
import { GatewayConfig } from './config/schema.js'
import { ConfigError } from './config/validate.js'
import { isGatewayError } from './errors.js'
import { Gateway } from './gateway.js'
import { createLogger } from './logger.js'
import { generateToken, hashToken, parseDuration, type TokenHashAlgorithm } from './auth/tokens.js'
import { runDemo } from './cli/demo.js'
import { runUntilSignal } from './cli/run.js'

const program = new Command()
program.name('gatehouse').description('Layer 7 access gateway for automation and AI-agent runtimes').version('0.1.0').showHelpAfterError()

program
  .command('start')
  .description('start the gateway with a config file; SIGTERM/SIGINT shut it down gracefully')
  .requiredOption('-c, --config <file>', 'gatehouse.yaml')
  .action(async (opts: { config: string }) => {
    const config = loadOrExit(opts.config)
    const gateway = await Gateway.build(config).catch(exitWithError)
    await runUntilSignal(gateway)
  })

program
  .command('validate')
  .description('check a config file (schema, references, plugins) without opening listeners; exit 1 with the errors')
  .requiredOption('-c, --config <file>', 'gatehouse.yaml')
  .action(async (opts: { config: string }) => {
    const config = loadOrExit(opts.config)
    await Gateway.build(config, { logger: createLogger('silent') }).catch(exitWithError)
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
  .action((opts: { identity: string; connections?: string; ttl?: string; algorithm: TokenHashAlgorithm; json?: boolean }) => {
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
    const text = `${JSON.stringify(GatewayConfig, null, 2)}\n`
    if (opts.output) writeFileSync(opts.output, text)
    else process.stdout.write(text)
  })

program
  .command('demo')
  .description('start a gateway in front of an embedded PostgreSQL (PGlite) with a fresh token, and print how to connect')
  .option('--port <port>', 'gateway port', '15432')
  .option('--data-dir <dir>', 'where the demo keeps its audit log', './.gatehouse')
  .action(async (opts: { port: string; dataDir: string }) => {
    await runDemo({ port: Number(opts.port), dataDir: opts.dataDir }).catch(exitWithError)
  })

function loadOrExit(file: string) {
  try {
    return loadConfigFile(file)
  } catch (err) {
    return exitWithError(err)
  }
}

function exitWithError(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`gatehouse: invalid configuration (${err.code}):\n${err.issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}\n`)
  } else if (isGatewayError(err)) {
    process.stderr.write(`gatehouse: ${err.code}: ${err.message}\n`)
  } else {
    process.stderr.write(`gatehouse: ${err instanceof Error ? err.message : String(err)}\n`)
  }
  process.exit(1)
}

await program.parseAsync(process.argv)
