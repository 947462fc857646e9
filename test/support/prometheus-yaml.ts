/**
 * A strict reader for the YAML subset the operations bundle (collector/) is written in, so that
 * tests can inspect the Collector, Prometheus, Alertmanager, Grafana provisioning and compose
 * files without a YAML dependency. The real tools (promtool, amtool, otelcol validate) parse the
 * same files for real where they are installed; this reader exists for the structural checks.
 *
 * Supported: block mappings and sequences (including `- key: value` items and sequences at the
 * parent key's indentation), plain, single- and double-quoted scalars, one-line flow sequences
 * and mappings, literal (`|`, `|-`, `|+`) and folded (`>`, `>-`) block scalars, comments, one
 * leading `---`. Anything else (anchors, aliases, tags, multi-line plain or flow scalars, tabs,
 * duplicate keys, several documents) throws, so a file outside the subset fails loudly rather
 * than being misread. Plain scalars that YAML 1.1 (Go's yaml.v2, used by Prometheus) and YAML
 * 1.2 read differently (`yes`, `on`, `0644`, ...) also throw: quote them.
 */
export type YamlValue =
  | string
  | number
  | boolean
  | null
  | YamlValue[]
  | { [key: string]: YamlValue };
export type YamlMap = { [key: string]: YamlValue };

interface Line {
  readonly no: number;
  readonly indent: number;
  /** The line without indentation and without a trailing comment. */
  readonly text: string;
}

export class YamlSubsetError extends Error {
  constructor(message: string, line?: number) {
    super(line === undefined ? message : `line ${line}: ${message}`);
  }
}

export function parseYaml(source: string): YamlValue {
  return new Reader(source).document();
}

/** Parses and requires a mapping at the top. */
export function parseYamlMap(source: string): YamlMap {
  const value = parseYaml(source);
  if (!isMap(value)) throw new YamlSubsetError('the document is not a mapping');
  return value;
}

export function isMap(value: YamlValue | undefined): value is YamlMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const AMBIGUOUS = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|0[0-7]+|[-+]?\d+(_\d+)+)$/;

/** Strips a trailing comment: `#` at the start or after whitespace, outside quotes. */
function stripComment(text: string, no: number): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (quote === '"' && c === '\\') i++;
      else if (c === quote) {
        if (quote === "'" && text[i + 1] === "'") i++;
        else quote = undefined;
      }
    } else if (c === '#' && (i === 0 || text[i - 1] === ' ')) {
      return text.slice(0, i).trimEnd();
    } else if ((c === '"' || c === "'") && (i === 0 || /[\s[{,:-]/.test(text[i - 1] as string))) {
      quote = c;
    }
  }
  if (quote) throw new YamlSubsetError(`unterminated ${quote} string`, no);
  return text.trimEnd();
}

class Reader {
  private readonly raw: string[];
  private pos = 0;

  constructor(source: string) {
    this.raw = source.replace(/\r\n/g, '\n').split('\n');
  }

  /** The next structural line (not blank, not comment-only), without consuming it. */
  private peek(): Line | undefined {
    while (this.pos < this.raw.length) {
      const raw = this.raw[this.pos] as string;
      const body = raw.trimStart();
      if (body === '' || body.startsWith('#')) {
        this.pos++;
        continue;
      }
      if (/^\s*\t/.test(raw)) throw new YamlSubsetError('tab indentation', this.pos + 1);
      return {
        no: this.pos + 1,
        indent: raw.length - body.length,
        text: stripComment(body, this.pos + 1),
      };
    }
    return undefined;
  }

  document(): YamlValue {
    let first = this.peek();
    if (first?.text === '---') {
      this.pos++;
      first = this.peek();
    }
    if (!first) return null;
    if (first.indent !== 0)
      throw new YamlSubsetError('document does not start at column 0', first.no);
    const value = this.block(first.indent);
    const rest = this.peek();
    if (rest) {
      throw new YamlSubsetError(
        rest.text === '---' ? 'several documents' : `unexpected content "${rest.text}"`,
        rest.no,
      );
    }
    return value;
  }

