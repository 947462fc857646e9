/**
 * What of a Redis command may be recorded: the command name and its key, never the values
 * (SPEC §4). For commands whose first argument is not a key (AUTH's password, EVAL's script,
 * HELLO's credentials) only the name is kept.
 */
const NO_KEY_COMMANDS = new Set([
  'auth',
  'hello',
  'eval',
  'evalsha',
  'eval_ro',
  'evalsha_ro',
  'fcall',
  'fcall_ro',
  'function',
  'script',
  'config',
  'acl',
  'client',
  'migrate',
  'echo',
  'module',
  'debug',
  'ping',
  'select',
  'info',
  'multi',
  'exec',
  'discard',
  'quit',
  'cluster',
  'command',
]);

export function redisStatement(command: string, args: readonly unknown[]): string {
  const name = command.toLowerCase();
  if (args.length === 0 || NO_KEY_COMMANDS.has(name)) return name;
  const key = args[0];
  return typeof key === 'string' ? `${name} ${key}` : `${name} ?`;
}
