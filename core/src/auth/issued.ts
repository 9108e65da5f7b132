/**
 * Tokens the gateway issues at run time (`gatehouse token issue --ttl`, `POST /tokens`): short
 * lived, scoped to connections, kept in the state store as hashes, revocable. This registry is
 * what the token authenticator reads on every login, synchronously, from memory: it loads the
 * store's active tokens at start (when there can be any), changes with every issue and revoke of
 * this gateway, and with a shared store polls it for the other replicas' changes.
 *
 * A change (a revocation, an expiry the store reports) is announced to `onChange` listeners: the
 * gateway then has each connection check its open sessions' credentials again, so a revoked
 * token's sessions end at once.
 */
import { randomUUID } from 'node:crypto'
import type { InjectionToken } from 'tsyringe'
import { GatewayError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { IssuedToken, StateStore } from '../state/store.js'
import { generateToken, hashToken } from './tokens.js'

/** The longest a run-time token may live (a longer-lived credential belongs in the config, reviewed). */
export const MAX_TOKEN_TTL_MS = 7 * 24 * 3_600_000

export interface IssueRequest {
  readonly identity: string
  readonly connections?: readonly string[]
  readonly ttlMs: number
  readonly by: string
  readonly description?: string
}

export class IssuedTokens {
  private byIdentity = new Map<string, IssuedToken[]>()
  private readonly listeners: Array<() => void> = []
  private timer: NodeJS.Timeout | undefined
  private loaded = false

  /**
   * `load`: whether the store may hold tokens already (a shared store; an embedded one that
   * exists), so they are read at start. `pollMs`: how often to read a shared store again.
   */
  constructor(
    private readonly store: StateStore,
    private readonly logger: Logger,
    private readonly opts: { load: boolean; pollMs?: number },
  ) {}

  /** The identities and connections tokens may be issued for (the running config's). */
  know(config: { readonly identities: readonly { readonly id: string }[]; readonly connections: readonly { readonly name: string }[] }): void {
    this.identities = new Set(config.identities.map((i) => i.id))
    this.connections = new Set(config.connections.map((c) => c.name))
  }
  private identities: ReadonlySet<string> = new Set()
  /** Tokens this gateway revoked: never active again, whatever a read of the store says. */
  private readonly revokedHere = new Set<string>()
  private connections: ReadonlySet<string> = new Set()

  async start(): Promise<void> {
    // A store that is down at boot does not keep the gateway from serving what needs no store:
    // issued tokens are refused until a read succeeds (the poll, or the next issue).
    if (this.opts.load) {
      await this.refresh().catch((err: unknown) => this.logger.error({ err: String(err) }, 'could not read issued tokens from the state store at start; they are refused until it answers'))
    }
    if (this.opts.pollMs) {
      this.timer = setInterval(() => {
        this.refresh().catch((err: unknown) => this.logger.warn({ err: String(err) }, 'could not read issued tokens from the state store; keeping the last ones read'))
      }, this.opts.pollMs)
      this.timer.unref()
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Calls `listener` after the set of tokens changed in a way that can end sessions. */
  onChange(listener: () => void): void {
    this.listeners.push(listener)
  }

  /** The identity's issued tokens, as last read (expiry and revocation are checked by the caller at use). */
  forIdentity(identity: string): readonly IssuedToken[] {
    return this.byIdentity.get(identity) ?? []
  }

  /** The token by id, if this registry knows it. */
  get(id: string): IssuedToken | undefined {
    for (const list of this.byIdentity.values()) for (const t of list) if (t.id === id) return t
    return undefined
  }

  async issue(req: IssueRequest, now = Date.now()): Promise<{ token: string; record: IssuedToken }> {
    if (!this.identities.has(req.identity)) throw new GatewayError('GH_ERR_CONFIG_INVALID', `no identity "${req.identity}" in the configuration`)
    for (const c of req.connections ?? []) if (!this.connections.has(c)) throw new GatewayError('GH_ERR_CONFIG_INVALID', `no connection "${c}" in the configuration`)
    if (!Number.isInteger(req.ttlMs) || req.ttlMs <= 0 || req.ttlMs > MAX_TOKEN_TTL_MS) {
      throw new GatewayError('GH_ERR_CONFIG_INVALID', `a token's lifetime must be between 1 ms and ${MAX_TOKEN_TTL_MS / 3_600_000} h, not ${req.ttlMs} ms`)
    }
    const token = generateToken()
    const record: IssuedToken = {
      id: `tok_${randomUUID()}`,
      identity: req.identity,
      // SCRAM verifier salted by the identity, like the config's tokens: the token itself is never stored
      hash: hashToken(token, req.identity),
      ...(req.connections && req.connections.length > 0 ? { connections: [...req.connections] } : {}),
      ...(req.description ? { description: req.description } : {}),
      createdAt: now,
      createdBy: req.by,
      expiresAt: now + req.ttlMs,
    }
    await this.store.addToken(record)
    this.put(record)
    return { token, record }
  }

  async revoke(id: string, by: string, reason: string | undefined, now = Date.now()): Promise<IssuedToken | undefined> {
    const revoked = await this.store.revokeToken(id, by, reason, now)
    if (!revoked) return undefined
    // a poll already in flight read the store before this: its answer must not bring the token back
    this.revokedHere.add(id)
    this.put(revoked)
    this.changed()
    return revoked
  }

  async list(filter: { identity?: string; includeInactive?: boolean }, now = Date.now()): Promise<IssuedToken[]> {
    return this.store.listTokens({ ...filter, now })
  }

  /** Reads the store's active tokens again; announces a change when one this gateway knew is gone. */
  async refresh(now = Date.now()): Promise<void> {
    const active = await this.store.listTokens({ now })
    const next = new Map<string, IssuedToken[]>()
    for (const t of active) {
      if (this.revokedHere.has(t.id)) continue
      const list = next.get(t.identity)
      if (list) list.push(t)
      else next.set(t.identity, [t])
    }
    const ids = (m: Map<string, IssuedToken[]>) => new Set([...m.values()].flat().filter((t) => t.revokedAt === undefined && t.expiresAt > now).map((t) => t.id))
    const before = ids(this.byIdentity)
    const after = ids(next)
    this.byIdentity = next
    const gone = [...before].some((id) => !after.has(id))
    if (this.loaded && gone) this.changed()
    this.loaded = true
  }

  private put(record: IssuedToken): void {
    const list = (this.byIdentity.get(record.identity) ?? []).filter((t) => t.id !== record.id)
    list.push(record)
    this.byIdentity.set(record.identity, list)
  }

  private changed(): void {
    for (const l of this.listeners) {
      try {
        l()
      } catch (err) {
        this.logger.error({ err: String(err) }, 'a listener of issued-token changes failed')
      }
    }
  }
}

export const IssuedTokensToken: InjectionToken<IssuedTokens> = Symbol.for('gatehouse.IssuedTokens')
