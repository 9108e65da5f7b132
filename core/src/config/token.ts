import type { InjectionToken } from 'tsyringe'
import type { GatewayConfig as Config } from './schema.js'

export type GatewayConfigRef = Readonly<Config>
/** The validated, frozen gateway config in the root container. */
export const GatewayConfig: InjectionToken<GatewayConfigRef> = Symbol.for('gatehouse.GatewayConfig')