  private block(indent: number): YamlValue {
    const line = this.peek() as Line;
    return isSequenceEntry(line.text) ? this.sequence(indent) : this.mapping(indent);
  }

  private sequence(indent: number): YamlValue[] {
    const out: YamlValue[] = [];
    for (;;) {
      const line = this.peek();
      if (!line || line.indent < indent) break;
      if (line.indent > indent) throw new YamlSubsetError('bad indentation', line.no);
      if (!isSequenceEntry(line.text)) break;
      const rest = line.text.slice(1).trimStart();
      if (rest === '') {
        this.pos++;
        out.push(this.nested(indent, true));
        continue;
      }
      // `- key: value` or `- - x`: the item is a block whose first line starts after the dash.
      const inner = line.indent + (line.text.length - rest.length);
      if (isSequenceEntry(rest) || keyOf(rest, line.no) !== undefined) {
        this.raw[this.pos] =
          ' '.repeat(inner) + this.rawBody(line).slice(line.text.length - rest.length);
        out.push(this.block(inner));
        continue;
      }
      this.pos++;
      out.push(this.inlineValue(rest, indent, line.no));
    }
    return out;
  }

  /** The raw text of a line after its indentation (comment included, for block rewriting). */
  private rawBody(line: Line): string {
    return (this.raw[line.no - 1] as string).slice(line.indent);
  }

  private mapping(indent: number): YamlMap {
    const out: YamlMap = {};
    for (;;) {
      const line = this.peek();
      if (!line || line.indent < indent) break;
      if (line.indent > indent) throw new YamlSubsetError('bad indentation', line.no);
      if (isSequenceEntry(line.text)) break;
      const entry = keyOf(line.text, line.no);
      if (entry === undefined)
        throw new YamlSubsetError(`expected "key: value": ${line.text}`, line.no);
      if (Object.hasOwn(out, entry.key)) {
        throw new YamlSubsetError(`duplicate key "${entry.key}"`, line.no);
      }
      this.pos++;
      out[entry.key] =
        entry.rest === ''
          ? this.nested(indent, false)
          : this.inlineValue(entry.rest, indent, line.no);
    }
    return out;
  }

  /** The value of `key:` or `-` with nothing after it: a nested block, or null. */
  private nested(indent: number, inSequence: boolean): YamlValue {
    const next = this.peek();
    if (!next || next.indent < indent) return null;
    if (next.indent > indent) return this.block(next.indent);
    // A sequence may sit at its parent key's indentation (not inside a sequence item).
    if (!inSequence && isSequenceEntry(next.text)) return this.sequence(indent);
    return null;
  }

  private inlineValue(text: string, indent: number, no: number): YamlValue {
    if (/^[|>]/.test(text)) return this.blockScalar(text, indent, no);
    if (/^[&*!]/.test(text))
      throw new YamlSubsetError('anchors, aliases and tags are not supported', no);
    let value: YamlValue;
    if (text.startsWith('[') || text.startsWith('{')) {
      const flow = new FlowReader(text, no);
      value = flow.value();
      flow.end();
    } else {
      value = scalar(text, no);
    }
    const next = this.peek();
    if (next && next.indent > indent) {
      throw new YamlSubsetError('multi-line scalars are not supported (use | or >)', next.no);
    }
    return value;
  }

