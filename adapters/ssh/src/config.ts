/** The `upstream` and `options` of an `adapter: ssh` connection. */
import { Type, type Static } from '@sinclair/typebox'

export const UpstreamConfig = Type.Object(
  {
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 22 }),
    user: Type.String({ minLength: 1, description: 'the account on the target host; callers never see its credential' }),
    privateKey: Type.Optional(Type.String({ minLength: 1, description: 'OpenSSH or PEM private key text (use ${file:…})' })),
    passphrase: Type.Optional(Type.String({ description: 'passphrase of privateKey (use ${env:…})' })),
    password: Type.Optional(Type.String({ description: 'password for the target account (use ${env:…})' })),
    hostKey: Type.String({
      pattern: '^SHA256:[A-Za-z0-9+/]{43}$',
      description: 'fingerprint of the target host key as `ssh-keygen -lf` prints it (SHA256:…); any other key is refused',
    }),
    readyTimeoutMs: Type.Integer({ minimum: 100, default: 15000 }),
  },
  { additionalProperties: false },
)
export type UpstreamConfig = Static<typeof UpstreamConfig>

export const SshOptions = Type.Object(
  {
    hostKeys: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1,
      description: 'the gateway host private keys clients see (from `gatehouse ssh keygen`; use ${file:…})',
    }),
    env: Type.Array(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*\\*?$' }), {
      default: ['LANG', 'LC_*'],
      description: 'environment variables a client may pass (a trailing * matches a prefix); others are refused',
    }),
    recordInput: Type.Boolean({ default: false, description: 'record what users type in terminal sessions (may capture secrets typed at prompts)' }),
  },
  { additionalProperties: false },
)
export type SshOptions = Static<typeof SshOptions>

/** The SSH adapter's own limits, under `limits.ssh`: validated, resolved, counted and audited by core. */
export const SshLimits = Type.Object(
  {
    sftpInFlight: Type.Integer({ minimum: 1, default: 128, description: "reads and writes one SFTP session may have at the target at once (OpenSSH's sftp keeps 64); more are answered with a failure" }),
    sftpUnreadBytes: Type.Integer({ minimum: 65536, default: 16 * 1024 * 1024, description: 'SFTP replies waiting for a client that does not read them; past this the session is ended' }),
  },
  { additionalProperties: false, default: {} },
)
export type SshLimits = Static<typeof SshLimits>
