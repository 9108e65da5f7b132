/**
 * The gateway's model of the upstream PostgreSQL session: the prepared statements and portals
 * that exist there and the text each runs, the settings the server reported and its transaction
 * status. The wire relay (session.ts) asks it what a client's name refers to and tells it what
 * the server answered; nothing else changes it.
 *
 * Invariants — what the gateway guarantees about the text it judged and the text the server runs:
 *
 * 1. **Named statements and portals get the gateway's names, used once.** Every named
 *    statement a Parse creates and every named portal a Bind creates gets a name the gateway
 *    chose (`_gh_s<n>`, `_gh_p<n>`), never reused in the session. Such a server name refers to
 *    exactly one text — the one the gateway judged when that Parse passed — or to nothing. No
 *    ordering of Parse, Bind, Describe, Execute, Close, Sync and Flush, pipelined or not, and no
 *    failure or skip of any of them, can make the server run under it a text other than the one
 *    the gateway holds for it: at worst the server answers that the name does not exist.
 * 2. **The unnamed statement and portal are the server's own**, replaced by every Parse or Bind
 *    of `''` (the statement also dropped by a simple Query). The gateway resolves `''` only when
 *    it knows what the server holds under it: within the Sync block of the message that last
 *    changed it (if that message fails, the server skips the rest of the block, so nothing later
 *    in the block acts on it), or once the server has finished that block. A message of a later
 *    block that names `''` while an earlier block's change to it is unsettled waits for the
 *    server first; so does one naming a statement or portal whose Close is unsettled.
 * 3. **Client names are bindings**, changed by the client's Parse, Bind and Close, used
 *    unconfirmed by later messages of the same block, and rolled back when the server rejects
 *    or skips the message that made them. A name conflict (a Parse or Bind of a name still
 *    bound) is answered by the gateway itself, as PostgreSQL would (42P05, 42P03), after the
 *    server settled whatever could still free the name (an earlier block, a running statement
 *    that may end the transaction).
 * 4. **SQL-level names** (PREPARE, EXECUTE, DEALLOCATE) are the client's own; the server sees them
 *    as written. A PREPARE's statement is learned only when the server completes it; a name is
 *    forgotten as soon as a statement that may deallocate it is sent (DEALLOCATE, DISCARD, code
 *    the gateway cannot see through). SQL that names the gateway's reserved prefix is refused
 *    by the relay, so SQL cannot reach the gateway's own statements and portals.
 * 5. **Settings and transaction status come from the server** (ParameterStatus, ReadyForQuery),
 *    never from what the client asked for. The gateway's reading of SQL text does not depend on
 *    them (see sql/literals.ts and the accepted encodings in session.ts).
 */
import type { SqlAnalysis } from './sql/analyze.js'

/** Names the gateway gives server-side objects; SQL naming them is refused. Lower case: SQL folds them. */
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

interface Binding<T> {
  readonly target: T
  /** Order among the messages that changed names: what a transaction's end or DEALLOCATE ALL reaches. */
  readonly seq: number
  /** The message that made it was rejected or skipped: it never existed, wherever it is still referenced. */
  void?: true
}

/** A change to one client name, made when its message is forwarded and settled by the server's answer. */
export interface NameChange {
  readonly kind: Kind
  readonly name: string
  readonly block: number
  readonly prev: Binding<ServerStatement | ServerPortal> | undefined
  readonly next: Binding<ServerStatement | ServerPortal> | undefined
}

/** Bound on the entries kept about recent name changes (`note`). */
const MAX_NOTED = 20_000

/** SQLSTATEs of a Bind that fails before it replaces the unnamed portal (the old one survives). */
const BIND_FAILS_BEFORE_PORTAL: ReadonlySet<string> = new Set(['26000', '08P01', '25P02', '42P18', '22P03', '0A000'])

/** A name no Parse or Bind ever gets: the gateway's stand-in for a refused message is a failing Parse of it. */
export const NO_SUCH_NAME = `${RESERVED_PREFIX}none`

export class SessionModel {
  private readonly statements = new Map<string, Binding<ServerStatement>>()
  private readonly portals = new Map<string, Binding<ServerPortal>>()
  /** SQL-level prepared statements (PREPARE): the server knows them by the client's name. */
  private readonly sqlStatements = new Map<string, ServerStatement>()
  /** SQL-level names the gateway let go of while the server may still hold them; `*`: any name. */
  private readonly forgotten = new Set<string>()
  private nextStatement = 1
  private nextPortal = 1
  private seq = 0
  /**
   * Drop horizons, in message order (`seq`): every named statement bound at or before
   * `statementsDroppedUpTo` and every portal bound at or before `portalsDroppedUpTo` is gone
   * on the server (DEALLOCATE ALL, DISCARD ALL, a transaction's end). A rollback never brings
   * such a binding back.
   */
  private statementsDroppedUpTo = 0
  private portalsDroppedUpTo = 0
  /** `seq` at the end of each block the server has not finished yet, oldest first. */
  private readonly blockEnds: number[] = []
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

