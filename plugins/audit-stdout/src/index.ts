/**
 * audit-stdout: audit events as JSON Lines on the gateway's standard output, for a container
 * runtime or log shipper to collect. Lines are sealed into the same hash chain as audit-jsonl,
 * so what the collector stores can be checked with `gatehouse audit verify`.
 *
 * Guarantees: lines are written in order. In `required` mode a write resolves once Node has
 * handed the line to the stream (its callback); what the reader does after is outside the
 * gateway's view, so a shipper that drops lines shows as a gap in the chain, not as an error
 * here. Default mode is best-effort. Logs go to stderr, so they never mix with these lines.
 */
import { Type, type Static } from '@sinclair/typebox'
import { constructPlugin, definePlugin, GENESIS_HASH, inject, injectable, PluginConfig, PLUGIN_API_VERSION, sealEvent, serializeAuditEvent, type AuditEvent, type AuditSink, type SinkMode } from '@gatehouse/core'

const ConfigSchema = Type.Object(
  {
    required: Type.Boolean({ default: false, description: 'refuse requests whose intent record could not be handed to stdout' }),
  },
  { additionalProperties: false },
)
type StdoutConfig = Static<typeof ConfigSchema>

/** Where lines go; the process's stdout unless a test gives another stream. */
export interface LineWriter {
  write(text: string, cb: (err?: Error | null) => void): boolean
}

@injectable()
export class StdoutSink implements AuditSink {
  readonly mode: SinkMode
  private prev = GENESIS_HASH
  private out: LineWriter = process.stdout

  constructor(@inject(PluginConfig) config: StdoutConfig) {
    this.mode = config.required ? 'required' : 'best-effort'
  }

  /** For tests: write somewhere else. */
  writeTo(out: LineWriter): void {
    this.out = out
  }

  write(event: AuditEvent): Promise<void> {
    const sealed = sealEvent(serializeAuditEvent(event), this.prev)
    this.prev = sealed.hash
    return new Promise((resolve, reject) => {
      this.out.write(`${sealed.line}\n`, (err) => (err ? reject(err) : resolve()))
    })
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}

export const plugin = definePlugin({
  name: 'audit-stdout',
  stage: 'record',
  apiVersion: PLUGIN_API_VERSION,
  configSchema: ConfigSchema,
  description: 'audit events as hash-chained JSON Lines on standard output',
  register(container, config, ctx) {
    return constructPlugin(container, StdoutSink, config, ctx)
  },
})

export default plugin
