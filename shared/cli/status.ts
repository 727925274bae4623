/**
 * `tributary status`: what an edge node is doing, read from its status endpoint (`GET /v1/status`, see
 * edge/status-api.ts): the link to the cloud, connected devices, buffer depth per lane with bytes and oldest
 * age, rates, the time until the backlog has drained, and drops. `--json` prints the report as it came;
 * `--watch N` refreshes every N seconds until Ctrl-C; `--cloud URL` adds the cloud node's `/healthz` (sent with the API
 * token of `--token-file FILE` or `TRIBUTARY_TOKEN`, when one is given).
 *
 * Exit status: 0 when every endpoint asked answered; 1 when one is unreachable, answers with an error, or is not
 * what was asked for (one line on stderr says which and why); 2 for flags that cannot be used.
 */
import { readFile } from 'node:fs/promises';
import process from 'node:process';
import type { EdgeStatusReport } from '../edge-status-report.ts';
import { parseEdgeStatusReport } from '../edge-status-report.ts';
import { errorMessage, UsageError } from '../errors.ts';
import type { CommandSpec } from './args.ts';
import { formatHelp, parseArgs } from './args.ts';

export const DEFAULT_EDGE_STATUS_URL = 'http://127.0.0.1:8081';

export const spec: CommandSpec = {
  name: 'status',
  summary: "Show what an edge node is doing: its link to the cloud, devices, buffer per lane, rates and drops.",
  description:
    "Reads the edge's status endpoint (tributary edge --http-port, default 8081). With --json the report is\nprinted as the edge sent it; with --watch it is refreshed until Ctrl-C.",
  flags: [
    { name: 'edge', type: 'string', value: 'URL', default: DEFAULT_EDGE_STATUS_URL, help: "The edge's status endpoint." },
    { name: 'cloud', type: 'string', value: 'URL', help: "Also show the health of the cloud node whose HTTP API is at URL (e.g. http://127.0.0.1:8080)." },
    { name: 'token-file', type: 'string', value: 'FILE', help: 'File whose first line is an API token for the --cloud requests (default: the TRIBUTARY_TOKEN environment variable).' },
    { name: 'json', type: 'boolean', help: 'Print the raw JSON report (with --watch, one line per refresh).' },
    { name: 'watch', type: 'number', value: 'SECONDS', help: 'Refresh every SECONDS until Ctrl-C.' },
    { name: 'timeout', type: 'number', value: 'SECONDS', default: 5, help: 'How long to wait for an answer.' },
  ],
  examples: [
    'tributary status',
    'tributary status --edge http://gateway-7:8081 --watch 2',
    'tributary status --json | jq .buffer',
    'tributary status --cloud http://127.0.0.1:8080',
    'tributary status --cloud https://cloud.example:8443 --token-file ops.token',
  ],
};

/** Where the command writes, and what stops `--watch` (Ctrl-C when run from the command line). */
export interface StatusIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown };
  /** Ends `--watch`. */
  stop?: AbortSignal;
  /** The environment (`TRIBUTARY_TOKEN`); default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** An endpoint that cannot be reached or did not give what was asked for; the message is the whole story. */
export class StatusFetchError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StatusFetchError';
  }
}

interface Settings {
  edge: string | null;
  cloud: string | null;
  json: boolean;
  watchMs: number | null;
  timeoutMs: number;
  /** API token sent with the cloud requests. */
  token: string | null;
}

