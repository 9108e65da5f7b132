/**
 * The gateway's side: its own credential on the real API server, loaded with
 * @kubernetes/client-node (a kubeconfig, the in-cluster service account, or server + token + CA
 * from the config). The caller's credential never goes upstream.
 */
import { Agent, type RequestOptions } from 'node:https'
import { KubeConfig } from '@kubernetes/client-node'
import { GatewayError } from '@gatehouse/core'
import type { UpstreamConfig } from './config.js'

const AUTH_REFRESH_MS = 10_000

export class Upstream {
  private readonly kc = new KubeConfig()
  readonly server: URL

  constructor(config: UpstreamConfig) {
    if (config.kubeconfig !== undefined) {
      this.kc.loadFromFile(config.kubeconfig)
      if (config.context !== undefined) this.kc.setCurrentContext(config.context)
    } else if (config.inCluster) {
      this.kc.loadFromCluster()
    } else if (config.server !== undefined && config.token !== undefined) {
      this.kc.loadFromOptions({
        clusters: [{ name: 'upstream', server: config.server, ...(config.ca === undefined ? {} : { caData: Buffer.from(config.ca).toString('base64') }) }],
        users: [{ name: 'gatehouse', token: config.token }],
        contexts: [{ name: 'upstream', cluster: 'upstream', user: 'gatehouse' }],
        currentContext: 'upstream',
      })
    } else {
      throw new GatewayError('GH_ERR_CONFIG_INVALID', 'upstream: set kubeconfig, inCluster, or server and token')
    }
    const cluster = this.kc.getCurrentCluster()
    if (!cluster) throw new GatewayError('GH_ERR_CONFIG_INVALID', 'upstream: the kubeconfig has no current cluster')
    this.server = new URL(cluster.server)
    if (this.server.protocol !== 'https:') throw new GatewayError('GH_ERR_CONFIG_INVALID', `upstream: the API server must be https, not ${this.server.protocol}`)
  }

  private agent: Agent | undefined
  private auth: { header: string | undefined; at: number } | undefined

  /**
   * Options for one request to the API server: its address, a keep-alive agent with its CA and
   * the gateway's client certificate, and the gateway's Authorization header. The header is
   * read from the kubeconfig again every 10 s (a projected service-account token rotates).
   */
  async options(): Promise<RequestOptions & { headers: Record<string, string> }> {
    const now = Date.now()
    if (!this.agent || !this.auth || now - this.auth.at > AUTH_REFRESH_MS) {
      const applied: RequestOptions & { headers?: Record<string, string> } = {}
      await this.kc.applyToHTTPSOptions(applied)
      this.agent ??= new Agent({
        keepAlive: true,
        // every caller shares the gateway's credential on the API server: bounded
        maxSockets: 512,
        ...(applied.ca === undefined ? {} : { ca: applied.ca }),
        ...(applied.cert === undefined ? {} : { cert: applied.cert }),
        ...(applied.key === undefined ? {} : { key: applied.key }),
        ...(applied.servername === undefined ? {} : { servername: applied.servername }),
        ...(applied.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      })
      this.auth = { header: applied.headers?.Authorization ?? applied.headers?.authorization, at: now }
    }
    return {
      agent: this.agent,
      hostname: this.server.hostname.replace(/^\[|\]$/g, ''),
      port: this.server.port === '' ? 443 : Number(this.server.port),
      headers: this.auth.header === undefined ? {} : { authorization: this.auth.header },
    }
  }

  close(): void {
    this.agent?.destroy()
  }

  /** The server's base path (a kubeconfig server URL may carry one). */
  get basePath(): string {
    return this.server.pathname.replace(/\/$/, '')
  }
}
