/** Host keys for the gateway's SSH listeners (`gatehouse ssh keygen`). */
import ssh2 from 'ssh2'

/** A new Ed25519 host key pair: the private key in OpenSSH format and the public key line. */
export function generateHostKey(comment = 'gatehouse'): { privateKey: string; publicKey: string } {
  const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment })
  return { privateKey: pair.private, publicKey: pair.public }
}
