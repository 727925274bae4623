/**
 * Counters and gauges for a node, with labels. Cheap on the hot path (a counter is a number in a map entry
 * that callers keep a handle to), rendered as JSON for status and as Prometheus text exposition format.
 */
export type Labels = Record<string, string>;

export interface Counter {
  inc(by?: number): void;
  readonly value: number;
}

class CounterImpl implements Counter {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

interface Family {
  help: string;
  kind: 'counter' | 'gauge';
  series: Map<string, { labels: Labels; counter?: CounterImpl; read?: () => number }>;
}

function labelKey(labels: Labels): string {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

export class Metrics {
  readonly #families = new Map<string, Family>();

  #family(name: string, help: string, kind: Family['kind']): Family {
    let family = this.#families.get(name);
    if (!family) {
      family = { help, kind, series: new Map() };
      this.#families.set(name, family);
    }
    return family;
  }

  /** The counter `name{labels}`, created at zero on first use. Keep the handle on hot paths. */
  counter(name: string, help: string, labels: Labels = {}): Counter {
    const family = this.#family(name, help, 'counter');
    const key = labelKey(labels);
    let entry = family.series.get(key);
    if (!entry) {
      entry = { labels, counter: new CounterImpl() };
      family.series.set(key, entry);
    }
    return entry.counter!;
  }

  /** A gauge whose value is read from `read` when metrics are rendered. */
  gauge(name: string, help: string, read: () => number, labels: Labels = {}): void {
    this.#family(name, help, 'gauge').series.set(labelKey(labels), { labels, read });
  }

  /** Sum of every series of `name` (0 when it does not exist). */
  total(name: string): number {
    const family = this.#families.get(name);
    if (!family) return 0;
    let sum = 0;
    for (const s of family.series.values()) sum += s.counter ? s.counter.value : s.read!();
    return sum;
  }

  /** Whether a family `name` has been registered. */
  has(name: string): boolean {
    return this.#families.has(name);
  }

  /**
   * The series of `name` summed per value of `label` (`{overflow: 3, expired: 1}` for label `reason`); series
   * without that label count under `''`. Empty when the family does not exist.
   */
  byLabel(name: string, label: string): Record<string, number> {
    const out: Record<string, number> = {};
    const family = this.#families.get(name);
    if (!family) return out;
    for (const s of family.series.values()) {
      const key = s.labels[label] ?? '';
      out[key] = (out[key] ?? 0) + (s.counter ? s.counter.value : s.read!());
    }
    return out;
  }

  snapshot(): Record<string, number | Record<string, number>> {
    const out: Record<string, number | Record<string, number>> = {};
    for (const [name, family] of this.#families) {
      const values: Record<string, number> = {};
      for (const s of family.series.values()) {
        const key = Object.keys(s.labels).sort().map((k) => `${k}=${s.labels[k]}`).join(',');
        values[key || '_'] = s.counter ? s.counter.value : s.read!();
      }
      const keys = Object.keys(values);
      out[name] = keys.length === 1 && keys[0] === '_' ? values._ : values;
    }
    return out;
  }

  /** Prometheus text exposition format 0.0.4. */
  prometheus(): string {
    const lines: string[] = [];
    for (const [name, family] of this.#families) {
      lines.push(`# HELP ${name} ${family.help.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'))}`, `# TYPE ${name} ${family.kind}`);
      for (const s of family.series.values()) {
        const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\' + c))}"`);
        lines.push(`${name}${labels.length ? `{${labels.join(',')}}` : ''} ${s.counter ? s.counter.value : s.read!()}`);
      }
    }
    return lines.join('\n') + '\n';
  }
}
