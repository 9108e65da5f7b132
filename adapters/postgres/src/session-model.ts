/**
 * The gateway's model of the upstream PostgreSQL session: the prepared statements and portals
 * that exist there and the text each runs, the settings the server reported and its transaction
 * status. The wire relay (session.ts) asks it what a client's name refers to and tells it what
 * the server answered; nothing else changes it.
 *
 * Invariants — what the gateway guarantees about the text it judged and the text the server runs:
 *
 * 1. **Server names are the gateway's, used once.** Every statement a protocol Parse creates and
 *    every portal a Bind creates gets a name the gateway chose (`_gh_s<n>`, `_gh_p<n>`), never
 *    reused in the session. A server name therefore refers to exactly one text — the one the
 *    gateway analysed and judged when that Parse passed — or to nothing. No ordering of Parse,
 *    Bind, Describe, Execute, Close, Sync and Flush, pipelined or not, and no failure or skip of
 *    any of them, can make the server run under a name a text other than the one the gateway
 *    holds for it: at worst the server answers that the name does not exist.
 * 2. **Client names are bindings to server names**, changed by the client's Parse, Bind and
 *    Close. A binding made in a Sync block is used, unconfirmed, by later messages of the same
 *    block (if the message that made it fails, the server skips the rest of the block, so
 *    nothing later in the block can act on it), and rolled back when the server rejects or skips
 *    that message. A name conflict (a Parse or Bind of a name still bound) is answered by the
 *    gateway itself, as PostgreSQL would (42P05, 42P03), after waiting for the server to settle
 *    any earlier block that changed the name.
 * 3. **SQL-level names** (PREPARE, EXECUTE, DEALLOCATE) are the client's own; the server sees them
 *    as written. A PREPARE's statement is learned only when the server completes it; a name is
 *    forgotten as soon as a statement that may deallocate it is sent (DEALLOCATE, DISCARD, code
 *    the gateway cannot see through). SQL that names the gateway's reserved prefix is refused
 *    by the relay, so SQL cannot reach the gateway's own statements and portals.
 * 4. **Settings and transaction status come from the server** (ParameterStatus, ReadyForQuery),
 *    never from what the client asked for. The gateway's reading of SQL text does not depend on
 *    them (see sql/literals.ts and the accepted encodings in session.ts).
 */
import type { SqlAnalysis } from './sql/analyze.js'

/** Names the gateway gives server-side objects; SQL naming them is refused. Lower case: SQL folds unquoted names. */
export const RESERVED_PREFIX = '_gh_'

/** A statement as the server holds it under the gateway's name. Immutable: the name is never reused. */
export interface ServerStatement {
  readonly serverName: string
  readonly text: string
  readonly analysis: SqlAnalysis
}

/** A portal as the server holds it: bound to one statement with these parameters. */
export interface ServerPortal {
  readonly serverName: string
  readonly statement: ServerStatement
  readonly params: readonly (string | null)[]
}

type Kind = 'S' | 'P'
type Target<K extends Kind> = K extends 'S' ? ServerStatement : ServerPortal

interface Binding<T> {
  readonly target: T
  /** The Sync block of the message that made it, until the server confirms that message. */
  pendingBlock: number | undefined
}

/** A change to one client name, made when its message is forwarded and settled by the server's answer. */
export interface NameChange {
  readonly kind: Kind
  readonly name: string
  readonly block: number
  readonly prev: Binding<ServerStatement | ServerPortal> | undefined
  readonly next: Binding<ServerStatement | ServerPortal> | undefined
}

/** A Close the gateway sends for a server object no client name refers to any more. */
export interface ServerClose {
  readonly kind: Kind
  readonly serverName: string
}

/** A name no Parse or Bind ever gets: a Close of it closes nothing and answers CloseComplete. */
export const NO_SUCH_NAME = `${RESERVED_PREFIX}none`

