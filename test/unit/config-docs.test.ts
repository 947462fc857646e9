/**
 * docs/configuration.md and the settings table say the same thing: every variable of the table
 * is in one of the doc's tables with the table's default, and every variable the doc's tables
 * name is in the settings table (as fastify keeps its error codes and their docs in step).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SETTINGS } from '../../src/config';

const ROOT = join(__dirname, '..', '..', '..');

interface DocRow {
  readonly line: number;
  readonly names: string[];
  readonly defaultText: string;
}

/** Table rows whose first cell names variables: `| \`OTEL_X\`, \`OTEL_Y\` | default | meaning |`. */
function docRows(): DocRow[] {
  const text = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
  const rows: DocRow[] = [];
  text.split('\n').forEach((raw, i) => {
    if (!raw.startsWith('|')) return;
    const cells = raw.split('|').slice(1, -1);
    const names = [...(cells[0] ?? '').matchAll(/`((?:OTEL|DATALAB)_[A-Z0-9_]+)`/g)].map(
      (m) => m[1] as string,
    );
    if (names.length === 0) return;
    rows.push({ line: i + 1, names, defaultText: (cells[1] ?? '').replace(/`/g, '').trim() });
  });
  return rows;
}

describe('config: docs/configuration.md and the settings table', () => {
  const rows = docRows();
  const documented = new Map<string, DocRow>();
  for (const row of rows) for (const name of row.names) documented.set(name, row);
  const byName = new Map(SETTINGS.map((s) => [s.env, s]));

  it('finds the doc tables', () => {
    assert.ok(rows.length >= 40, `${rows.length} rows`);
    assert.ok(documented.has('OTEL_BSP_MAX_EXPORT_BATCH_SIZE'));
  });

  it('every variable of the table is documented, once, with its default', () => {
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const row of rows) {
      for (const name of row.names) {
        if (seen.has(name)) problems.push(`${name} is in two rows (line ${row.line})`);
        seen.add(name);
      }
    }
    for (const s of SETTINGS) {
      const row = documented.get(s.env);
      if (!row) {
        problems.push(`${s.env} is missing: | \`${s.env}\` | ${s.defaultText} | ${s.doc} |`);
        continue;
      }
      // A row naming a general variable and its per-signal ones states the general default; the
      // others default to the general variable.
      const [first] = row.names;
      const expected = s.env === first ? row.defaultText : [row.defaultText, first];
      if (!([] as string[]).concat(expected).includes(s.defaultText)) {
        problems.push(
          `${s.env} (line ${row.line}): the doc says ${JSON.stringify(row.defaultText)}, the table ${JSON.stringify(s.defaultText)}`,
        );
      }
    }
    assert.deepEqual(problems, []);
  });

  it('every variable the doc tables name is in the settings table', () => {
    const unknown = [...documented.keys()].filter((name) => !byName.has(name));
    assert.deepEqual(unknown, []);
  });

  it('every row of the table has a name, a default and one line of documentation', () => {
    assert.equal(byName.size, SETTINGS.length, 'no variable twice');
    for (const s of SETTINGS) {
      assert.match(s.env, /^(OTEL|DATALAB)_[A-Z0-9_]+$/);
      assert.ok(s.defaultText !== '', `${s.env}: default`);
      assert.ok(s.doc !== '' && !s.doc.includes('\n'), `${s.env}: one line`);
      assert.ok(Object.isFrozen(s), `${s.env}: frozen`);
    }
    assert.ok(Object.isFrozen(SETTINGS));
  });
});
