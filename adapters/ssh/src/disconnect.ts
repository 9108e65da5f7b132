/**
 * An SSH DISCONNECT (RFC 4253 §11.1) that carries a description. ssh2's own `disconnect` always
 * sends an empty one, and a client that is cut off without a reason cannot tell a token that
 * expired from a network fault. This builds the message with ssh2's packet writer (the one
 * internal the adapter relies on here; without it, the connection just ends).
 */
import { createRequire } from 'node:module'
import type { Connection } from 'ssh2'

export const DISCONNECT = {
  BY_APPLICATION: 11,
  TOO_MANY_CONNECTIONS: 12,
  NO_MORE_AUTH_METHODS_AVAILABLE: 14,
} as const

interface PacketWriter {
  allocStartKEX: number
  alloc(length: number, forceNew: boolean): Buffer
  finalize(packet: Buffer, force: boolean): Buffer
}

const require = createRequire(import.meta.url)
let sendPacket: ((proto: unknown, packet: Buffer, bypass: boolean) => void) | undefined
try {
  sendPacket = (require('ssh2/lib/protocol/utils.js') as { sendPacket?: typeof sendPacket }).sendPacket
} catch {
  sendPacket = undefined
}

/** Sends DISCONNECT with `reason` and `description` (printable, at most 400 bytes), then ends the connection. */
export function disconnect(client: Connection, reason: number, description: string): void {
  const proto = (client as unknown as { _protocol?: { _packetRW?: { write?: PacketWriter } } })._protocol
  const writer = proto?._packetRW?.write
  if (sendPacket && proto && writer) {
    try {
      const text = Buffer.from(description.replace(/[^\x20-\x7e]/g, '?').slice(0, 400), 'utf8')
      const start = writer.allocStartKEX
      const packet = writer.alloc(1 + 4 + 4 + text.length + 4, true)
      packet[start] = 1 // SSH_MSG_DISCONNECT
      packet.writeUInt32BE(reason, start + 1)
      packet.writeUInt32BE(text.length, start + 5)
      text.copy(packet, start + 9)
      packet.writeUInt32BE(0, start + 9 + text.length) // language tag: none
      sendPacket(proto, writer.finalize(packet, true), true)
    } catch {
      // fall through: the connection ends without a description
    }
  }
  client.end()
}
