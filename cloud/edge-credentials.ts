/**
 * The edges a cloud node accepts on its uplink: `<dataDir>/edges.json` (or `auth.edgesFile`), one entry per edge
 * id with the id and SHA-256 of its current token (shared/access-token.ts). The cloud reads it (`check` on every
 * uplink CONNECT, `refresh` to see changes); `tributary edges add|remove|list` writes it (cloud/edges-command.ts).
 */
import { join } from 'node:path';
import type { NewToken } from '../shared/access-token.ts';
import { generateToken, isSecretHash, isTokenId, parseToken, secretMatches } from '../shared/access-token.ts';
import { EDGE_ID_RULE, isEdgeId } from '../shared/command-wire.ts';
import { CredentialFile, CredentialStore } from '../shared/credential-file.ts';
import { UsageError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { silentLogger } from '../shared/logger.ts';
import type { CloudConfig } from './config.ts';

export { EDGE_ID_RULE };

/** What is wrong with `edgeId`, or undefined when it is a valid edge id. */
export function edgeIdProblem(edgeId: string): string | undefined {
  if (isEdgeId(edgeId)) return undefined;
  return `invalid edge id ${JSON.stringify(edgeId)}: an edge id is ${EDGE_ID_RULE} (as edgeId in the edge's config)`;
}

/** Where the cloud and `tributary edges` find the edges: `auth.edgesFile`, else `<dataDir>/edges.json`. */
export function defaultEdgesFile(config: CloudConfig): string {
  return config.auth.edgesFile ?? join(config.dataDir, 'edges.json');
}

export type EdgeCheck = 'ok' | 'unknown-edge' | 'malformed-token' | 'wrong-token';

interface EdgeEntry {
  tokenId: string;
  secretHash: string;
  createdAt: string;
}

export class EdgeCredentials extends CredentialStore<EdgeEntry> {
  private constructor(file: CredentialFile<EdgeEntry>, logger: Logger) {
    super(file, logger, 'edge credentials');
  }

  static async open(path: string, options: { logger?: Logger; clock?: () => number } = {}): Promise<EdgeCredentials> {
    return new EdgeCredentials(await CredentialFile.open<EdgeEntry>(path, { parseEntry: parseEdgeEntry, clock: options.clock }), options.logger ?? silentLogger);
  }

  /**
   * Re-reads the file when it changed (at most one stat a second). Returns the edge ids that were removed and
   * those whose token was replaced: their connections used a token that no longer holds. A file that became
   * invalid is logged and the edges stay as they were.
   */
  async refresh(options: { force?: boolean } = {}): Promise<string[]> {
    const before = await this.reload(options);
    if (!before) return [];
    const gone = [...before].filter(([id, entry]) => this.file.get(id)?.tokenId !== entry.tokenId).map(([id]) => id);
    if (gone.length) this.logger.info('edge credentials removed or replaced', { edges: gone.length, file: this.file.path });
    return gone;
  }

  has(edgeId: string): boolean {
    return this.file.has(edgeId);
  }

  check(edgeId: string, token: string | Buffer | undefined): EdgeCheck {
    const entry = this.file.get(edgeId);
    if (!entry) return 'unknown-edge';
    const parsed = token === undefined ? undefined : parseToken(typeof token === 'string' ? token : token.toString('utf8'));
    if (!parsed) return 'malformed-token';
    // Both compared in constant time for the secret; the id is not secret (`edges list --json` shows it).
    const matches = secretMatches(parsed.secret, entry.secretHash);
    return matches && parsed.id === entry.tokenId ? 'ok' : 'wrong-token';
  }

  /** Makes a new token for `edgeId`; an edge that has one gets a new one and the old one stops working (rotation). */
  async add(edgeId: string): Promise<{ token: string }> {
    const [added] = await this.addMany([edgeId]);
    return { token: added.token };
  }

  /** `add` for several edges with one write; throws a UsageError (nothing written) for a bad id. */
  async addMany(edgeIds: readonly string[]): Promise<{ edgeId: string; tokenId: string; token: string; replaced: boolean }[]> {
    for (const edgeId of edgeIds) {
      const problem = edgeIdProblem(edgeId);
      if (problem) throw new UsageError(problem);
    }
    const createdAt = new Date().toISOString();
    return this.file.update((entries) =>
      edgeIds.map((edgeId) => {
        const { id, token, secretHash }: NewToken = generateToken();
        const replaced = entries.has(edgeId);
        entries.set(edgeId, { tokenId: id, secretHash, createdAt });
        return { edgeId, tokenId: id, token, replaced };
      }),
    );
  }

  async remove(edgeId: string): Promise<boolean> {
    const [removed] = await this.removeMany([edgeId]);
    return removed;
  }

  /** Removes edges with one write; for each id, whether it was there. */
  async removeMany(edgeIds: readonly string[]): Promise<boolean[]> {
    return this.file.update((entries) => edgeIds.map((id) => entries.delete(id)));
  }

  list(): { edgeId: string; tokenId: string; createdAt: string }[] {
    return [...this.file.entries()]
      .map(([edgeId, entry]) => ({ edgeId, tokenId: entry.tokenId, createdAt: entry.createdAt }))
      .sort((a, b) => (a.edgeId < b.edgeId ? -1 : a.edgeId > b.edgeId ? 1 : 0));
  }
}

function parseEdgeEntry(id: string, raw: unknown): EdgeEntry {
  const problem = edgeIdProblem(id);
  if (problem) throw new Error(problem);
  const { tokenId, secretHash, createdAt } = (raw ?? {}) as Partial<Record<keyof EdgeEntry, unknown>>;
  if (typeof raw !== 'object' || raw === null || !isTokenId(tokenId) || !isSecretHash(secretHash) || typeof createdAt !== 'string') {
    throw new Error('expected {"tokenId": "<12 hex>", "secretHash": "<64 hex>", "createdAt": "<ISO time>"}');
  }
  return { tokenId, secretHash, createdAt };
}
