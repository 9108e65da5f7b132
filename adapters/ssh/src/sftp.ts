/**
 * SFTP, operation by operation: the gateway speaks SFTP to the client (ssh2's server mode) and
 * to the target (ssh2's client), so every operation that names a path is a request that policy
 * judges and the audit records, with the path and the mode.
 *
 * Why it is shaped this way:
 * - Judged on the path the target would open, not as the client spelled it. The client's path
 *   is first canonicalised on the target with SFTP `REALPATH` (which resolves `.`, `..`, `//`
 *   and every symlink, the last one too), and the canonical path is what policy sees
 *   (`ssh.path`; the client's spelling is `ssh.requestedPath`) and what is sent to the target.
 *   Operations that act on a name itself rather than on what it points to (`lstat`,
 *   `readlink`, `remove`, `rmdir`, `mkdir`, `rename`, `symlink`) canonicalise the directory
 *   and keep the last name, so a symlink is judged where it is, and `mkdir` through a dangling
 *   link is judged where it would create. A path the target cannot canonicalise goes nowhere:
 *   it is judged as written, made absolute and normalised lexically (`resolved: false`), and
 *   answered with the target's error only if policy admits it, so existence is revealed only
 *   where policy lets the caller look. Every operation also carries `paths`, all the canonical
 *   paths it touches (both ends of a rename), for rules that must hold for each.
 * - What stays open: the target resolves the path again when it runs the operation. A symlink
 *   swapped in between (by another process on the target, or by this caller over another
 *   channel) is not seen. `ChrootDirectory` on the target (with `ForceCommand internal-sftp`
 *   for the gateway's account) closes it: no path outside the chroot exists to point to.
 * - Judged: `open` (with read/write/append/create/truncate/exclusive), `opendir`, `remove`,
 *   `rename`, `mkdir`, `rmdir`, `setstat` and `fsetstat` (chmod, chown, utimes, truncate; op
 *   `setstat`, on the handle's path for `fsetstat`), `symlink`, and the metadata reads `stat`,
 *   `lstat`, `readlink` and `realpath`. A refused one answers SSH_FX_PERMISSION_DENIED with
 *   `gatehouse: denied by <rule>: <reason>`; the session goes on.
 * - Not judged, but only ever on what was admitted: `read`, `write`, `fstat`, `readdir` and
 *   `close` act on a handle, and the gateway answers them only for handles it handed out for an
 *   admitted `open`/`opendir` (a forged handle gets SSH_FX_FAILURE).
 * - An `open`'s outcome (bytes read and written) is recorded when its handle is closed.
 */
import { posix } from 'node:path'
import ssh2, { type Attributes, type FileEntry, type SFTPWrapper } from 'ssh2'
import type { GatewayRequest, Pipeline, SessionInfo } from '@gatehouse/core'
import type { SshLimits } from './config.js'

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp

/** The most one READ is given (OpenSSH's sftp asks for 32 KiB without the limits extension, which the gateway does not offer). */
const MAX_READ = 64 * 1024

/** Registers a handler so that a throw or a rejection ends the session only (SshSession.on). */
export type Guard = (emitter: { on(event: string, listener: (...args: never[]) => void): unknown }, event: string, where: string, handler: (...args: never[]) => unknown) => void

interface OpenHandle {
  readonly request: GatewayRequest | undefined
  /** The canonical path it was opened with: `fsetstat` is judged against it. */
  readonly path: string
  bytesIn: number
  bytesOut: number
}

/** How a path is resolved before it is judged: through a last symlink (`follow`), or up to the last name (`name`). */
type Resolve = 'follow' | 'name'

/** The path the target canonicalised, or the target's error. */
type Canonical = { readonly path: string } | { readonly error: Error & { code?: unknown } }

/** The open flags as words a rule can match: read, write, append, create, truncate, exclusive. */
export function openModes(flags: number): string[] {
  const modes: string[] = []
  if (flags & OPEN_MODE.READ) modes.push('read')
  if (flags & OPEN_MODE.WRITE) modes.push('write')
  if (flags & OPEN_MODE.APPEND) modes.push('append')
  if (flags & OPEN_MODE.CREAT) modes.push('create')
  if (flags & OPEN_MODE.TRUNC) modes.push('truncate')
  if (flags & OPEN_MODE.EXCL) modes.push('exclusive')
  return modes
}

