/**
 * The configuration file's types. The JSON Schema that validates `gatehouse.yaml` is generated
 * from these same TypeBox definitions (`gatehouse schema` prints it), so code and schema cannot
 * drift apart.
 */
import { Type, type Static, type TProperties } from '@sinclair/typebox'
import { LIMIT_DEFAULTS } from '../pipeline/limits.js'

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', maxLength: 128, description: 'a name of letters, digits, ".", "_" and "-", starting with a letter or digit' })
const HostPort = Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$', description: 'host:port (e.g. 127.0.0.1:15432, [::1]:15432)' })

/** A count a limit allows, with its default (from LIMIT_DEFAULTS, so the two cannot disagree). */
const limitCount = (description: string, fallback: number) => Type.Optional(Type.Integer({ minimum: 1, description: `${description} (default ${fallback})` }))
/** A time limit in milliseconds; 0 turns it off. */
const limitMs = (description: string, fallback: number) => Type.Optional(Type.Integer({ minimum: 0, description: `${description}; 0: no limit (default ${fallback})` }))
const limitGroup = <T extends TProperties>(fields: T) => Type.Optional(Type.Object(fields, { additionalProperties: false }))

const SessionLimitFields = {
  perIdentity: limitCount('logged-in sessions of one identity on one connection', LIMIT_DEFAULTS.sessions.perIdentity),
  perToken: limitCount('logged-in sessions that presented one token or key, on one connection', LIMIT_DEFAULTS.sessions.perToken),
  total: limitCount('logged-in sessions on one connection', LIMIT_DEFAULTS.sessions.total),
  idleMs: limitMs('a session with no traffic either way for this long is ended', LIMIT_DEFAULTS.sessions.idleMs),
  maxAgeMs: limitMs('a session is ended this long after it opened', LIMIT_DEFAULTS.sessions.maxAgeMs),
}

export const TokenEntry = Type.Object(
  {
    id: Type.Optional(Name),
    hash: Type.String({ minLength: 8, description: 'scram-sha-256$… verifier or sha256:<hex>, from `gatehouse token issue`' }),
    connections: Type.Optional(Type.Array(Name, { description: 'connections this token may open; omitted = all' })),
    expires: Type.Optional(Type.String({ format: 'date-time', description: 'ISO-8601; the token is refused after it' })),
  },
  { additionalProperties: false },
)

export const Identity = Type.Object(
  {
    id: Name,
    kind: Type.Union([Type.Literal('agent'), Type.Literal('human'), Type.Literal('service')], { default: 'agent' }),
    groups: Type.Array(Name, { default: [] }),
    claims: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    tokens: Type.Array(TokenEntry, { default: [] }),
    limits: Type.Optional(
      Type.Object(
        { sessions: limitGroup({ perIdentity: SessionLimitFields.perIdentity, perToken: SessionLimitFields.perToken, idleMs: SessionLimitFields.idleMs, maxAgeMs: SessionLimitFields.maxAgeMs }) },
        { additionalProperties: false, description: "this identity's session limits, over the connection's" },
      ),
    ),
    sshKeys: Type.Array(Type.String({ pattern: '^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com) [A-Za-z0-9+/=]+( .*)?$', description: 'SSH public keys in authorized_keys form ("ssh-ed25519 AAAA… comment") that prove this identity' }), { default: [] }),
  },
  { additionalProperties: false },
)
export type Identity = Static<typeof Identity>

export const ServerTls = Type.Object(
  {
    cert: Type.String({ description: 'PEM certificate (use ${file:/path})' }),
    key: Type.String({ description: 'PEM private key (use ${file:/path})' }),
    required: Type.Boolean({ default: false, description: 'refuse clients that do not use TLS' }),
  },
  { additionalProperties: false },
)

export const StageChains = Type.Object(
  {
    authenticate: Type.Optional(Type.Array(Name)),
    parse: Type.Optional(Type.Array(Name)),
    decide: Type.Optional(Type.Array(Name)),
    record: Type.Optional(Type.Array(Name)),
    transform: Type.Optional(Type.Array(Name)),
  },
  { additionalProperties: false },
)
export type StageChains = Static<typeof StageChains>

/**
 * Limits core enforces for every adapter (docs/configuration.md, "Limits"). Set under `limits`
 * for every connection, and under a connection's own `limits` to override it there. Other keys
 * are an adapter's own limits, under its protocol name (`limits.postgres`), checked against what
 * the adapter declares.
 */