  /** Client names bound (statements and portals): what the session holds upstream. */
  get held(): { statements: number; portals: number } {
    return { statements: this.statements.size + this.sqlStatements.size, portals: this.portals.size }
  }

  /**
   * Whether the gateway knows what the server holds under the client's `name`: false while a
   * change to `''`, or a Close of a named object, made in an earlier block is unsettled (the
   * server may have skipped it).
   */
  resolvable(kind: Kind, name: string): boolean {
    // A named binding made in an earlier block is safe to use unsettled (its server name is
    // unique: if the Parse failed, the server says so); a removal (Close) is not, since the
    // server may have skipped it and still hold the object.
    if (name !== '' && this.removals.get(`${kind}${name}`) === undefined) return true
    const change = this.lastChange(kind, name)
    return change === undefined || change >= this.clientBlocks || change < this.serverBlocks
  }

  /** Names whose latest change was a Close, by the block it was sent in. */
  private readonly removals = new Map<string, number>()

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

  /**
   * The block of the latest change to each name (binding or removal). A change is settled when
   * the server has finished its block, not when it confirmed the message: the end of the block
   * can still change the name (a portal ends with its transaction).
   */
  private readonly unsettled = new Map<string, number>()
  private lastChange(kind: Kind, name: string): number | undefined {
    return this.unsettled.get(`${kind}${name}`)
  }

  /**
   * Records `block` for `key`, newest last. Bounded: a client that names ever new objects in one
   * unsynced pipeline evicts the oldest entries. Losing one costs only exactness of a conflict or
   * a wait (the gateway may answer "does not exist" or "already exists" where PostgreSQL would
   * not), never the guarantee of invariant 1.
   */
  private note(map: Map<string, number>, key: string, block: number): void {
    map.delete(key)
    map.set(key, block)
    if (map.size > MAX_NOTED) map.delete(map.keys().next().value as string)
  }

  // ------------------------------------------------------------------ changes the relay forwards

  /** A protocol Parse: binds `name` to a new server statement. The caller forwards the Parse under `serverName`. */
  parse(name: string, text: string, analysis: SqlAnalysis): { statement: ServerStatement; change: NameChange } {
    const serverName = name === '' ? '' : `${RESERVED_PREFIX}s${this.nextStatement++}`
    const statement: ServerStatement = { serverName, text, analysis }
    return { statement, change: this.bind('S', name, statement) }
  }

  /** A Bind: binds portal `name` to a new server portal of `statement`. */
  bindPortal(name: string, statement: ServerStatement, params: readonly (string | null)[]): { portal: ServerPortal; change: NameChange } {
    const serverName = name === '' ? '' : `${RESERVED_PREFIX}p${this.nextPortal++}`
    const portal: ServerPortal = { serverName, statement, params }
    return { portal, change: this.bind('P', name, portal) }
  }

  /**
   * A Close of a client name: unbinds it. The caller closes the server object it named, or, for a
   * name not bound at protocol level, the server's object of the client's own name (a SQL-level
   * cursor or prepared statement, or nothing).
   */
  close(kind: Kind, name: string): { serverName: string; change: NameChange } {
    const map = kind === 'S' ? this.statements : this.portals
    const prev = map.get(name)
    map.delete(name)
    const change: NameChange = { kind, name, block: this.clientBlocks, prev, next: undefined }
    // Closing a name not bound changes nothing the gateway resolves.
    if (prev) {
      this.note(this.unsettled, `${kind}${name}`, this.clientBlocks)
      this.note(this.removals, `${kind}${name}`, this.clientBlocks)
    }
    return { serverName: prev?.target.serverName ?? name, change }
  }

  private bind(kind: Kind, name: string, target: ServerStatement | ServerPortal): NameChange {
    const map = (kind === 'S' ? this.statements : this.portals) as Map<string, Binding<ServerStatement | ServerPortal>>
    const prev = map.get(name)
    const next: Binding<ServerStatement | ServerPortal> = { target, seq: ++this.seq }
    map.set(name, next)
    this.note(this.unsettled, `${kind}${name}`, this.clientBlocks)
    this.removals.delete(`${kind}${name}`)
    return { kind, name, block: this.clientBlocks, prev, next }
  }