  private blockScalar(header: string, indent: number, no: number): string {
    const m = /^([|>])([-+]?)$/.exec(header);
    if (!m) throw new YamlSubsetError(`unsupported block scalar header "${header}"`, no);
    const [, style, chomp] = m;
    const lines: string[] = [];
    let contentIndent: number | undefined;
    while (this.pos < this.raw.length) {
      const raw = this.raw[this.pos] as string;
      const body = raw.trimStart();
      const lineIndent = raw.length - body.length;
      if (body === '') {
        lines.push('');
        this.pos++;
        continue;
      }
      if (contentIndent === undefined) {
        if (lineIndent <= indent) break;
        contentIndent = lineIndent;
      }
      if (lineIndent < contentIndent) {
        if (lineIndent > indent)
          throw new YamlSubsetError('bad block scalar indentation', this.pos + 1);
        break;
      }
      lines.push(raw.slice(contentIndent));
      this.pos++;
    }
    // Trailing blank lines belong to chomping, not to the content.
    let trailing = 0;
    while (lines.length > 0 && lines[lines.length - 1] === '') {
      lines.pop();
      trailing++;
    }
    let text: string;
    if (style === '|') {
      text = lines.join('\n');
    } else {
      // Folding: line breaks between normal lines become spaces, each blank line one break;
      // more-indented lines keep their breaks.
      text = lines[0] ?? '';
      let blanks = 0;
      let previous = text;
      for (const line of lines.slice(1)) {
        if (line === '') {
          blanks++;
          continue;
        }
        const literal = /^\s/.test(line) || /^\s/.test(previous);
        if (blanks > 0) text += '\n'.repeat(literal ? blanks + 1 : blanks);
        else text += literal ? '\n' : ' ';
        text += line;
        blanks = 0;
        previous = line;
      }
    }
    if (lines.length === 0) return '';
    if (chomp === '-') return text;
    if (chomp === '+') return `${text}\n${'\n'.repeat(trailing)}`;
    return `${text}\n`;
  }
}