export class SessionModel {
  private readonly statements = new Map<string, Binding<ServerStatement>>()
  private readonly portals = new Map<string, Binding<ServerPortal>>()
  /** SQL-level prepared statements (PREPARE): the server knows them by the client's name. */
  private readonly sqlStatements = new Map<string, ServerStatement>()
  /** Server objects no client name refers to any more, to be closed before the next Parse or Bind. */
  private closes: ServerClose[] = []
  private nextStatement = 1
  private nextPortal = 1
  /** Sync blocks (Sync or Query messages) forwarded so far; the current block's number. */
  private clientBlocks = 0
  /** Sync blocks the server has finished (ReadyForQuery received). */
  private serverBlocks = 0
  /** Settings as the server reported them (ParameterStatus). */
  readonly settings = new Map<string, string>()
  /** Transaction status from the last ReadyForQuery: I, T or E. */
  txStatus = 0x49

  constructor(initial: { parameters: Iterable<[string, string]>; status: number }) {
    for (const [k, v] of initial.parameters) this.settings.set(k, v)
    this.txStatus = initial.status
  }

  // ------------------------------------------------------------------ what a client name means

  statement(name: string): ServerStatement | undefined {
    return this.statements.get(name)?.target
  }

  portal(name: string): ServerPortal | undefined {
    return this.portals.get(name)?.target
  }

  sqlStatement(name: string): ServerStatement | undefined {
    return this.sqlStatements.get(name)
  }

  /** Client names bound (statements and portals), plus server objects still to close: what the session holds upstream. */
  get held(): { statements: number; portals: number } {
    let s = this.statements.size + this.sqlStatements.size
    let p = this.portals.size
    for (const c of this.closes) c.kind === 'S' ? s++ : p++
    return { statements: s, portals: p }
  }

  /**
   * Whether a Parse or Bind of `name` conflicts with a binding: 'free', 'taken' (the server would
   * answer 42P05/42P03), or 'unsettled' (an earlier block changed it and the server has not said
   * how that went: wait for it, then ask again). The unnamed statement and portal never conflict.
   */
  conflict(kind: Kind, name: string): 'free' | 'taken' | 'unsettled' {
    if (name === '') return 'free'
    const b = (kind === 'S' ? this.statements : this.portals).get(name)
    const change = this.lastChange(kind, name)
    if (change !== undefined && change < this.clientBlocks && change >= this.serverBlocks) return 'unsettled'
    return b ? 'taken' : 'free'
  }

  /** Block of the latest unconfirmed change to a name (binding or removal), if any. */
  private readonly unsettled = new Map<string, number>()
  private lastChange(kind: Kind, name: string): number | undefined {
    return this.unsettled.get(`${kind}${name}`)
  }

  // ------------------------------------------------------------------ changes the relay forwards

  /** A protocol Parse: binds `name` to a new server statement. The caller forwards the Parse under `serverName`. */
  parse(name: string, text: string, analysis: SqlAnalysis): { statement: ServerStatement; change: NameChange } {
    const statement: ServerStatement = { serverName: `${RESERVED_PREFIX}s${this.nextStatement++}`, text, analysis }
    return { statement, change: this.bind('S', name, statement) }
  }

  /** A Bind: binds portal `name` to a new server portal of `statement`. */
  bindPortal(name: string, statement: ServerStatement, params: readonly (string | null)[]): { portal: ServerPortal; change: NameChange } {
    const portal: ServerPortal = { serverName: `${RESERVED_PREFIX}p${this.nextPortal++}`, statement, params }
    return { portal, change: this.bind('P', name, portal) }
  }

  /** A Close of a client name: unbinds it; the server object it named is what the caller closes (or NO_SUCH_NAME). */
  close(kind: Kind, name: string): { serverName: string; change: NameChange } {
    const map = kind === 'S' ? this.statements : this.portals
    const prev = map.get(name)
    map.delete(name)
    const change: NameChange = { kind, name, block: this.clientBlocks, prev, next: undefined }
    this.unsettled.set(`${kind}${name}`, this.clientBlocks)
    return { serverName: prev?.target.serverName ?? NO_SUCH_NAME, change }
  }

