/**
 * Bearer tokens for the cloud's HTTP API and streams: `<dataDir>/tokens.json` (or `auth.tokensFile`), one entry per
 * token id with a name, scopes, the SHA-256 of the token's secret and an optional expiry. The cloud checks each
 * request with `check` (synchronous: a parse and one SHA-256); `tributary tokens add|remove|list` writes the file
 * (cloud/tokens-command.ts).
 */
import { join } from 'node:path';
import { generateToken, isSecretHash, isTokenId, parseToken, secretMatches } from '../shared/access-token.ts';
import { CredentialFile, CredentialStore } from '../shared/credential-file.ts';
import { UsageError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { silentLogger } from '../shared/logger.ts';
import type { CloudConfig } from './config.ts';

/** What a token may do; `admin` implies all the others. */
export const SCOPES = ['events:read', 'subscriptions:manage', 'commands:send', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export type TokenCheck =
  | { ok: true; tokenId: string; name: string; scopes: readonly Scope[] }
  | { ok: false; reason: 'missing' | 'malformed' | 'unknown' | 'expired' | 'revoked'; message: string };

export function hasScope(granted: readonly Scope[], needed: Scope): boolean {
  return granted.includes('admin') || granted.includes(needed);
}

export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** What is wrong with a token name, or undefined when it is a valid one. */
export function tokenNameProblem(name: string): string | undefined {
  if (TOKEN_NAME_PATTERN.test(name)) return undefined;
  return `invalid token name ${JSON.stringify(name)}: a token name is 1-64 letters, digits, "-", "_" or "."`;
}

/** `events:read,commands:send` → the scopes; a UsageError that lists the valid scopes for anything else. */
export function parseScopes(text: string): Scope[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new UsageError(`give at least one scope; the scopes are ${SCOPES.join(', ')}`);
  const unknown = names.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length) {
    throw new UsageError(`unknown ${unknown.length === 1 ? 'scope' : 'scopes'} ${unknown.map((s) => JSON.stringify(s)).join(', ')}; the scopes are ${SCOPES.join(', ')} (admin implies all)`);
  }
  return [...new Set(names)] as Scope[];
}

/** Where the cloud and `tributary tokens` find the tokens: `auth.tokensFile`, else `<dataDir>/tokens.json`. */
export function defaultTokensFile(config: CloudConfig): string {
  return config.auth.tokensFile ?? join(config.dataDir, 'tokens.json');
}

interface TokenEntry {
  name: string;
  scopes: Scope[];
  secretHash: string;
  createdAt: string;
  expiresAt?: string;
}

const HOW_TO_GET_ONE = 'make one with "tributary tokens add <name> --scopes <scopes>" on the cloud host';
/** Removed tokens remembered to answer "revoked" rather than "unknown"; beyond this, the oldest are forgotten. */
const MAX_REVOKED = 10_000;

export class ApiTokens extends CredentialStore<TokenEntry> {
  readonly #clock: () => number;
  /** Secret hashes of tokens removed while this process ran, by token id. */
  readonly #revoked = new Map<string, string>();
  /** Expiry times, parsed once per read of the file. */
  #expiry = new Map<string, number>();

  private constructor(file: CredentialFile<TokenEntry>, logger: Logger, clock: () => number) {
    super(file, logger, 'API tokens');
    this.#clock = clock;
    this.#index();
  }

  static async open(path: string, options: { logger?: Logger; clock?: () => number } = {}): Promise<ApiTokens> {
    const file = await CredentialFile.open<TokenEntry>(path, { parseEntry: parseTokenEntry, clock: options.clock });
    return new ApiTokens(file, options.logger ?? silentLogger, options.clock ?? Date.now);
  }

  /** Re-reads the file when it changed (at most one stat a second). A file that became invalid is logged and the tokens stay as they were. */
  async refresh(options: { force?: boolean } = {}): Promise<void> {
    const before = await this.reload(options);
    if (!before) return;
    for (const [id, entry] of before) {
      if (!this.file.has(id)) this.#remember(id, entry.secretHash);
    }
    this.#index();
  }

  /** Checks a bearer token (synchronous: it runs on every request). Messages say what to do and never hold the token. */
  check(token: string | undefined, now: number = this.#clock()): TokenCheck {
    if (token === undefined || token === '') {
      return { ok: false, reason: 'missing', message: `no API token: send "Authorization: Bearer <token>"; ${HOW_TO_GET_ONE}` };
    }
    const parsed = parseToken(token);
    if (!parsed) {
      return { ok: false, reason: 'malformed', message: 'the API token is malformed: tokens look like trb_<12 hex digits>_<43 characters>, as "tributary tokens add" printed it' };
    }
    const entry = this.file.get(parsed.id);
    if (!entry || !secretMatches(parsed.secret, entry.secretHash)) {
      const revoked = this.#revoked.get(parsed.id);
      if (!entry && revoked !== undefined && secretMatches(parsed.secret, revoked)) {
        return { ok: false, reason: 'revoked', message: `the API token ${parsed.id} has been revoked; ${HOW_TO_GET_ONE}` };
      }
      return { ok: false, reason: 'unknown', message: `the API token is not known to this cloud node (never made here, or removed); ${HOW_TO_GET_ONE}` };
    }
    const expiresAt = this.#expiry.get(parsed.id);
    if (expiresAt !== undefined && expiresAt <= now) {
      return { ok: false, reason: 'expired', message: `the API token "${entry.name}" (${parsed.id}) expired at ${entry.expiresAt}; ${HOW_TO_GET_ONE}` };
    }
    return { ok: true, tokenId: parsed.id, name: entry.name, scopes: entry.scopes };
  }

  /** Makes a token; throws a UsageError (nothing written) for a bad name, no or unknown scopes, or an expiry in the past. */
  async add(name: string, scopes: Scope[], options: { expiresAt?: Date } = {}): Promise<{ id: string; token: string }> {
    const problem = tokenNameProblem(name);
    if (problem) throw new UsageError(problem);
    const checked = parseScopes(scopes.join(','));
    const expiresAt = options.expiresAt;
    if (expiresAt !== undefined) {
      if (Number.isNaN(expiresAt.getTime())) throw new UsageError('the expiry time is not a valid date');
      if (expiresAt.getTime() <= this.#clock()) throw new UsageError(`the expiry time ${expiresAt.toISOString()} is in the past`);
    }
    const { id, token, secretHash } = generateToken();
    const entry: TokenEntry = { name, scopes: checked, secretHash, createdAt: new Date(this.#clock()).toISOString() };
    if (expiresAt !== undefined) entry.expiresAt = expiresAt.toISOString();
    await this.file.update((entries) => {
      if (entries.has(id)) throw new Error(`token id ${id} collides with an existing one; try again`);
      entries.set(id, entry);
    });
    this.#index();
    return { id, token };
  }

  /** Removes the token with this id, or every token with this name; returns how many were removed. */
  async remove(idOrName: string): Promise<number> {
    const removed = await this.file.update((entries) => {
      const ids = entries.has(idOrName) ? [idOrName] : [...entries].filter(([, e]) => e.name === idOrName).map(([id]) => id);
      return ids.map((id) => {
        const secretHash = entries.get(id)!.secretHash;
        entries.delete(id);
        return [id, secretHash] as const;
      });
    });
    for (const [id, secretHash] of removed) this.#remember(id, secretHash);
    this.#index();
    return removed.length;
  }

  list(now: number = this.#clock()): { id: string; name: string; scopes: Scope[]; createdAt: string; expiresAt?: string; expired: boolean }[] {
    return [...this.file.entries()]
      .map(([id, e]) => {
        const expiresAt = this.#expiry.get(id);
        return { id, name: e.name, scopes: [...e.scopes], createdAt: e.createdAt, ...(e.expiresAt === undefined ? {} : { expiresAt: e.expiresAt }), expired: expiresAt !== undefined && expiresAt <= now };
      })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
  }

  #remember(id: string, secretHash: string): void {
    this.#revoked.delete(id);
    this.#revoked.set(id, secretHash);
    if (this.#revoked.size > MAX_REVOKED) this.#revoked.delete(this.#revoked.keys().next().value!);
  }

  #index(): void {
    const expiry = new Map<string, number>();
    for (const [id, e] of this.file.entries()) if (e.expiresAt !== undefined) expiry.set(id, Date.parse(e.expiresAt));
    this.#expiry = expiry;
  }
}

function parseTokenEntry(id: string, raw: unknown): TokenEntry {
  if (!isTokenId(id)) throw new Error('a token id is 12 lowercase hex digits');
  const { name, scopes, secretHash, createdAt, expiresAt } = (raw ?? {}) as Partial<Record<keyof TokenEntry, unknown>>;
  if (typeof raw !== 'object' || raw === null || typeof name !== 'string' || !Array.isArray(scopes) || !isSecretHash(secretHash) || typeof createdAt !== 'string') {
    throw new Error('expected {"name": "...", "scopes": [...], "secretHash": "<64 hex>", "createdAt": "<ISO time>", "expiresAt"?: "<ISO time>"}');
  }
  const problem = tokenNameProblem(name);
  if (problem) throw new Error(problem);
  const bad = scopes.filter((s) => !(SCOPES as readonly unknown[]).includes(s));
  if (bad.length) throw new Error(`unknown scopes ${JSON.stringify(bad)}; the scopes are ${SCOPES.join(', ')}`);
  if (expiresAt !== undefined && (typeof expiresAt !== 'string' || Number.isNaN(Date.parse(expiresAt)))) {
    throw new Error(`expiresAt ${JSON.stringify(expiresAt)} is not an ISO time`);
  }
  return { name, scopes: scopes as Scope[], secretHash, createdAt, ...(expiresAt === undefined ? {} : { expiresAt }) };
}
