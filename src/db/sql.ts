/**
 * SQL text as it may leave the process: literal values replaced by `?` (SPEC §4, "never
 * record values"). A small scanner rather than regexes, because quoting rules (doubled quotes,
 * E'' escapes, dollar quoting, MySQL's backslash escapes) decide where a literal ends and a
 * regex gets that wrong.
 */

/**
 * Where the two dialects disagree on what is a value. PostgreSQL: `"x"` is an identifier, only
 * E'' strings know backslash escapes, `$tag$…$tag$` is a string. MySQL/MariaDB: `"x"` is a
 * string (an identifier only under ANSI_QUOTES: treating it as a value then hides a name, never
 * a value), every string knows backslash escapes, identifiers are quoted with backticks, and `#`
 * starts a comment.
 */
export type SqlDialect = 'postgresql' | 'mysql';

function isIdentChar(c: number): boolean {
  return (
    (c >= 48 && c <= 57) || // 0-9
    (c >= 65 && c <= 90) || // A-Z
    (c >= 97 && c <= 122) || // a-z
    c === 95 || // _
    c === 36 || // $
    c > 127
  );
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** End index (exclusive) of a quoted string starting at `start` (the opening quote). */
function endOfQuoted(sql: string, start: number, backslashEscapes: boolean): number {
  const quote = sql.charCodeAt(start);
  let i = start + 1;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (backslashEscapes && c === 92 /* \ */) {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (sql.charCodeAt(i + 1) === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return sql.length;
}

/**
 * `SELECT * FROM users WHERE email = 'a@b.c' AND id = 42` →
 * `SELECT * FROM users WHERE email = ? AND id = ?`. Placeholders (`$1`), identifiers (also
 * `"quoted"` ones) and keywords are kept; comments are dropped, since they can carry values too.
 */
export function sanitizeSql(sql: string, dialect: SqlDialect = 'postgresql'): string {
  const mysql = dialect === 'mysql';
  let out = '';
  let i = 0;
  let copiedUpTo = 0;
  const n = sql.length;
  const replace = (from: number, to: number, withText: string) => {
    out += sql.slice(copiedUpTo, from) + withText;
    copiedUpTo = to;
  };
  while (i < n) {
    const c = sql.charCodeAt(i);
    // -- line comment
    if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      let end = sql.indexOf('\n', i);
      if (end === -1) end = n;
      replace(i, end, '');
      i = end;
      continue;
    }
    // /* block comment */
    if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      const close = sql.indexOf('*/', i + 2);
      const end = close === -1 ? n : close + 2;
      replace(i, end, ' ');
      i = end;
      continue;
    }
    // # line comment (MySQL)
    if (mysql && c === 35) {
      let end = sql.indexOf('\n', i);
      if (end === -1) end = n;
      replace(i, end, '');
      i = end;
      continue;
    }
    // "quoted identifier" (PostgreSQL), `quoted identifier` (MySQL): kept as is.
    if ((c === 34 && !mysql) || (c === 96 && mysql)) {
      const close = sql.indexOf(mysql ? '`' : '"', i + 1);
      i = close === -1 ? n : close + 1;
      continue;
    }
    // 'string', and E'..', B'..', X'..', N'..' prefixed strings (only E'' has \ escapes in
    // PostgreSQL, all of them in MySQL); "string" in MySQL.
    if (c === 39 || (c === 34 && mysql)) {
      const prefix = i > 0 ? (sql[i - 1] as string) : '';
      const prefixed =
        c === 39 && /^[EeBbXxNn]$/.test(prefix) && (i < 2 || !isIdentChar(sql.charCodeAt(i - 2)));
      const end = endOfQuoted(sql, i, mysql || (prefixed && (prefix === 'E' || prefix === 'e')));
      replace(prefixed ? i - 1 : i, end, '?');
      i = end;
      continue;
    }
    // $tag$ dollar-quoted $tag$ strings; `$1` placeholders are kept.
    if (!mysql && c === 36 && (i === 0 || !isIdentChar(sql.charCodeAt(i - 1)))) {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (m) {
        const tag = m[0];
        const close = sql.indexOf(tag, i + tag.length);
        const end = close === -1 ? n : close + tag.length;
        replace(i, end, '?');
        i = end;
        continue;
      }
    }
    // Numbers that are not part of an identifier or a placeholder.
    if (
      (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) &&
      (i === 0 || !isIdentChar(sql.charCodeAt(i - 1)))
    ) {
      let end = i + 1;
      while (end < n) {
        const d = sql.charCodeAt(end);
        if (isDigit(d) || d === 46 || d === 95) end++;
        else if ((d === 101 || d === 69) && /[-+\d]/.test(sql[end + 1] ?? '')) end += 2;
        else break;
      }
      // 0x1F and friends.
      while (end < n && isIdentChar(sql.charCodeAt(end)) && sql.charCodeAt(end) !== 36) end++;
      replace(i, end, '?');
      i = end;
      continue;
    }
    // Skip identifiers whole, so digits inside them (`table2`) stay.
    if (isIdentChar(c)) {
      let end = i + 1;
      while (end < n && isIdentChar(sql.charCodeAt(end))) end++;
      i = end;
      continue;
    }
    i++;
  }
  return copiedUpTo === 0 ? sql : out + sql.slice(copiedUpTo);
}

const OPERATIONS = new Set([
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'MERGE',
  'WITH',
  'VALUES',
  'TABLE',
  'BEGIN',
  'START',
  'COMMIT',
  'END',
  'ROLLBACK',
  'SAVEPOINT',
  'RELEASE',
  'CREATE',
  'ALTER',
  'DROP',
  'TRUNCATE',
  'COPY',
  'EXPLAIN',
  'ANALYZE',
  'VACUUM',
  'SET',
  'SHOW',
  'RESET',
  'CALL',
  'DO',
  'LISTEN',
  'NOTIFY',
  'UNLISTEN',
  'GRANT',
  'REVOKE',
  'LOCK',
  'PREPARE',
  'EXECUTE',
  'DEALLOCATE',
  'DECLARE',
  'FETCH',
  'CLOSE',
  'DISCARD',
  'REFRESH',
  // MySQL/MariaDB
  'REPLACE',
  'USE',
  'DESCRIBE',
  'DESC',
  'LOAD',
  'RENAME',
  'OPTIMIZE',
]);

/**
 * The statement's first keyword, upper-case (`select …` → `SELECT`); anything else is `OTHER`,
 * so the `operation` label stays a small closed set whatever text the application sends.
 */
export function sqlOperation(sql: string | undefined): string {
  if (!sql) return 'OTHER';
  let i = 0;
  const n = sql.length;
  // Skip white space, comments and opening parentheses.
  for (;;) {
    while (i < n && (sql.charCodeAt(i) <= 32 || sql[i] === '(')) i++;
    if (sql.startsWith('--', i) || sql[i] === '#') {
      const nl = sql.indexOf('\n', i);
      i = nl === -1 ? n : nl + 1;
    } else if (sql.startsWith('/*', i)) {
      const close = sql.indexOf('*/', i + 2);
      i = close === -1 ? n : close + 2;
    } else break;
  }
  let end = i;
  while (end < n && end - i < 12) {
    const c = sql.charCodeAt(end) | 0x20;
    if (c < 97 || c > 122) break;
    end++;
  }
  const word = sql.slice(i, end).toUpperCase();
  return OPERATIONS.has(word) ? word : 'OTHER';
}

/** The dialect-bound form the mysql2 instrumentation's masking hook takes. */
export function sanitizeMysql(sql: string): string {
  return sanitizeSql(sql, 'mysql');
}

/**
 * A MySQL/MariaDB error message with every quoted part cut out: the server quotes the offending
 * value (`Duplicate entry '<value>' for key 'email'`, `near '<rest of the statement>' at line 1`)
 * without escaping the quotes inside it, so no quote-by-quote reading can say where the value
 * ends. Everything from the first quote to the last one becomes `?`; backtick-quoted names stay.
 */
export function sanitizeMysqlError(message: string): string {
  let first = -1;
  let last = -1;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c === 39 || c === 34) {
      if (first === -1) first = i;
      last = i;
    }
  }
  if (first === -1) return message;
  if (first === last) return `${message.slice(0, first)}?`;
  return `${message.slice(0, first)}?${message.slice(last + 1)}`;
}
