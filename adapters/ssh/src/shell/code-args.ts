/**
 * Programs that run code given as their arguments, read from standard input, from a file or from
 * another directory, and the environment variables that change what a program runs. The
 * analyzer (programs.ts) marks a command line `dynamic` when it uses any of them, and says why in
 * `dynamicReasons`: what runs is then decided by data the gateway does not see.
 *
 * Data, not code: one entry per program (by the name the command line gives), read by one
 * generic scan. Short options are letters in a bundle (`-kf` uses `f`); a long option matches
 * when the caller's spelling is a prefix of one listed, as GNU getopt accepts abbreviations
 * (`--ev` is `--eval`), which errs towards `dynamic`.
 *
 * This is a guardrail, not a proof: an entry missing here means the program's own code paths are
 * unseen. An allowlist of exact commands (`ssh.argv`) does not depend on this table.
 */

export interface CodeArgs {
  /** Short options that make the program run code it reads from elsewhere (`make -f`, `python -c`). */
  readonly short?: string
  /** Long options (without `--`) that do the same (`make --eval`, `node --require`). */
  readonly long?: readonly string[]
  /** The program interprets its operands or its standard input as code: any use runs code the gateway cannot read, except the `inert` forms. */
  readonly interpreter?: boolean
  /** A `NAME=value` operand sets a variable the program expands, and so runs (`make CC='sh -c …'`). */
  readonly assignmentOperands?: boolean
  /** Arguments that only print information and run nothing (`--version`): the whole command is inert when every argument is one. */
  readonly inert?: readonly string[]
  /** Long options are also written with one dash (`go build -toolexec`, `openssl -engine`). */
  readonly dashLong?: boolean
  /** The program takes variables from its environment as overrides (`RM='id;' make clean`): any variable the command line sets makes it dynamic. */
  readonly environment?: boolean
}

const VERSION = ['--version', '-V', '--help', '-h', '-v']

const make: CodeArgs = { short: 'fCIeE', long: ['file', 'makefile', 'directory', 'eval', 'include-dir', 'environment-overrides'], assignmentOperands: true, environment: true }
const python: CodeArgs = { interpreter: true, inert: ['--version', '-V', '--help', '-h'] }
const node: CodeArgs = { interpreter: true, inert: ['--version', '-v', '--help', '-h'] }
const perl: CodeArgs = { interpreter: true, inert: ['--version', '-v', '--help', '-h'] }
const ruby: CodeArgs = { interpreter: true, inert: ['--version', '-v', '--help', '-h'] }
const awk: CodeArgs = { interpreter: true, inert: ['--version', '-V', '--help', '-h'] }

