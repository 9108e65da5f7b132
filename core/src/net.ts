/** `127.0.0.1:5432` / `[::1]:5432` → host and port. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text)
  if (!m) throw new Error(`invalid host:port "${text}"`)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`invalid port in "${text}"`)
  return { host: (m[1] ?? m[2]) as string, port }
}