/** Splits off the last name of a path (trailing slashes dropped): `[directory, name]`; the name is '' for `/`, `.`, `..` and the like. */
export function splitLast(path: string): [string, string] {
  const trimmed = path.replace(/\/+$/, '')
  if (trimmed === '') return [path.startsWith('/') ? '/' : '.', '']
  const at = trimmed.lastIndexOf('/')
  const dir = at < 0 ? '.' : at === 0 ? '/' : trimmed.slice(0, at)
  const name = trimmed.slice(at + 1)
  return name === '.' || name === '..' ? [path, ''] : [dir, name]
}

export class SftpProxy {
  private readonly handles = new Map<string, OpenHandle>()

  constructor(
    private readonly client: SFTPWrapper,
    /** Settles once the SFTP session itself is admitted and the target's SFTP is open; operations wait for it, in order. */
    private readonly target: Promise<SFTPWrapper>,
    private readonly pipeline: Pipeline,
    private readonly session: SessionInfo,
    private readonly onOperation: () => void,
    private readonly guard: Guard,
    /** Ends the session for a limit the client broke, with the reason. */
    private readonly limit: (reason: string) => void,
  ) {}

  /** Reads and writes at the target now. */
  private inFlight = 0
  /** The in-flight limit was reached in this session (recorded the first time). */
  private overInFlight = false
  /** The unread-replies limit was reached: the session is ending (recorded once). */
  private overUnread = false
  /** A handle the gateway never handed out was used in this session (recorded the first time). */
  private forgedHandle = false
  /** The target's home directory (`REALPATH .`), fetched once: relative paths that cannot be resolved are judged against it. */
  private home: Promise<string> | undefined