/** By program name as written (a path such as `/usr/bin/make` is looked up by its last name). */
export const CODE_ARGS: ReadonlyMap<string, CodeArgs> = new Map<string, CodeArgs>([
  // build tools: makefiles are code (`$(shell …)`, recipes), and so are variable overrides
  ['make', make], ['gmake', make], ['bmake', make], ['remake', make],
  ['ninja', { short: 'Cf', long: [] }],
  ['cmake', { short: 'CPSD', long: ['preset'] }],
  ['meson', { short: 'C', long: [] }],
  ['mvn', { short: 'f', long: ['file', 'settings', 'global-settings'] }],
  ['gradle', { short: 'bcpI', long: ['build-file', 'settings-file', 'project-dir', 'init-script'] }],
  ['cargo', { long: ['manifest-path', 'config'], short: 'Z' }],
  ['go', { short: 'C', long: ['exec', 'toolexec', 'modfile', 'overlay'], dashLong: true }],
  ['npm', { interpreter: true, inert: VERSION }],
  ['npx', { interpreter: true, inert: VERSION }],
  ['yarn', { interpreter: true, inert: VERSION }],
  ['pnpm', { interpreter: true, inert: VERSION }],
  // programs that run a command their arguments name, in ways the wrapper table does not read
  // (found in the review of 2026-12-03: `eatmydata curl x` reported only eatmydata), and package
  // installers, which run the packages' own build and install code (setup.py, gem extensions)
  ...['parallel', 'sem', 'tmux', 'screen', 'dtach', 'socat', 'capsh', 'setpriv', 'setarch', 'linux32', 'linux64', 'prlimit', 'numactl', 'cgexec', 'runcon', 'xvfb-run',
    'dbus-launch', 'dbus-run-session', 'eatmydata', 'faketime', 'proot', 'chpst', 'daemonize', 'start-stop-daemon', 'expect', 'entr', 'bwrap', 'newgrp', 'cpulimit', 'chronic',
    'valgrind', 'toybox', 'systemd-nspawn', 'fakeroot', 'fakechroot', 'lxc-attach', 'sshpass', 'ifne', 'vipe', 'pee', 'rlwrap', 'sqlite3',
    'pip', 'pip3', 'pipx', 'uv', 'uvx', 'poetry', 'gem', 'bundle', 'composer'].map((name): [string, CodeArgs] => [name, { interpreter: true, inert: VERSION }]),
  // version control: -C / --git-dir reach another repository, whose config runs commands (core.fsmonitor, hooks)
  ['git', { short: 'C', long: ['git-dir', 'work-tree', 'exec-path', 'config-env', 'upload-pack', 'receive-pack', 'exec'] }],
  // interpreters: operands and standard input are programs
  ['python', python], ['python2', python], ['python3', python], ['pypy', python], ['pypy3', python],
  ['node', node], ['nodejs', node], ['deno', node], ['bun', node],
  ['perl', perl], ['ruby', ruby], ['irb', ruby], ['php', perl], ['lua', perl], ['luajit', perl], ['tclsh', perl], ['wish', perl], ['Rscript', perl], ['R', perl],
  ['java', { interpreter: true, inert: ['--version', '-version', '--help', '-help'] }], ['jshell', perl], ['groovy', perl], ['scala', perl], ['kotlin', perl],
  ['osascript', perl], ['pwsh', perl], ['powershell', perl],
  // text processors whose program text can run commands (awk system(), GNU sed `e`, `w`)
  ['awk', awk], ['gawk', awk], ['mawk', awk], ['nawk', awk],
  ['sed', { interpreter: true, inert: VERSION }],
  ['jq', { short: 'fL', long: ['from-file'] }],
  ['vim', { interpreter: true, inert: VERSION }], ['vi', { interpreter: true, inert: VERSION }], ['nvim', { interpreter: true, inert: VERSION }], ['ex', { interpreter: true, inert: VERSION }], ['ed', { interpreter: true, inert: VERSION }],
  ['emacs', { interpreter: true, inert: VERSION }],
  ['gdb', { interpreter: true, inert: VERSION }],
  ['man', { short: 'PH', long: ['pager', 'html'] }],
  ['rsync', { long: ['rsync-path'] }],
  // wget --use-askpass runs a program for credentials; -e/--execute and --config can set use_askpass
  ['wget', { short: 'e', long: ['execute', 'config', 'use-askpass'] }],
  // tcpdump -z runs a command on each saved file; hg --config sets hooks and aliases that run commands
  ['tcpdump', { short: 'z', long: [] }],
  ['hg', { short: 'R', long: ['config', 'repository', 'cwd'] }],
  ['crontab', { interpreter: true, inert: ['-l'] }],
  ['install', { short: 's', long: ['strip-program'] }],
  ['openssl', { long: ['engine'], dashLong: true }],
  // PKCS#11 and security key providers are shared libraries the program loads (ssh -I and
  // -o PKCS11Provider are read in programs.ts)
  ['ssh-keygen', { short: 'Dw', long: [] }],
  ['ssh-add', { short: 'sS', long: [] }],
  // clients that read commands from their standard input or a file and run shell commands among
  // them (psql `\!`, `\o |cmd`; mysql `system`, `\!`; ftp, sftp and telnet `!`), and perf,
  // which runs the command it is given (`perf stat CMD`) or scripts (`perf script`)
  ...['psql', 'mysql', 'mariadb', 'ftp', 'lftp', 'sftp', 'telnet', 'perf', 'run-parts'].map((name): [string, CodeArgs] => [name, { interpreter: true, inert: VERSION }]),
  // netcat and ncat run a program for the connection (-e, -c, --exec, --sh-exec, --lua-exec)
  ...['nc', 'netcat', 'nc.traditional', 'ncat'].map((name): [string, CodeArgs] => [name, { short: 'ec', long: ['exec', 'sh-exec', 'lua-exec'] }]),
  // zip -T tests the archive by running unzip, -TT/--unzip-command names the program instead;
  // ZIPOPT in the environment adds options
  ['zip', { short: 'T', long: ['test', 'unzip-command'], environment: true }],
  // nmap's scripts are Lua (os.execute): --script, -sC and -A run them
  ['nmap', { short: 'CA', long: ['script', 'interactive'] }],
  // dpkg runs a package's maintainer scripts, and the commands its invoke options name
  ['dpkg', { short: 'i', long: ['install', 'configure', 'triggers-only', 'pre-invoke', 'post-invoke', 'status-logger'] }],
  // apt -o sets any option, hooks included (APT::Update::Pre-Invoke, DPkg::Pre-Invoke); -c loads a configuration file
  ...['apt', 'apt-get'].map((name): [string, CodeArgs] => [name, { short: 'oc', long: ['option', 'config-file'] }]),
])

