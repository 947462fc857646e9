/**
 * Small PromQL text transformations for the operations tests: making an alert expression
 * return its signal rather than only its firing series, and resolving Grafana's template
 * variables the way Grafana does before it sends a panel's query to Prometheus.
 */

/**
 * Adds `bool` to every comparison operator outside label matchers and strings, so that
 * `rate(x[5m]) > 0.1` returns one 0/1 sample per series instead of only the series above the
 * threshold. An alert expression whose selectors match the real series then returns series
 * whether or not it would fire; one that names a metric or label wrongly still returns nothing.
 */
export function withBool(expr: string): string {
  let out = '';
  let braces = 0;
  let i = 0;
  while (i < expr.length) {
    const c = expr[i] as string;
    if (c === '"' || c === "'" || c === '`') {
      const end = stringEnd(expr, i);
      out += expr.slice(i, end);
      i = end;
      continue;
    }
    if (c === '#') {
      const nl = expr.indexOf('\n', i);
      const end = nl === -1 ? expr.length : nl;
      out += expr.slice(i, end);
      i = end;
      continue;
    }
    if (c === '{') braces++;
    if (c === '}') braces--;
    if (braces === 0) {
      const op = /^(==|!=|>=|<=|>|<)/.exec(expr.slice(i))?.[0];
      if (op) {
        out += op;
        i += op.length;
        if (!/^\s*bool\b/.test(expr.slice(i))) out += ' bool';
        continue;
      }
    }
    out += c;
    i++;
  }
  if (braces !== 0) throw new Error(`unbalanced braces in ${expr}`);
  return out;
}

function stringEnd(expr: string, start: number): number {
  const quote = expr[start];
  let i = start + 1;
  while (i < expr.length) {
    if (expr[i] === '\\' && quote !== '`') i += 2;
    else if (expr[i] === quote) return i + 1;
    else i++;
  }
  throw new Error(`unterminated string in ${expr}`);
}

export interface GrafanaVariables {
  /** Template variables by name, already formatted for PromQL (a regex for multi-value ones). */
  readonly [name: string]: string;
}

/**
 * Replaces `$name`, `${name}` and `${name:format}` (format ignored) and Grafana's built-in
 * interval variables. Throws on a variable it was not given, so that a dashboard cannot use one
 * the test does not know about.
 */
export function substituteGrafanaVariables(expr: string, vars: GrafanaVariables): string {
  return expr.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match, braced: string | undefined, bare: string | undefined) => {
      const name = (braced ?? bare) as string;
      const value = vars[name];
      if (value === undefined) throw new Error(`unknown Grafana variable ${match} in ${expr}`);
      return value;
    },
  );
}