function isSequenceEntry(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

/** `key: rest` when the line is a mapping entry (plain or quoted key), else undefined. */
function keyOf(text: string, no: number): { key: string; rest: string } | undefined {
  if (text.startsWith('"') || text.startsWith("'")) {
    const { value, end } = quoted(text, 0, no);
    const after = text.slice(end);
    const m = /^\s*:(?:\s+(.*))?$/.exec(after);
    if (!m) return undefined;
    return { key: value, rest: (m[1] ?? '').trim() };
  }
  if (/^[[{]/.test(text)) return undefined;
  const m = /^([^\s#][^#]*?)\s*:(?:\s+(.*))?$/.exec(text);
  if (!m) return undefined;
  const key = m[1] as string;
  // `a: b: c` would make the first ": " the separator; YAML forbids it in plain scalars.
  const rest = (m[2] ?? '').trim();
  if (key.includes(': ')) return undefined;
  if (/^[&*!]/.test(key))
    throw new YamlSubsetError('anchors, aliases and tags are not supported', no);
  if (/^[?]/.test(key)) throw new YamlSubsetError('complex keys are not supported', no);
  if (AMBIGUOUS.test(key)) {
    throw new YamlSubsetError(
      `key "${key}" means different things in YAML 1.1 and 1.2: quote it`,
      no,
    );
  }
  if (
    !rest.startsWith('"') &&
    !rest.startsWith("'") &&
    / #|: /.test(rest) &&
    !/^[[{|>]/.test(rest)
  ) {
    throw new YamlSubsetError(`ambiguous plain scalar "${rest}": quote it`, no);
  }
  return { key, rest };
}

function quoted(text: string, start: number, no: number): { value: string; end: number } {
  const q = text[start];
  let out = '';
  let i = start + 1;
  while (i < text.length) {
    const c = text[i] as string;
    if (q === "'") {
      if (c === "'") {
        if (text[i + 1] === "'") {
          out += "'";
          i += 2;
          continue;
        }
        return { value: out, end: i + 1 };
      }
      out += c;
      i++;
    } else {
      if (c === '"') return { value: out, end: i + 1 };
      if (c === '\\') {
        const e = text[i + 1];
        const simple: Record<string, string> = {
          '\\': '\\',
          '"': '"',
          '/': '/',
          n: '\n',
          t: '\t',
          r: '\r',
          '0': '\0',
          ' ': ' ',
        };
        if (e !== undefined && simple[e] !== undefined) {
          out += simple[e];
          i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(Number.parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else {
          throw new YamlSubsetError(`unsupported escape \\${e ?? ''}`, no);
        }
        continue;
      }
      out += c;
      i++;
    }
  }
  throw new YamlSubsetError('unterminated string', no);
}

/** A plain or quoted scalar that makes up the whole of `text`. */
function scalar(text: string, no: number): YamlValue {
  if (text.startsWith('"') || text.startsWith("'")) {
    const { value, end } = quoted(text, 0, no);
    if (text.slice(end).trim() !== '') throw new YamlSubsetError(`text after string: ${text}`, no);
    return value;
  }
  return plain(text, no);
}

function plain(text: string, no: number): YamlValue {
  if (/^[&*!%@`]/.test(text)) throw new YamlSubsetError(`unsupported plain scalar "${text}"`, no);
  if (AMBIGUOUS.test(text)) {
    throw new YamlSubsetError(`"${text}" means different things in YAML 1.1 and 1.2: quote it`, no);
  }
  if (text === '~' || text === 'null' || text === 'Null' || text === 'NULL') return null;
  if (/^(true|True|TRUE)$/.test(text)) return true;
  if (/^(false|False|FALSE)$/.test(text)) return false;
  if (/^[-+]?[0-9]+$/.test(text)) return Number(text);
  if (/^0x[0-9a-fA-F]+$/.test(text)) return Number.parseInt(text.slice(2), 16);
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
  if (/^[-+]?\.(inf|Inf|INF)$/.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  if (/^\.(nan|NaN|NAN)$/.test(text)) return Number.NaN;
  return text;
}

class FlowReader {
  private i = 0;

  constructor(
    private readonly text: string,
    private readonly no: number,
  ) {}

  private ws(): void {
    while (this.text[this.i] === ' ') this.i++;
  }

  end(): void {
    this.ws();
    if (this.i !== this.text.length) {
      throw new YamlSubsetError(`text after flow collection: ${this.text.slice(this.i)}`, this.no);
    }
  }

  value(): YamlValue {
    this.ws();
    const c = this.text[this.i];
    if (c === '[') return this.seq();
    if (c === '{') return this.map();
    if (c === '"' || c === "'") {
      const { value, end } = quoted(this.text, this.i, this.no);
      this.i = end;
      return value;
    }
    const start = this.i;
    while (this.i < this.text.length && !/[,\]}]/.test(this.text[this.i] as string)) {
      if (this.text[this.i] === ':' && this.text[this.i + 1] === ' ') break;
      this.i++;
    }
    const raw = this.text.slice(start, this.i).trim();
    if (raw === '') throw new YamlSubsetError('empty flow entry', this.no);
    if (/[[{]/.test(raw)) throw new YamlSubsetError(`bad flow scalar "${raw}"`, this.no);
    return plain(raw, this.no);
  }

  private seq(): YamlValue[] {
    this.i++;
    const out: YamlValue[] = [];
    this.ws();
    if (this.text[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.ws();
      const c = this.text[this.i];
      this.i++;
      if (c === ']') return out;
      if (c !== ',') throw new YamlSubsetError('unterminated flow sequence', this.no);
    }
  }

  private map(): YamlMap {
    this.i++;
    const out: YamlMap = {};
    this.ws();
    if (this.text[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      const key = this.value();
      if (typeof key !== 'string')
        throw new YamlSubsetError('flow mapping keys must be strings', this.no);
      this.ws();
      if (this.text[this.i] !== ':')
        throw new YamlSubsetError('expected ":" in flow mapping', this.no);
      this.i++;
      if (Object.hasOwn(out, key)) throw new YamlSubsetError(`duplicate key "${key}"`, this.no);
      out[key] = this.value();
      this.ws();
      const c = this.text[this.i];
      this.i++;
      if (c === '}') return out;
      if (c !== ',') throw new YamlSubsetError('unterminated flow mapping', this.no);
    }
  }
}
