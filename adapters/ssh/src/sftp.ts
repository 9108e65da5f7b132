/**
 * SFTP, operation by operation: the gateway speaks SFTP to the client (ssh2's server mode) and
 * to the target (ssh2's client), so every operation that opens, creates, changes or removes a
 * path is a request that policy judges and the audit records, with the path and the mode.
 *
 * Why it is shaped this way:
 * - Judged: `open` (with read/write/append/create/truncate/exclusive), `opendir`, `remove`,
 *   `rename`, `mkdir`, `rmdir`, `setstat` (chmod, chown, utimes), `symlink`. A refused one
 *   answers SSH_FX_PERMISSION_DENIED with `gatehouse: denied by <rule>: <reason>`; the session
 *   goes on.
 * - Not judged, but only ever on what was admitted: `read`, `write`, `fstat`, `fsetstat`,
 *   `readdir` and `close` act on a handle, and the gateway answers them only for handles it
 *   handed out for an admitted `open`/`opendir` (a forged handle gets SSH_FX_FAILURE).
 *   `stat`, `lstat`, `realpath` and `readlink` read metadata and pass.
 * - An `open`'s outcome (bytes read and written) is recorded when its handle is closed.
 */
import ssh2, { type Attributes, type FileEntry, type SFTPWrapper } from 'ssh2'
import type { GatewayRequest, Pipeline, SessionInfo } from '@gatehouse/core'

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp

interface OpenHandle {
  readonly request: GatewayRequest | undefined
  bytesIn: number
  bytesOut: number
}

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

export class SftpProxy {
  private readonly handles = new Map<string, OpenHandle>()

  constructor(
    private readonly client: SFTPWrapper,
    /** Settles once the SFTP session itself is admitted and the target's SFTP is open; operations wait for it, in order. */
    private readonly target: Promise<SFTPWrapper>,
    private readonly pipeline: Pipeline,
    private readonly session: SessionInfo,
    private readonly onOperation: () => void,
  ) {}