/**
 * Environment variables whose value changes which program runs or makes a program run code it
 * reads from elsewhere: a command line that sets one (`PATH=~/bin make`, `LD_PRELOAD=… make`,
 * `export MAKEFLAGS=…`) is `dynamic`. Matched against the whole name. Variables whose value
 * the analyzer reads as a script itself (`GIT_SSH_COMMAND`, `EDITOR`, `PS4`, `BASH_ENV`,
 * `BASH_FUNC_*`: programs.ts) are judged there, not here.
 */
export const CODE_ENV: readonly RegExp[] = [
  /^PATH$/, /^LD_/, /^GCONV_PATH$/, /^GLIBC_TUNABLES$/, /^MALLOC_/, /^HOSTALIASES$/, /^LOCPATH$/, /^NLSPATH$/,
  /^(SHELLOPTS|BASHOPTS|IFS|CDPATH|GLOBIGNORE|ZDOTDIR|INPUTRC)$/,
  /^(HOME|XDG_CONFIG_HOME|XDG_CONFIG_DIRS|XDG_DATA_HOME|XDG_DATA_DIRS)$/,
  /^(MAKEFLAGS|MFLAGS|GNUMAKEFLAGS|MAKEFILES|MAKELEVEL|MAKE|SHELL)$/,
  /^PYTHON/, /^PERL/, /^RUBY/, /^GEM_/, /^BUNDLE_/, /^NODE_/, /^NPM_CONFIG_/i, /^YARN_/, /^DENO_/, /^LUA_/, /^TCL/, /^R_(PROFILE|ENVIRON|LIBS)/,
  /^(JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|CLASSPATH|MAVEN_OPTS|GRADLE_OPTS|GRADLE_USER_HOME)$/,
  /^GIT_/,
  /^(CC|CXX|CPP|LD|AR|AS|CFLAGS|CXXFLAGS|CPPFLAGS|LDFLAGS|LIBS|RUSTFLAGS|RUSTC|RUSTC_WRAPPER|CARGO_.*|GOFLAGS|GOPATH|GOROOT|GOTOOLCHAIN|CGO_.*)$/,
  /^TMPDIR$/,
  /^APT_CONFIG$/,
  /^SSH_SK_PROVIDER$/,
]

/**
 * Environment variables whose value a program runs as a command. The analyzer reads a value the
 * command line gives as a script (programs.ts); the SSH session never passes one from the client.
 */
export const COMMAND_VARIABLES: ReadonlySet<string> = new Set([
  'GIT_SSH_COMMAND', 'GIT_SSH', 'GIT_PROXY_COMMAND', 'GIT_EXTERNAL_DIFF', 'GIT_EDITOR', 'GIT_SEQUENCE_EDITOR', 'GIT_PAGER', 'GIT_ASKPASS',
  'SSH_ASKPASS', 'SUDO_ASKPASS', 'EDITOR', 'VISUAL', 'PAGER', 'MANPAGER', 'SYSTEMD_PAGER', 'LESSOPEN', 'LESSCLOSE', 'BROWSER',
  'PROMPT_COMMAND', 'RSYNC_RSH', 'CVS_RSH', 'WGET_ASKPASS',
])

export const changesWhatRuns = (name: string): boolean => CODE_ENV.some((re) => re.test(name))

/**
 * Why running `program` with `args` runs code the gateway does not see, or undefined: the
 * option or operand as the caller wrote it (`make -f`, `make --ev`, `make CC=`), or that the
 * program is an interpreter.
 * `args` are literal words after quote removal (a computed word is already `dynamic`).
 */
export function codeArgsReason(program: string, args: readonly string[]): string | undefined {
  const spec = CODE_ARGS.get(program)
  if (!spec) return undefined
  if (spec.interpreter) {
    if (args.length > 0 && args.every((a) => spec.inert?.includes(a))) return undefined
    return `${program} runs code from its arguments or standard input`
  }
  let options = true
  for (const arg of args) {
    // GNU make reads `NAME=value` operands after `--` too: only options end there
    if (arg === '--') {
      options = false
      continue
    }
    if (!options) {
      if (spec.assignmentOperands && arg.includes('=')) return `${program} ${arg.split('=')[0]}=`
      continue
    }
    if (arg.startsWith('--') || (spec.dashLong && /^-[A-Za-z]{2,}/.test(arg))) {
      const name = arg.replace(/^--?/, '').split('=')[0] as string
      if (name.length > 0 && spec.long?.some((l) => l.startsWith(name))) return `${program} ${arg.split('=')[0]}`
      continue
    }
    if (arg.length > 1 && arg[0] === '-') {
      const letter = [...arg.slice(1)].find((c) => spec.short?.includes(c))
      if (letter) return `${program} -${letter}`
      continue
    }
    // any operand with `=` is an assignment to make (`CC::=…`, ` CC = …`, `.SHELLFLAGS=…`, `$(shell id)x=1`)
    if (spec.assignmentOperands && arg.includes('=')) return `${program} ${arg.split('=')[0]}=`
  }
  return undefined
}