  /** Registers every handler at once, so no request the client sends early goes unanswered. */
  start(): void {
    const c = this.client
    // Each handler runs once the target is ready; promise callbacks keep the client's order.
    const on = (event: string, handler: (t: SFTPWrapper, ...args: never[]) => unknown) =>
      this.guard(c, event, `sftp ${event.toLowerCase()}`, async (...args: never[]) => {
        let t: SFTPWrapper
        try {
          t = await this.target
        } catch {
          return c.status((args as unknown[])[0] as number, STATUS_CODE.FAILURE, 'gatehouse: sftp is not available')
        }
        return handler(t, ...args)
      })
    on('OPEN', (t, id: number, path: string, flags: number, attrs: Attributes) =>
      // TRUNC, CREAT and APPEND change a file even without WRITE (sftp-server truncates on READ|TRUNC)
      this.judged(t, id, 'open', path, 'follow', { mode: openModes(flags), writes: openModes(flags).some((m) => m !== 'read') }, (canonical, request) =>
        t.open(canonical, flags, attrs, (err, handle) => (err ? this.fail(id, err, request) : this.issue(id, handle, canonical, request))),
      ),
    )
    on('OPENDIR', (t, id: number, path: string) =>
      this.judged(t, id, 'opendir', path, 'follow', {}, (canonical, request) => t.opendir(canonical, (err, handle) => (err ? this.fail(id, err, request) : this.issue(id, handle, canonical, request)))),
    )
    on('REMOVE', (t, id: number, path: string) => this.judged(t, id, 'remove', path, 'name', {}, (canonical, request) => t.unlink(canonical, (err) => this.done(id, err, request))))
    on('RMDIR', (t, id: number, path: string) => this.judged(t, id, 'rmdir', path, 'name', {}, (canonical, request) => t.rmdir(canonical, (err) => this.done(id, err, request))))
    on('MKDIR', (t, id: number, path: string, attrs: Attributes) => this.judged(t, id, 'mkdir', path, 'name', {}, (canonical, request) => t.mkdir(canonical, attrs, (err) => this.done(id, err, request))))
    on('RENAME', async (t, id: number, from: string, to: string) => {
      const destination = await this.canonical(t, to, 'name')
      if ('error' in destination) return this.unresolvable(t, id, 'rename', from, { to, error: destination.error })
      return this.judged(t, id, 'rename', from, 'name', { to: destination.path, requestedTo: to }, (canonical, request) => t.rename(canonical, destination.path, (err) => this.done(id, err, request)))
    })
    on('SETSTAT', (t, id: number, path: string, attrs: Attributes) => this.judged(t, id, 'setstat', path, 'follow', { attrs: describeAttrs(attrs) }, (canonical, request) => t.setstat(canonical, attrs, (err) => this.done(id, err, request))))
    // the link's own name is judged; what it points to is judged when something opens through it
    on('SYMLINK', (t, id: number, linkPath: string, targetPath: string) =>
      this.judged(t, id, 'symlink', linkPath, 'name', { to: targetPath }, (canonical, request) => t.symlink(targetPath, canonical, (err) => this.done(id, err, request))),
    )
    // Metadata reads: judged like opendir (a one-directory grant does not reveal the filesystem).
    on('STAT', (t, id: number, path: string) => this.judged(t, id, 'stat', path, 'follow', {}, (canonical, request) => t.stat(canonical, (err, stats) => this.attrs(id, err, stats, request))))
    on('LSTAT', (t, id: number, path: string) => this.judged(t, id, 'lstat', path, 'name', {}, (canonical, request) => t.lstat(canonical, (err, stats) => this.attrs(id, err, stats, request))))
    on('REALPATH', (t, id: number, path: string) =>
      this.judged(t, id, 'realpath', path, 'follow', {}, (canonical, request) => {
        this.pipeline.complete(request, { status: 'ok' })
        c.name(id, [{ filename: canonical, longname: canonical, attrs: {} as Attributes }])
      }),
    )
    on('READLINK', (t, id: number, path: string) =>
      this.judged(t, id, 'readlink', path, 'name', {}, (canonical, request) =>
        t.readlink(canonical, (err, link) => {
          if (err) return this.fail(id, err, request)
          this.pipeline.complete(request, { status: 'ok' })
          c.name(id, [{ filename: link, longname: link, attrs: {} as Attributes }])
        }),
      ),
    )
    // Operations on handles the gateway handed out.
    on('READ', (t, id: number, handle: Buffer, offset: number, length: number) => {
      const h = this.known(id, handle)
      if (!h || !this.admitIo(id)) return
      const buf = Buffer.allocUnsafe(Math.max(0, Math.min(length, MAX_READ)))
      t.read(handle, buf, 0, buf.length, offset, (err, bytesRead) => {
        this.inFlight--
        if (err) return this.fail(id, err)
        if (bytesRead === 0) return c.status(id, STATUS_CODE.EOF)
        h.bytesOut += bytesRead
        c.data(id, buf.subarray(0, bytesRead))
      })
    })
    on('WRITE', (t, id: number, handle: Buffer, offset: number, data: Buffer) => {
      const h = this.known(id, handle)
      if (!h || !this.admitIo(id)) return
      t.write(handle, data, 0, data.length, offset, (err) => {
        this.inFlight--
        if (err) return this.fail(id, err)
        h.bytesIn += data.length
        c.status(id, STATUS_CODE.OK)
      })
    })
    on('FSTAT', (t, id: number, handle: Buffer) => {
      if (this.known(id, handle)) t.fstat(handle, (err, stats) => (err ? this.fail(id, err) : c.attrs(id, stats)))
    })
    // chmod, chown, utimes or truncate through a handle changes the file as setstat does: judged
    // as setstat on the path the handle was opened with (a read-only open does not grant it).
    on('FSETSTAT', async (t, id: number, handle: Buffer, attrs: Attributes) => {
      const h = this.known(id, handle)
      if (!h) return
      const request = this.pipeline.request(this.session, { action: 'ssh.sftp', text: `sftp setstat ${h.path}`, attrs: { ssh: { subsystem: 'sftp', op: 'setstat', path: h.path, paths: [h.path], requestedPath: h.path, handle: true, attrs: describeAttrs(attrs) } } })
      if (!(await this.admitted(id, request))) return
      t.fsetstat(handle, attrs, (err) => this.done(id, err, request))
    })
    on('READDIR', (t, id: number, handle: Buffer) => {
      if (!this.known(id, handle)) return
      t.readdir(handle, (err: Error | undefined, list: FileEntry[]) => {
        if (err) return this.fail(id, err)
        if (list.length === 0) return c.status(id, STATUS_CODE.EOF)
        c.name(id, list)
      })
    })
    on('CLOSE', (t, id: number, handle: Buffer) => {
      const h = this.known(id, handle)
      if (!h) return
      this.handles.delete(handle.toString('hex'))
      t.close(handle, (err) => {
        if (h.request) this.pipeline.complete(h.request, err ? { error: sftpError(err), bytesIn: h.bytesIn, bytesOut: h.bytesOut } : { status: 'closed', bytesIn: h.bytesIn, bytesOut: h.bytesOut })
        this.done(id, err)
      })
    })
    on('EXTENDED', (_t, id: number) => c.status(id, STATUS_CODE.OP_UNSUPPORTED))
  }

