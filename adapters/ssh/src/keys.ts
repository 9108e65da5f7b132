/** Host keys for the gateway's SSH listeners (`gatehouse ssh keygen`). */
import ssh2 from 'ssh2'

/**
 * A new Ed25519 host key pair: the private key in OpenSSH format and the public key line.
 *
 * ssh2's generator writes a malformed OpenSSH encoding for about one key in 300 (71 of 20,000
 * measured), which ssh2 itself then refuses to load: each key is parsed back before it is handed
 * out, and a bad one is generated again.
 */
export function generateHostKey(comment = 'gatehouse'): { privateKey: string; publicKey: string } {
  for (let attempt = 0; attempt < 16; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment })
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error)) return { privateKey: pair.private, publicKey: pair.public }
  }
  throw new Error('could not generate a host key that parses')
}
