/**
 * The shipped operations bundle (collector/), read for the tests: rule files, the Grafana
 * dashboard's panels and targets, and the Grafana variables a panel query is rendered with.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './app';
import { isMap, parseYaml, parseYamlMap, type YamlMap, type YamlValue } from './prometheus-yaml';

export const COLLECTOR = join(ROOT, 'collector');
export const RULES_DIR = join(COLLECTOR, 'rules');
export const RULE_FILES = ['recording_rules.yml', 'alert_rules.yml'];
export const DASHBOARD = join(COLLECTOR, 'grafana', 'dashboards', 'datalab-overview.json');

export function readCollectorFile(relative: string): string {
  return readFileSync(join(COLLECTOR, relative), 'utf8');
}

export function readYamlMap(relative: string): YamlMap {
  return parseYamlMap(readCollectorFile(relative));
}

export interface Rule {
  readonly file: string;
  readonly group: string;
  readonly alert?: string;
  readonly record?: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}

function stringMap(value: YamlValue | undefined, what: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isMap(value)) throw new Error(`${what} is not a mapping`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new Error(`${what}.${k} is not a string`);
    out[k] = v;
  }
  return out;
}

/** Every rule of the shipped rule files, in file order. */
export function loadRules(): Rule[] {
  const rules: Rule[] = [];
  for (const file of RULE_FILES) {
    const doc = readYamlMap(join('rules', file));
    const groups = doc.groups;
    if (!Array.isArray(groups)) throw new Error(`${file}: no groups`);
    for (const group of groups) {
      if (!isMap(group) || typeof group.name !== 'string' || !Array.isArray(group.rules)) {
        throw new Error(`${file}: malformed group`);
      }
      for (const rule of group.rules) {
        if (!isMap(rule) || typeof rule.expr !== 'string')
          throw new Error(`${file}: malformed rule`);
        rules.push({
          file,
          group: group.name,
          alert: typeof rule.alert === 'string' ? rule.alert : undefined,
          record: typeof rule.record === 'string' ? rule.record : undefined,
          expr: rule.expr.trim(),
          for: typeof rule.for === 'string' ? rule.for : undefined,
          labels: stringMap(rule.labels, `${file} ${rule.alert ?? rule.record}.labels`),
          annotations: stringMap(rule.annotations, `${file} ${rule.alert}.annotations`),
        });
      }
    }
  }
  return rules;
}

export function alertRules(): Rule[] {
  return loadRules().filter((r) => r.alert !== undefined);
}

export interface DashboardTarget {
  readonly panelId: number;
  readonly panelTitle: string;
  readonly refId: string;
  readonly expr: string;
  readonly instant: boolean;
}

export interface Dashboard {
  readonly schemaVersion: number;
  readonly uid: string;
  readonly title: string;
  readonly panels: Panel[];
  readonly templating: { list: TemplateVariable[] };
  readonly links?: { title: string; url: string }[];
  readonly [key: string]: unknown;
}

export interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { h: number; w: number; x: number; y: number };
  readonly datasource?: { type: string; uid: string };
  readonly targets?: {
    refId: string;
    expr?: string;
    instant?: boolean;
    datasource?: { type: string; uid: string };
  }[];
  readonly fieldConfig?: { defaults?: { links?: { title: string; url: string }[] } };
  readonly panels?: Panel[];
}

export interface TemplateVariable {
  readonly name: string;
  readonly type: string;
  readonly query?: unknown;
  readonly definition?: string;
  readonly allValue?: string;
  readonly multi?: boolean;
  readonly includeAll?: boolean;
  readonly datasource?: { type: string; uid: string };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}

/** Every panel, rows' nested panels included. */
export function allPanels(dashboard: Dashboard): Panel[] {
  const out: Panel[] = [];
  for (const panel of dashboard.panels) {
    out.push(panel);
    for (const nested of panel.panels ?? []) out.push(nested);
  }
  return out;
}

export function dashboardTargets(dashboard: Dashboard): DashboardTarget[] {
  const out: DashboardTarget[] = [];
  for (const panel of allPanels(dashboard)) {
    for (const target of panel.targets ?? []) {
      out.push({
        panelId: panel.id,
        panelTitle: panel.title,
        refId: target.refId,
        expr: target.expr ?? '',
        instant: target.instant === true,
      });
    }
  }
  return out;
}

/** docs/runbooks.md headings as GitHub anchors (lower case, punctuation dropped, - for spaces). */
export function markdownAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const line of markdown.split('\n')) {
    const m = /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const slug = (m[1] as string)
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    anchors.add(slug);
  }
  return anchors;
}

/** A YAML file of the bundle parsed without the mapping requirement (for sequences). */
export function readYaml(relative: string): YamlValue {
  return parseYaml(readCollectorFile(relative));
}