  /** At the end of the SFTP session: outcomes for handles never closed. */
  finish(): void {
    for (const h of this.handles.values()) if (h.request) this.pipeline.complete(h.request, { status: 'not closed', bytesIn: h.bytesIn, bytesOut: h.bytesOut })
    this.handles.clear()
  }

  /**
   * Whether one more read or write may go to the target: at most `limits.ssh.sftpInFlight` at
   * once, and not while more than `sftpUnreadBytes` of replies wait for a client that does not
   * read them (a client that asks and never reads would grow them without bound: that ends the
   * session).
   */
  private admitIo(id: number): boolean {
    const { sftpInFlight, sftpUnreadBytes } = this.pipeline.limits.adapter as SshLimits
    const buffered = ((this.client as unknown as { _buffer?: Buffer[] })._buffer ?? []).reduce((n, b) => n + b.length, 0)
    if (buffered > sftpUnreadBytes) {
      // the session ends: requests already read from the client find it over the limit too
      if (!this.overUnread) {
        this.overUnread = true
        this.limit(`the sftp client asked for more than ${sftpUnreadBytes} bytes it does not read (limits.ssh.sftpUnreadBytes)`)
      }
      return false
    }
    if (this.inFlight >= sftpInFlight) {
      // recorded once per sftp session (a client over the limit would otherwise write a record per request)
      if (!this.overInFlight) {
        this.overInFlight = true
        void this.pipeline.limitReached(this.session, 'ssh.sftp-in-flight', `the sftp client had more than ${sftpInFlight} reads and writes in flight (limits.ssh.sftpInFlight); the excess is answered with a failure`)
      }
      this.client.status(id, STATUS_CODE.FAILURE, `gatehouse: more than ${sftpInFlight} reads and writes in flight (limits.ssh.sftpInFlight)`)
      return false
    }
    this.inFlight++
    return true
  }

  /** The path as the target resolves it (see the file comment for `follow` and `name`). */
  private async canonical(t: SFTPWrapper, path: string, resolve: Resolve): Promise<Canonical> {
    const [dir, name] = resolve === 'name' ? splitLast(path) : [path, '']
    const real = await new Promise<Canonical>((done) => t.realpath(dir, (error, abs) => done(error ? { error } : { path: abs })))
    if ('error' in real || name === '') return real
    return { path: real.path === '/' ? `/${name}` : `${real.path}/${name}` }
  }

  /**
   * Canonicalises the path, puts the operation to policy with both spellings and, when it is
   * admitted, runs it on the canonical path. A path the target cannot canonicalise is refused.
   */
  private async judged(t: SFTPWrapper, id: number, op: string, path: string, resolve: Resolve, extra: Record<string, unknown>, run: (canonical: string, request: GatewayRequest) => void): Promise<void> {
    this.onOperation()
    const resolved = await this.canonical(t, path, resolve)
    if ('error' in resolved) return this.unresolvable(t, id, op, path, { ...extra, error: resolved.error })
    const text = `sftp ${op} ${resolved.path}${typeof extra.to === 'string' ? ` -> ${extra.to}` : ''}`
    const paths = typeof extra.requestedTo === 'string' ? [resolved.path, extra.to as string] : [resolved.path]
    const request = this.pipeline.request(this.session, { action: 'ssh.sftp', text, attrs: { ssh: { subsystem: 'sftp', op, path: resolved.path, paths, requestedPath: path, ...extra } } })
    if (await this.admitted(id, request)) run(resolved.path, request)
  }