  private bind(kind: Kind, name: string, target: ServerStatement | ServerPortal): NameChange {
    const map = (kind === 'S' ? this.statements : this.portals) as Map<string, Binding<ServerStatement | ServerPortal>>
    const prev = map.get(name)
    const next: Binding<ServerStatement | ServerPortal> = { target, pendingBlock: this.clientBlocks }
    map.set(name, next)
    this.unsettled.set(`${kind}${name}`, this.clientBlocks)
    // Only the unnamed statement and portal are replaced (a named one conflicts): close the old object.
    if (prev) this.closes.push({ kind, serverName: prev.target.serverName })
    return { kind, name, block: this.clientBlocks, prev, next }
  }

  /** The server confirmed the message that made `change` (ParseComplete, BindComplete, CloseComplete). */
  confirm(change: NameChange): void {
    if (change.next) change.next.pendingBlock = undefined
    this.settleName(change)
  }

  /** The server rejected or skipped the message that made `change`: the name means what it meant before. */
  rollback(change: NameChange): void {
    const map = (change.kind === 'S' ? this.statements : this.portals) as Map<string, Binding<ServerStatement | ServerPortal>>
    if (map.get(change.name) === change.next) {
      if (change.prev) map.set(change.name, change.prev)
      else map.delete(change.name)
    }
    // The old object was queued for closing when it was replaced; it is bound again.
    if (change.next && change.prev) this.closes = this.closes.filter((c) => c.serverName !== change.prev?.target.serverName)
    this.settleName(change)
  }

  private settleName(change: NameChange): void {
    const key = `${change.kind}${change.name}`
    if (this.unsettled.get(key) === change.block) this.unsettled.delete(key)
  }

  /** Closes to send before the next Parse or Bind; the caller re-queues those the server skips (`closeSkipped`). */
  takeCloses(): ServerClose[] {
    const out = this.closes
    this.closes = []
    return out
  }

  closeSkipped(c: ServerClose): void {
    this.closes.push(c)
  }

  /** A simple Query destroys the unnamed statement and portal (PostgreSQL does so before running it). */
  simpleQuery(): void {
    for (const kind of ['S', 'P'] as const) {
      const map = kind === 'S' ? this.statements : this.portals
      const b = map.get('')
      if (!b) continue
      map.delete('')
      this.closes.push({ kind, serverName: b.target.serverName })
    }
  }

  /** A Sync or Query was forwarded: later messages belong to the next block. */
  endBlock(): void {
    this.clientBlocks++
  }

  /** ReadyForQuery: the server finished a block. Outside a transaction no portal survives it. */
  readyForQuery(status: number): void {
    this.serverBlocks++
    this.txStatus = status
    if (status !== 0x49) return
    for (const [name, b] of this.portals) {
      // A portal bound in a block the server has not reached yet still exists after this one.
      if (b.pendingBlock === undefined || b.pendingBlock < this.serverBlocks) this.portals.delete(name)
    }
    this.closes = this.closes.filter((c) => c.kind === 'S')
  }

  // ------------------------------------------------------------------ SQL-level names

  /** A PREPARE the server completed. */
  learnSqlStatement(name: string, statement: ServerStatement): void {
    this.sqlStatements.set(name, statement)
  }

  /** A statement that may deallocate `name` (or every name: '*') is being sent. */
  forgetSqlStatement(name: string): void {
    if (name === '*') this.sqlStatements.clear()
    else this.sqlStatements.delete(name)
  }

  /**
   * The server completed DEALLOCATE ALL or DISCARD ALL: it dropped every prepared statement
   * (DISCARD ALL also every portal), the gateway's own included. Bindings made in blocks the
   * server has not reached yet are kept.
   */
  serverDroppedAll(portalsToo: boolean): void {
    this.sqlStatements.clear()
    const drop = <T>(map: Map<string, Binding<T>>) => {
      for (const [name, b] of map) if (b.pendingBlock === undefined || b.pendingBlock < this.serverBlocks) map.delete(name)
    }
    drop(this.statements)
    if (portalsToo) drop(this.portals)
    this.closes = this.closes.filter((c) => c.kind === 'P' && !portalsToo)
  }
}