export const Limits = Type.Object(
  {
    logins: limitGroup({
      perSource: limitCount('failed logins from one address before it is locked out, for a time that doubles with each further failure', LIMIT_DEFAULTS.logins.perSource),
      perIdentity: limitCount('failed logins for one identity, from any address, before it is locked out the same way', LIMIT_DEFAULTS.logins.perIdentity),
      baseDelayMs: limitCount('the first lockout; each further failure doubles it, up to 5 min per address and 1 min per identity', LIMIT_DEFAULTS.logins.baseDelayMs),
      perConnection: limitCount('failed login attempts on one client connection before it is closed (SSH clients try several keys)', LIMIT_DEFAULTS.logins.perConnection),
    }),
    sessions: limitGroup(SessionLimitFields),
    unauthenticated: limitGroup({
      total: limitCount('connections of one listener still logging in at once; more are dropped at accept', LIMIT_DEFAULTS.unauthenticated.total),
      perSource: limitCount('of those, from one source address, so one source cannot take every slot', LIMIT_DEFAULTS.unauthenticated.perSource),
      loginTimeoutMs: limitCount('a connection that has not logged in this long after it opened is closed', LIMIT_DEFAULTS.unauthenticated.loginTimeoutMs),
    }),
  },
  { additionalProperties: Type.Record(Type.String(), Type.Unknown(), { description: "an adapter's own limits, under its protocol name (limits.postgres)" }) },
)
export type Limits = Static<typeof Limits>

export const ConnectionConfig = Type.Object(
  {
    name: Name,
    adapter: Type.String({ minLength: 1, description: 'adapter short name (postgres) or npm package name' }),
    listen: HostPort,
    tls: Type.Optional(ServerTls),
    upstream: Type.Record(Type.String(), Type.Unknown(), { description: 'adapter-specific; see the adapter README' }),
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    plugins: Type.Optional(StageChains),
    limits: Type.Optional(Limits),
  },
  { additionalProperties: false },
)
export type ConnectionConfig = Static<typeof ConnectionConfig>

export const PluginInstance = Type.Object(
  {
    use: Type.String({ minLength: 1, description: 'built-in short name or npm package name' }),
    name: Type.Optional(Name),
    config: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
)
export type PluginInstance = Static<typeof PluginInstance>

const StringList = Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })

const ActionName = Type.String({ pattern: '^[a-z][a-z0-9-]*(\\.[a-z*][a-z0-9-]*)*$', description: "an action such as sql.query or ssh.exec; a trailing '.*' matches a protocol's every action" })

export const Rule = Type.Object(
  {
    id: Type.Optional(Name),
    effect: Type.Union([Type.Literal('allow'), Type.Literal('deny'), Type.Literal('review')]),
    actions: Type.Optional(Type.Array(ActionName, { minItems: 1, description: 'actions the rule applies to; omitted = every action' })),
    match: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-zA-Z0-9_.-]*$' }), Type.Union([StringList, Type.Boolean(), Type.Array(Type.Array(Type.String(), { minItems: 1 }), { minItems: 1 })]), {
        description:
          'attribute matchers (e.g. sql.statement: [SELECT]): every key must match; a list matches when the attribute (or any of its elements) equals an entry, case-sensitively except for sql.* attributes (SQL keywords and unquoted names are case-insensitive); a list of lists (e.g. ssh.argv: [[make, build]]) matches when the attribute is a list equal to one of them, word for word and case-sensitively; true matches a present, non-empty attribute and false an absent or empty one',
      }),
    ),
    when: Type.Optional(Type.String({ minLength: 1, description: 'a CEL expression over principal, connection, request and time that must be true' })),
    allowOpaque: Type.Optional(Type.Boolean({ description: 'an allow rule that also admits code the gateway cannot analyse (a DO block in another language, dynamic SQL)' })),
    mask: Type.Optional(
      Type.Array(Type.String({ pattern: '^[^.\\s]+(\\.[^.\\s]+)*$' }), {
        minItems: 1,
        description: "for effect: allow — fields of returned documents whose values are replaced before the client sees them: dot paths, '*' for any one field name or array index (e.g. ssn, card.number, contacts.*.phone); every matching allow rule's fields are masked",
      }),
    ),
    review: Type.Optional(
      Type.Object(
        {
          approvals: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: 'distinct approvers needed (default 1); the requester is never one' })),
          timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400, description: 'how long the request waits for a decision before it is denied (default 300)' })),
        },
        { additionalProperties: false, description: 'for effect: review — how the held request is decided' },
      ),
    ),
    reason: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
)
export type Rule = Static<typeof Rule>

export const RuleSetInclude = Type.Union([
  Name,
  Type.Object(
    {
      set: Name,
      effect: Type.Optional(Type.Union([Type.Literal('deny'), Type.Literal('review')], { description: 'review holds matching requests for approval instead of denying them' })),
    },
    { additionalProperties: false },
  ),
])
export type RuleSetInclude = Static<typeof RuleSetInclude>