  /** Puts a request to policy; a refusal is answered here. */
  private async admitted(id: number, request: GatewayRequest): Promise<boolean> {
    const admission = await this.pipeline.admit(request)
    if (!admission.admitted) this.client.status(id, STATUS_CODE.PERMISSION_DENIED, `gatehouse: denied by ${admission.decision.rule ?? 'default-deny'}: ${admission.decision.reason ?? 'denied'}`)
    return admission.admitted
  }

  /**
   * The target could not canonicalise a path (it does not exist, or a directory on the way does
   * not). Nothing is sent on; the path is judged as written, made absolute against the home
   * directory and normalised lexically (`ssh.resolved: false`). Refused, it is answered like any
   * refusal, so a caller learns whether a path exists only where policy lets it look; admitted,
   * it gets the target's own error.
   */
  private async unresolvable(t: SFTPWrapper, id: number, op: string, path: string, extra: { to?: string; error: Error & { code?: unknown } } & Record<string, unknown>): Promise<void> {
    const { error, to, ...rest } = extra
    this.home ??= new Promise((done) => t.realpath('.', (err, abs) => done(err ? '/' : abs)))
    const lexical = posix.resolve(await this.home, path)
    const request = this.pipeline.request(this.session, { action: 'ssh.sftp', text: `sftp ${op} ${lexical}`, attrs: { ssh: { subsystem: 'sftp', op, path: lexical, paths: [lexical], requestedPath: path, resolved: false, ...(to === undefined ? {} : { requestedTo: to }), ...rest } } })
    if (!(await this.admitted(id, request))) return
    this.fail(id, error, request)
  }

  /** Hands out a handle; an open's outcome waits for its close (with the bytes), an opendir's is recorded now. */
  private issue(id: number, handle: Buffer, path: string, request: GatewayRequest): void {
    const isOpen = (request.attrs.ssh as { op?: string }).op === 'open'
    this.handles.set(handle.toString('hex'), { request: isOpen ? request : undefined, path, bytesIn: 0, bytesOut: 0 })
    if (!isOpen) this.pipeline.complete(request, { status: 'opened' })
    this.client.handle(id, handle)
  }

  private known(id: number, handle: Buffer): OpenHandle | undefined {
    const h = this.handles.get(handle.toString('hex'))
    if (h) return h
    this.client.status(id, STATUS_CODE.FAILURE, 'gatehouse: unknown handle')
    // a forged or stale handle is a probe or a broken client: the first one is recorded, the rest only refused
    if (!this.forgedHandle) {
      this.forgedHandle = true
      void this.pipeline.protocolEvent(this.session, { event: 'sftp.unknown-handle', reason: 'the client used a handle the gateway never handed out (or already closed); later ones in this SFTP session are refused without a record', attrs: { handle: handle.subarray(0, 64).toString('hex') } })
    }
    return undefined
  }

  private attrs(id: number, err: Error | undefined, stats: Attributes, request: GatewayRequest): void {
    if (err) return this.fail(id, err, request)
    this.pipeline.complete(request, { status: 'ok' })
    this.client.attrs(id, stats)
  }

  private done(id: number, err: Error | null | undefined, request?: GatewayRequest): void {
    if (request) this.pipeline.complete(request, err ? { error: sftpError(err) } : { status: 'ok' })
    if (err) return this.fail(id, err)
    this.client.status(id, STATUS_CODE.OK)
  }

  private fail(id: number, err: Error & { code?: unknown }, request?: GatewayRequest): void {
    if (request) this.pipeline.complete(request, { error: sftpError(err) })
    const code = typeof err.code === 'number' ? err.code : STATUS_CODE.FAILURE
    this.client.status(id, code, err.message)
  }
}

function sftpError(err: Error & { code?: unknown }): { code: string; message: string } {
  return { code: `SFTP ${String(err.code ?? 'failure')}`, message: err.message }
}

function describeAttrs(attrs: Attributes): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (attrs.mode !== undefined) out.mode = `0${(attrs.mode & 0o7777).toString(8)}`
  if (attrs.uid !== undefined) out.uid = attrs.uid
  if (attrs.gid !== undefined) out.gid = attrs.gid
  if (attrs.size !== undefined) out.size = attrs.size
  return out
}