export async function main(argv: string[], io?: StatusIo): Promise<number> {
  let settings: Settings;
  try {
    const args = parseArgs(spec, argv);
    if (args.help) {
      (io?.stdout ?? process.stdout).write(formatHelp(spec));
      return 0;
    }
    settings = settingsOf(args.flags, args.positionals);
    settings.token = await tokenOf(args.flags['token-file'] as string | undefined, io?.env ?? process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    (io?.stderr ?? process.stderr).write(`tributary: ${err.message}\n`);
    return 2;
  }
  if (io) return run(settings, io);
  // From the command line: Ctrl-C ends --watch (and an answer being waited for) cleanly.
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await run(settings, { stdout: process.stdout, stderr: process.stderr, stop: stop.signal });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function settingsOf(flags: Record<string, string | number | boolean | undefined>, positionals: string[]): Settings {
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"; give the edge as --edge URL`);
  const watch = flags.watch as number | undefined;
  if (watch !== undefined && !(watch > 0)) throw new UsageError(`flag --watch takes a number of seconds greater than 0, got ${watch}`);
  const timeout = (flags.timeout as number | undefined) ?? 5;
  if (!(timeout > 0)) throw new UsageError(`flag --timeout takes a number of seconds greater than 0, got ${timeout}`);
  const cloud = flags.cloud === undefined ? null : baseUrl(String(flags.cloud), 'cloud');
  // The edge is shown unless only the cloud was asked for.
  const edge = flags.edge !== undefined || cloud === null ? baseUrl(String(flags.edge ?? DEFAULT_EDGE_STATUS_URL), 'edge') : null;
  return { edge, cloud, json: flags.json === true, watchMs: watch === undefined ? null : watch * 1000, timeoutMs: timeout * 1000, token: null };
}

/** The API token: the first line of `--token-file`, else `TRIBUTARY_TOKEN`; null for none. Never repeated in errors. */
async function tokenOf(file: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<string | null> {
  if (file === undefined) return env.TRIBUTARY_TOKEN?.trim() || null;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`flag --token-file: cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
  }
  const token = text.split(/\r?\n/, 1)[0].trim();
  if (token === '') throw new UsageError(`flag --token-file: "${file}" is empty; put the token "tributary tokens add" printed in it`);
  return token;
}

/** `host:port`, `http://host:port/` or the full `.../v1/status` URL → `http://host:port` (with any base path). */
function baseUrl(text: string, flag: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`flag --${flag} takes an http:// or https:// URL such as ${flag === 'edge' ? DEFAULT_EDGE_STATUS_URL : 'http://127.0.0.1:8080'}, got "${text}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`flag --${flag} takes an http:// or https:// URL (the node's HTTP port, not its MQTT port), got "${text}"`);
  }
  const path = url.pathname.replace(/\/+$/, '').replace(/\/(v1\/status|healthz)$/, '');
  return `${url.origin}${path}`;
}

async function run(settings: Settings, io: StatusIo): Promise<number> {
  if (settings.watchMs === null) {
    try {
      io.stdout.write(await render(settings, io.stop));
      return 0;
    } catch (err) {
      if (io.stop?.aborted) return 130;
      io.stderr.write(`tributary: ${errorMessage(err)}\n`);
      return 1;
    }
  }
  // Watching: an edge that restarts or a link that flaps is what one watches for; report and keep going.
  const clear = !settings.json && io.stdout.isTTY === true;
  while (!io.stop?.aborted) {
    try {
      const text = await render(settings, io.stop);
      io.stdout.write(clear ? `\x1b[H\x1b[2J${text}` : settings.json ? text : `${text}\n`);
    } catch (err) {
      if (io.stop?.aborted) break;
      io.stderr.write(`tributary: ${errorMessage(err)} (retrying every ${settings.watchMs / 1000} s)\n`);
    }
    await sleep(settings.watchMs, io.stop);
  }
  return 0;
}

/** One refresh: every endpoint asked for, as text (or JSON lines). */
async function render(settings: Settings, stop: AbortSignal | undefined): Promise<string> {
  const [edge, cloud] = await Promise.all([
    settings.edge === null ? null : fetchEdgeStatus(settings.edge, settings.timeoutMs, stop),
    settings.cloud === null ? null : fetchCloudHealth(settings.cloud, settings.timeoutMs, stop, settings.token ?? undefined),
  ]);
  if (settings.json) {
    if (cloud === null) return `${JSON.stringify(edge)}\n`;
    return `${JSON.stringify(edge === null ? { cloud } : { edge, cloud })}\n`;
  }
  return [edge && formatEdgeStatus(edge), cloud && formatCloudHealth(settings.cloud!, cloud)].filter(Boolean).join('\n');
}

/** `GET {base}/v1/status`, checked to be an edge's status report. */
export async function fetchEdgeStatus(base: string, timeoutMs: number, stop?: AbortSignal): Promise<EdgeStatusReport> {
  const url = `${base}/v1/status`;
  const body = await getJson(url, 'edge', timeoutMs, stop);
  try {
    return parseEdgeStatusReport(body);
  } catch (err) {
    throw new StatusFetchError(`${url} is not a Tributary edge's status endpoint (${errorMessage(err)}); give the edge's --http-port URL`);
  }
}

export interface CloudHealth {
  status: string;
  lastOffset: number;
  edges?: number;
  [field: string]: unknown;
}

/** `GET {base}/healthz` of a cloud node. */
export async function fetchCloudHealth(base: string, timeoutMs: number, stop?: AbortSignal, token?: string): Promise<CloudHealth> {
  const url = `${base}/healthz`;
  const body = (await getJson(url, 'cloud', timeoutMs, stop, token)) as Partial<CloudHealth> | null;
  if (typeof body !== 'object' || body === null || typeof body.status !== 'string' || typeof body.lastOffset !== 'number') {
    throw new StatusFetchError(`${url} is not a Tributary cloud node's health endpoint (no "status" and "lastOffset"); give the cloud's HTTP API URL`);
  }
  return body as CloudHealth;
}

async function getJson(url: string, what: 'edge' | 'cloud', timeoutMs: number, stop?: AbortSignal, token?: string): Promise<unknown> {
  const signals = [AbortSignal.timeout(timeoutMs), ...(stop ? [stop] : [])];
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.any(signals), headers });
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') throw new StatusFetchError(`the ${what} at ${url} did not answer within ${timeoutMs / 1000} s`, { cause: err });
    throw new StatusFetchError(`cannot reach the ${what} at ${url}: ${networkReason(err)}; is it running${what === 'edge' ? ' with its status endpoint on (--http-port)' : ''}?`, { cause: err });
  }
  const text = await response.text().catch(() => '');
  if (!response.ok) {
    let detail = '';
    try {
      const message = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
      if (typeof message === 'string') detail = `: ${message}`;
    } catch {
      // Not one of our JSON errors; the status line says enough.
    }
    const hint = response.status === 404 ? `; is this the ${what}'s HTTP port?` : '';
    throw new StatusFetchError(`${url} answered ${response.status} ${response.statusText}${detail}${hint}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new StatusFetchError(`${url} did not answer with JSON: it is not a Tributary ${what} (${JSON.stringify(text.slice(0, 60))})`);
  }
}

/** The low-level reason of a failed fetch: both runtimes throw "fetch failed" and put the reason in `cause`. */
function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const detail = typeof cause?.message === 'string' ? cause.message : errorMessage(err);
  if (code === 'ECONNREFUSED' || /connection refused/i.test(detail)) return 'connection refused';
  if (code === 'ENOTFOUND' || /dns error|failed to lookup/i.test(detail)) return 'no such host';
  return detail;
}

// ---- Human-readable output ----

/** The report as a compact table. */
export function formatEdgeStatus(r: EdgeStatusReport): string {
  const lines: string[] = [];
  const b = r.buffer;
  lines.push(`edge ${r.edgeId} · tributary ${r.version} · up ${duration(r.uptimeSeconds)} · ${r.time}`);
  const l = r.link;
  lines.push(row('link', `${l.state} for ${duration(l.sinceSeconds)} · ${l.url} · ${count(l.connects)} ${plural(l.connects, 'connect')} · ${count(l.inflightBatches)} ${plural(l.inflightBatches, 'batch', 'batches')} in flight`));
  if (l.lastError !== null) lines.push(row('', `last error: ${l.lastError}`));
  lines.push(row('devices', `${count(r.devices.connected)} connected`));
  const used = `${bytes(b.bytes)} of ${bytes(b.maxBytes)} (${percent(b.usedRatio)})`;
  const held = b.events === 0 ? 'empty' : `${count(b.events)} ${plural(b.events, 'event')} · ${used} · oldest ${age(b.oldestAgeSeconds)}`;
  lines.push(row('buffer', `${held} · ${b.durability}, overflow ${b.overflow}, max age ${b.maxAgeSeconds > 0 ? duration(b.maxAgeSeconds) : 'none'}`));
  lines.push('');
  const laneRows = Object.entries(b.lanes).map(([name, lane]) => [name, count(lane.events), bytes(lane.bytes), age(lane.oldestAgeSeconds)]);
  lines.push(...table(['lane', 'events', 'bytes', 'oldest'], laneRows).map((line) => `  ${line}`));
  lines.push('');
  const rt = r.rates;
  let draining = `draining ${rate(rt.drainPerSecond)}, empty in ~${duration(rt.drainEtaSeconds ?? 0)}`;
  if (rt.drainEtaSeconds === null) draining = b.events === 0 ? 'nothing to drain' : rt.forwardedPerSecond > 0 ? 'keeping pace, backlog not shrinking' : 'not draining';
  lines.push(row('rates', `accepted ${rate(rt.acceptedPerSecond)} · forwarded ${rate(rt.forwardedPerSecond)} · ${draining}`));
  const reasons = Object.entries(r.dropped).filter(([reason, n]) => reason !== 'total' && n > 0);
  lines.push(row('dropped', r.dropped.total === 0 ? 'none' : `${reasons.map(([reason, n]) => `${reason} ${count(n)}`).join(' · ')} (total ${count(r.dropped.total)})`));
  const c = r.counters;
  lines.push(
    row('totals', `accepted ${count(c.accepted)} · forwarded ${count(c.forwarded)} · rejected ${count(c.rejected)} · dead letters ${count(c.deadLetters)} · resends deduplicated ${count(c.resendsDeduplicated)}`),
  );
  if (r.commands) lines.push(row('commands', `${count(r.commands.pending)} pending`));
  return lines.join('\n') + '\n';
}

export function formatCloudHealth(base: string, h: CloudHealth): string {
  const edges = typeof h.edges === 'number' ? ` · ${count(h.edges)} ${plural(h.edges, 'edge')} connected` : '';
  return row('cloud', `${h.status} · ${base}${edges} · last offset ${count(h.lastOffset)}`) + '\n';
}

function row(label: string, text: string): string {
  return `${label.padEnd(10)}${text}`;
}

/** Columns: the first left-aligned, the others right-aligned. */
function table(head: string[], rows: string[][]): string[] {
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((cells) => cells[i].length)));
  return all.map((cells) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('   ').trimEnd());
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

function plural(n: number, one: string, many = `${one}s`): string {
  return n === 1 ? one : many;
}

function rate(perSecond: number): string {
  return `${perSecond.toLocaleString('en-US', { maximumFractionDigits: perSecond < 10 ? 1 : 0 })}/s`;
}

function percent(ratio: number): string {
  const p = ratio * 100;
  return `${p.toLocaleString('en-US', { maximumFractionDigits: p < 10 ? 1 : 0 })}%`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function age(seconds: number | null): string {
  return seconds === null ? '-' : duration(seconds);
}

/** 0.4s, 12s, 3m 05s, 2h 03m, 6d 23h. */
export function duration(seconds: number): string {
  if (seconds < 10) return `${Math.round(seconds * 10) / 10}s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d ${pad(Math.floor((s % 86_400) / 3600))}h`;
}

function sleep(ms: number, stop: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      stop?.removeEventListener('abort', done);
      resolve();
    }
    stop?.addEventListener('abort', done, { once: true });
  });
}