export const Policy = Type.Object(
  {
    id: Name,
    description: Type.Optional(Type.String()),
    principals: Type.Optional(
      Type.Object(
        {
          ids: Type.Optional(StringList),
          groups: Type.Optional(StringList),
          kinds: Type.Optional(StringList),
          claims: Type.Optional(Type.Record(Type.String({ minLength: 1 }), StringList, { description: 'claim name → accepted values; a list claim matches when any element is accepted' })),
        },
        { additionalProperties: false },
      ),
    ),
    connections: Type.Optional(StringList),
    include: Type.Optional(Type.Array(RuleSetInclude, { minItems: 1, description: 'rule sets by name (docs/policy.md): those a loaded plugin ships, and the built-in sql-outbound, sql-privilege, sql-dynamic, sql-secrets, sql-write, sql-ddl, k8s-exec, k8s-portforward, k8s-host-access, k8s-escalation, mongo-write, mongo-js, mongo-admin, mongo-cross-collection' })),
    rules: Type.Array(Rule, { default: [] }),
  },
  { additionalProperties: false },
)
export type Policy = Static<typeof Policy>

export const GatewayConfig = Type.Object(
  {
    version: Type.Optional(Type.Literal(1)),
    dataDir: Type.String({ default: './.gatehouse', description: 'where the gateway keeps state and files' }),
    log: Type.Object(
      {
        level: Type.Union(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
        format: Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], { default: 'auto', description: 'auto: one line of text per event on a terminal, JSON lines otherwise' }),
      },
      { additionalProperties: false, default: {} },
    ),
    shutdown: Type.Object(
      { graceMs: Type.Integer({ minimum: 0, default: 10000, description: 'how long sessions may finish after SIGTERM' }) },
      { additionalProperties: false, default: {} },
    ),
    admin: Type.Optional(
      Type.Object(
        {
          listen: HostPort,
          tokens: Type.Array(
            Type.Union([
              Type.String({ minLength: 8, description: 'the hash of an admin token with role admin (its caller is admin#<index>)' }),
              Type.Object(
                {
                  id: Name,
                  hash: Type.String({ minLength: 8, description: 'from `gatehouse token issue --identity <id>`' }),
                  role: Type.Union([Type.Literal('admin'), Type.Literal('approver'), Type.Literal('auditor')], { description: 'auditor reads; approver also decides reviews; admin does everything' }),
                },
                { additionalProperties: false },
              ),
            ]),
            { default: [], description: 'admin bearer tokens: hashes (role admin), or {id, hash, role} for named callers' },
          ),
          authenticate: Type.Array(Name, { default: [], description: 'authenticate-stage plugin instances (e.g. an auth-jwt) that may prove a bearer token that is not an admin token; its principal gets the highest role one of its groups has under roles' }),
          roles: Type.Object(
            {
              admin: Type.Array(Name, { default: [] }),
              approver: Type.Array(Name, { default: [] }),
              auditor: Type.Array(Name, { default: [] }),
            },
            { additionalProperties: false, default: {}, description: 'groups that hold each role, for callers proved by an authenticate plugin' },
          ),
        },
        { additionalProperties: false, description: 'the admin API: /metrics, terminal recordings, issued tokens, reviews' },
      ),
    ),
    state: Type.Union(
      [
        Type.Object(
          {
            store: Type.Literal('embedded'),
            dir: Type.Optional(Type.String({ minLength: 1, description: 'the PGlite database directory; default <dataDir>/state' })),
          },
          { additionalProperties: false },
        ),
        Type.Object(
          {
            store: Type.Literal('postgres'),
            url: Type.String({ minLength: 1, description: 'a PostgreSQL connection URI (use ${env:…} or ${file:…} for the password); the tables live in schema "gatehouse"' }),
            poolSize: Type.Integer({ minimum: 1, maximum: 100, default: 5 }),
          },
          { additionalProperties: false },
        ),
      ],
      {
        default: { store: 'embedded' },
        description: 'where issued tokens, grants, reviews and sessions are kept: embedded (PGlite under the data directory, one gateway) or a PostgreSQL shared by replicas',
      },
    ),
    identities: Type.Array(Identity, { default: [] }),
    plugins: Type.Array(PluginInstance, { default: [] }),
    limits: Type.Optional(Limits),
    connections: Type.Array(ConnectionConfig, { minItems: 1 }),
    policies: Type.Array(Policy, { default: [] }),
  },
  { additionalProperties: false, $id: 'https://gatehouse.dev/schema/gatehouse.json' },
)
export type GatewayConfig = Static<typeof GatewayConfig>

/**
 * The JSON Schema of the config file as an editor reads it (`gatehouse schema`). A field with a
 * default is optional in the file (the loader fills it in), but TypeBox lists it as required: the
 * schema the loader validates is the one after defaults. Editors see the file before them.
 */
export function editorSchema(): Record<string, unknown> {
  const relax = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(relax)
    if (node === null || typeof node !== 'object') return node
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(node)) out[k] = relax(v)
    const props = out.properties as Record<string, { default?: unknown }> | undefined
    if (props && Array.isArray(out.required)) {
      const required = (out.required as string[]).filter((name) => props[name]?.default === undefined)
      if (required.length > 0) out.required = required
      else delete out.required
    }
    return out
  }
  return { $schema: 'http://json-schema.org/draft-07/schema#', title: 'gatehouse.yaml', ...(relax(GatewayConfig) as Record<string, unknown>) }
}