  /**
   * The server skipped the message that made `change`, or rejected it with SQLSTATE `failed`: the
   * name means what it meant before — except where PostgreSQL has already dropped the old unnamed
   * object: a Parse of `''` drops it before anything else; a Bind of `''` drops the old portal
   * once it gets past its checks (the statement exists, the parameter count, the transaction is
   * not aborted). Either way the gateway errs only towards refusing: it never resolves `''` to an
   * object whose text it did not judge.
   */
  rollback(change: NameChange, failed: string | undefined): void {
    // A later change (a Close of the same name in a later block) may still hold it as its `prev`.
    if (change.next) change.next.void = true
    const map = (change.kind === 'S' ? this.statements : this.portals) as Map<string, Binding<ServerStatement | ServerPortal>>
    if (map.get(change.name) !== change.next) return
    const replacedUnnamed = failed !== undefined && change.name === '' && change.next !== undefined
    const unnamedDropped = replacedUnnamed && (change.kind === 'S' || !BIND_FAILS_BEFORE_PORTAL.has(failed))
    const prev = change.prev
    if (prev && !prev.void && !unnamedDropped && !this.droppedOnServer(change.kind, change.name, prev)) map.set(change.name, prev)
    else map.delete(change.name)
  }

  private droppedOnServer(kind: Kind, name: string, b: Binding<ServerStatement | ServerPortal>): boolean {
    if (kind === 'P') return b.seq <= this.portalsDroppedUpTo
    return name !== '' && b.seq <= this.statementsDroppedUpTo
  }

  /**
   * A simple Query: PostgreSQL drops the unnamed statement before anything else. The unnamed
   * portal it replaces only if it gets as far as running a statement (an error in the text leaves
   * the old one), and drops its own at the end: afterwards the server holds the old portal or
   * none, never another. So the binding stays: an Execute of `''` is judged by the old portal's
   * text, and the server runs that or answers that the portal does not exist.
   */
  simpleQuery(): void {
    this.statements.delete('')
    // Deterministic (a Query the gateway forwards is never skipped): nothing about it is left to settle.
    this.unsettled.delete('S')
  }

  /** Where the next message stands among the name changes, for `transactionEnded`. */
  get position(): number {
    return this.seq
  }

  /**
   * A COMMIT, ROLLBACK or PREPARE TRANSACTION completed: the transaction ended, and with it every
   * portal bound before that statement's message (`position` when it was sent); portals bound
   * by later messages of the pipeline were bound after the end.
   */
  transactionEnded(position: number): void {
    this.portalsDroppedUpTo = Math.max(this.portalsDroppedUpTo, position)
    for (const [name, b] of this.portals) if (b.seq <= position) this.portals.delete(name)
  }

  /** A Sync or Query was forwarded: later messages belong to the next block. */
  endBlock(): void {
    this.blockEnds.push(this.seq)
    this.clientBlocks++
  }

  /** ReadyForQuery: the server finished a block. Outside a transaction no portal survives it. */
  readyForQuery(status: number): void {
    this.serverBlocks++
    this.txStatus = status
    const end = this.blockEnds.shift() ?? this.seq
    this.forgetSettled(this.unsettled)
    this.forgetSettled(this.removals)
    // Outside a transaction no portal survives the block; those bound in later blocks still exist.
    if (status === 0x49) this.transactionEnded(end)
  }

  /** Drops notes of blocks the server has finished, once there are enough to be worth a sweep. */
  private forgetSettled(map: Map<string, number>): void {
    if (map.size > 256) for (const [key, block] of map) if (block < this.serverBlocks) map.delete(key)
  }

  // ------------------------------------------------------------------ SQL-level names

  /** A PREPARE the server completed. */
  learnSqlStatement(name: string, statement: ServerStatement): void {
    this.forgotten.delete(name)
    this.sqlStatements.set(name, statement)
  }

  /** A statement that may deallocate `name` (or every name: '*') is being sent. */
  forgetSqlStatement(name: string): void {
    if (name === '*') this.sqlStatements.clear()
    else this.sqlStatements.delete(name)
    this.forgotten.add(name)
  }

  /**
   * Whether the server may hold a SQL-level prepared statement of this name that the gateway does
   * not: one it forgot (a PREPARE in flight, code it could not follow). A name never seen cannot
   * exist, and the client is told so as PostgreSQL would tell it (26000).
   */
  mayHoldSqlStatement(name: string): boolean {
    return this.sqlStatements.has(name) || this.forgotten.has(name) || this.forgotten.has('*')
  }

  /**
   * The server completed DEALLOCATE ALL or DISCARD ALL: it dropped every named prepared statement
   * (DISCARD ALL also every portal), the gateway's own included; the unnamed statement stays.
   * Bindings made by messages after that statement's (`position` when it was sent) are kept.
   */
  serverDroppedAll(position: number, portalsToo: boolean): void {
    this.sqlStatements.clear()
    this.statementsDroppedUpTo = Math.max(this.statementsDroppedUpTo, position)
    for (const [name, b] of this.statements) {
      if (name !== '' && b.seq <= position) this.statements.delete(name)
    }
    if (portalsToo) this.transactionEnded(position)
  }
}
