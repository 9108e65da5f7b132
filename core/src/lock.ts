/**
 * One writer per data directory and per audit file: two gateways appending to one hash chain fork
 * it, and `audit verify` then reports tampering where there was none.
 *
 * On Linux the lock is a listening socket in the abstract namespace whose name is derived from the
 * locked path: the kernel refuses a second listener on the same name, and frees the name the moment
 * the holder exits, however it exits (no stale lock after a kill -9, no lock file to clean up). The
 * holder answers a connection on it with who it is, so the refusal can name its pid.
 *
 * The name holds a random key kept beside what is locked (see `lockKey`), so a local process that
 * cannot read the gateway's files cannot take the name first.
 *
 * Limit: abstract sockets belong to a network namespace. Two containers with their own network
 * namespaces that mount the same volume do not see each other's locks (nor could they signal each
 * other's pids); give each replica its own data directory. Elsewhere than Linux, the lock is a file
 * created exclusively next to the locked path, holding the pid; a file whose pid is no longer alive
 * is taken over.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, linkSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection, createServer, type Server } from 'node:net'
import { basename, dirname, join } from 'node:path'
import { GatewayError } from './errors.js'

export interface HeldLock {
  /** The locked path, resolved. */
  readonly path: string
  release(): Promise<void>
}

interface Holder {
  readonly pid: number
  readonly since: string
}

/** The path a lock is about: real (links resolved) so two spellings of one directory are one lock. */
function canonical(path: string): string {
  if (existsSync(path)) return realpathSync(path)
  // A file not created yet: its directory exists (the caller made it).
  return join(realpathSync(dirname(path)), basename(path))
}

function refusal(what: string, path: string, holder: Holder | undefined): GatewayError {
  const who = holder ? `another gateway (pid ${holder.pid}, running since ${holder.since})` : 'another gateway'
  return new GatewayError('GH_ERR_LOCKED', `${what} ${path} is in use by ${who}; stop it, or give this gateway its own ${what}`)
}

/**
 * Takes the exclusive lock on `path` for this process, or throws GH_ERR_LOCKED naming the holder.
 * `what` names the thing in the message ("data directory", "audit file").
 */
export async function lockExclusive(path: string, what: string, keyFile: string): Promise<HeldLock> {
  const real = canonical(path)
  return process.platform === 'linux' ? socketLock(real, what, lockKey(keyFile)) : fileLock(real, what)
}

/**
 * The secret in a lock's name. Abstract socket names have no permissions: any local process can
 * listen on one first, and a name anyone can compute could be taken to keep the gateway from
 * starting. The name includes 32 random bytes kept in `keyFile` (mode 0600, beside what is locked),
 * which a process that cannot read the gateway's files cannot know. Created once, atomically
 * (written aside, then linked into place: a second gateway starting at the same moment reads the
 * winner's whole key).
 */
function lockKey(keyFile: string): Buffer {
  try {
    const key = readFileSync(keyFile)
    if (key.length === 32) return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const aside = `${keyFile}.${process.pid}.${randomBytes(4).toString('hex')}`
  writeFileSync(aside, randomBytes(32), { flag: 'wx', mode: 0o600 })
  try {
    linkSync(aside, keyFile)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    // another gateway made it first, or the file is damaged (not 32 bytes): use what is there if whole
  } finally {
    rmSync(aside, { force: true })
  }
  const key = readFileSync(keyFile)
  if (key.length !== 32) throw new GatewayError('GH_ERR_CONFIG_INVALID', `${keyFile} is not a lock key (32 bytes); remove it while no gateway runs`)
  return key
}

async function socketLock(path: string, what: string, key: Buffer): Promise<HeldLock> {
  const name = `\0gatehouse-lock:${createHash('sha256').update(key).update(`${what}\0${path}`).digest('hex')}`
  const me: Holder = { pid: process.pid, since: new Date().toISOString() }
  const server: Server = createServer((c) => {
    c.on('error', () => {})
    c.end(JSON.stringify(me))
  })
  server.unref()
  const taken = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)))
    server.listen(name, () => resolve(true))
  })
  if (!taken) throw refusal(what, path, await askHolder(name))
  return {
    path,
    release: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** What the holder of a socket lock says about itself (undefined if it does not answer within a second). */
function askHolder(name: string): Promise<Holder | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const c = createConnection(name)
    const done = (h: Holder | undefined) => {
      clearTimeout(timer)
      c.destroy()
      resolve(h)
    }
    const timer = setTimeout(() => done(undefined), 1000)
    c.on('data', (d: Buffer) => chunks.push(d))
    c.on('error', () => done(undefined))
    c.on('end', () => {
      try {
        const h = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Holder
        done(Number.isSafeInteger(h.pid) && typeof h.since === 'string' ? h : undefined)
      } catch {
        done(undefined)
      }
    })
  })
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function fileLock(path: string, what: string): Promise<HeldLock> {
  const file = `${path}.lock`
  const me: Holder = { pid: process.pid, since: new Date().toISOString() }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(me), { flag: 'wx', mode: 0o600 })
      return { path, release: async () => rmSync(file, { force: true }) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let holder: Holder | undefined
    try {
      holder = JSON.parse(readFileSync(file, 'utf8')) as Holder
    } catch {
      holder = undefined
    }
    if (holder && Number.isSafeInteger(holder.pid) && alive(holder.pid)) throw refusal(what, path, holder)
    rmSync(file, { force: true })
  }
  throw refusal(what, path, undefined)
}