  /** Registers every handler at once, so no request the client sends early goes unanswered. */
  start(): void {
    const c = this.client
    // Each handler runs once the target is ready; promise callbacks keep the client's order.
    const on = (event: string, handler: (t: SFTPWrapper, ...args: never[]) => void) =>
      c.on(event, (...args: unknown[]) => {
        void this.target.then(
          (t) => handler(t, ...(args as never[])),
          () => c.status(args[0] as number, STATUS_CODE.FAILURE, 'gatehouse: sftp is not available'),
        )
      })
    on('OPEN', (t, id: number, path: string, flags: number, attrs: Attributes) =>
      void this.judged(id, 'open', path, { mode: openModes(flags) }, (request) =>
        t.open(path, flags, attrs, (err, handle) => (err ? this.fail(id, err, request) : this.issue(id, handle, request))),
      ),
    )
    on('OPENDIR', (t, id: number, path: string) =>
      void this.judged(id, 'opendir', path, {}, (request) => t.opendir(path, (err, handle) => (err ? this.fail(id, err, request) : this.issue(id, handle, request)))),
    )
    on('REMOVE', (t, id: number, path: string) => void this.judged(id, 'remove', path, {}, (request) => t.unlink(path, (err) => this.done(id, err, request))))
    on('RMDIR', (t, id: number, path: string) => void this.judged(id, 'rmdir', path, {}, (request) => t.rmdir(path, (err) => this.done(id, err, request))))
    on('MKDIR', (t, id: number, path: string, attrs: Attributes) => void this.judged(id, 'mkdir', path, {}, (request) => t.mkdir(path, attrs, (err) => this.done(id, err, request))))
    on('RENAME', (t, id: number, from: string, to: string) => void this.judged(id, 'rename', from, { to }, (request) => t.rename(from, to, (err) => this.done(id, err, request))))
    on('SETSTAT', (t, id: number, path: string, attrs: Attributes) => void this.judged(id, 'setstat', path, { attrs: describeAttrs(attrs) }, (request) => t.setstat(path, attrs, (err) => this.done(id, err, request))))
    on('SYMLINK', (t, id: number, linkPath: string, targetPath: string) =>
      void this.judged(id, 'symlink', linkPath, { to: targetPath }, (request) => t.symlink(targetPath, linkPath, (err) => this.done(id, err, request))),
    )
    // Metadata reads pass.
    on('STAT', (t, id: number, path: string) => t.stat(path, (err, stats) => (err ? this.fail(id, err) : c.attrs(id, stats))))
    on('LSTAT', (t, id: number, path: string) => t.lstat(path, (err, stats) => (err ? this.fail(id, err) : c.attrs(id, stats))))
    on('REALPATH', (t, id: number, path: string) => t.realpath(path, (err, abs) => (err ? this.fail(id, err) : c.name(id, [{ filename: abs, longname: abs, attrs: {} as Attributes }]))))
    on('READLINK', (t, id: number, path: string) => t.readlink(path, (err, link) => (err ? this.fail(id, err) : c.name(id, [{ filename: link, longname: link, attrs: {} as Attributes }]))))
    // Operations on handles the gateway handed out.
    on('READ', (t, id: number, handle: Buffer, offset: number, length: number) => {
      const h = this.known(id, handle)
      if (!h) return
      const buf = Buffer.allocUnsafe(Math.min(length, 256 * 1024))
      t.read(handle, buf, 0, buf.length, offset, (err, bytesRead) => {
        if (err) return this.fail(id, err)
        if (bytesRead === 0) return c.status(id, STATUS_CODE.EOF)
        h.bytesOut += bytesRead
        c.data(id, buf.subarray(0, bytesRead))
      })
    })
    on('WRITE', (t, id: number, handle: Buffer, offset: number, data: Buffer) => {
      const h = this.known(id, handle)
      if (!h) return
      t.write(handle, data, 0, data.length, offset, (err) => {
        if (err) return this.fail(id, err)
        h.bytesIn += data.length
        c.status(id, STATUS_CODE.OK)
      })
    })
    on('FSTAT', (t, id: number, handle: Buffer) => {
      if (this.known(id, handle)) t.fstat(handle, (err, stats) => (err ? this.fail(id, err) : c.attrs(id, stats)))
    })
    on('FSETSTAT', (t, id: number, handle: Buffer, attrs: Attributes) => {
      if (this.known(id, handle)) t.fsetstat(handle, attrs, (err) => this.done(id, err))
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
    on('EXTENDED', (t, id: number) => c.status(id, STATUS_CODE.OP_UNSUPPORTED))
  }

  /** At the end of the SFTP session: outcomes for handles never closed. */
  finish(): void {
    for (const h of this.handles.values()) if (h.request) this.pipeline.complete(h.request, { status: 'not closed', bytesIn: h.bytesIn, bytesOut: h.bytesOut })
    this.handles.clear()
  }

  private async judged(id: number, op: string, path: string, extra: Record<string, unknown>, run: (request: GatewayRequest) => void): Promise<void> {
    this.onOperation()
    const text = `sftp ${op} ${path}${typeof extra.to === 'string' ? ` -> ${extra.to}` : ''}`
    const request = this.pipeline.request(this.session, { action: 'ssh.sftp', text, attrs: { ssh: { subsystem: 'sftp', op, path, ...extra } } })
    const admission = await this.pipeline.admit(request)
    if (!admission.admitted) {
      this.client.status(id, STATUS_CODE.PERMISSION_DENIED, `gatehouse: denied by ${admission.decision.rule ?? 'default-deny'}: ${admission.decision.reason ?? 'denied'}`)
      return
    }
    run(request)
  }

  /** Hands out a handle; an open's outcome waits for its close (with the bytes), an opendir's is recorded now. */
  private issue(id: number, handle: Buffer, request: GatewayRequest): void {
    const isOpen = (request.attrs.ssh as { op?: string }).op === 'open'
    this.handles.set(handle.toString('hex'), { request: isOpen ? request : undefined, bytesIn: 0, bytesOut: 0 })
    if (!isOpen) this.pipeline.complete(request, { status: 'opened' })
    this.client.handle(id, handle)
  }

  private known(id: number, handle: Buffer): OpenHandle | undefined {
    const h = this.handles.get(handle.toString('hex'))
    if (!h) this.client.status(id, STATUS_CODE.FAILURE, 'gatehouse: unknown handle')
    return h
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
