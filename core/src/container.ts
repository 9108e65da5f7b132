/**
 * Sealing: all registration happens before the first listener opens. After `sealContainer`,
 * any attempt to register into the root container throws GH_ERR_CONTAINER_SEALED, so a plugin
 * cannot swap a service under running sessions. Child (session) containers stay writable.
 */
import type { DependencyContainer } from 'tsyringe'
import { GatewayError } from './errors.js'

const SEALED = Symbol.for('gatehouse.sealed')

export function sealContainer(container: DependencyContainer): void {
  const refuse = () => {
    throw new GatewayError('GH_ERR_CONTAINER_SEALED', 'the root container is sealed: register services in a plugin\'s register()')
  }
  for (const method of ['register', 'registerInstance', 'registerSingleton', 'registerType', 'reset', 'clearInstances'] as const) {
    Object.defineProperty(container, method, { value: refuse, writable: false, configurable: false })
  }
  Object.defineProperty(container, SEALED, { value: true })
}

export function isSealed(container: DependencyContainer): boolean {
  return (container as unknown as Record<symbol, unknown>)[SEALED] === true
}
