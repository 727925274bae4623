/**
 * Who may use the cloud's HTTP API: bearer tokens with scopes (RFC 6750), checked on every request.
 *
 * - The token comes in `Authorization: Bearer <token>` (§2.1). `GET /v1/stream` also takes `?access_token=`
 *   (§2.3), because a browser's `EventSource` cannot set headers; anywhere else the parameter is refused, since
 *   URLs end up in proxy and server logs. Both at once is refused too (§2: "MUST NOT use more than one method").
 * - A missing, malformed, unknown, revoked or expired token gets 401 with `WWW-Authenticate: Bearer` (§3; with
 *   `error="invalid_token"` when a token was sent); a token without the route's scope gets 403 with
 *   `error="insufficient_scope"` (§3.1). The body is `{error: {code, message}}` and says what to do; it never holds
 *   the token. Each refusal counts in `tributary_cloud_http_refused_total{reason}`.
 * - The tokens file is re-read when it changes (`ApiTokens.refresh`, at most one stat a second), so a token removed
 *   with `tributary tokens remove` stops working within a second, and an expired one at its expiry.
 * - A long-lived response (an event stream) outlives the check at its start: `watch(c)` gives it a signal that is
 *   aborted once its token is revoked or expires; open streams are checked again every second.
 * - With `auth.allowAnonymous`, a request without a token passes as anonymous; one with a token is still checked.
 */
import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import type { ApiTokens, Scope, TokenCheck } from './api-tokens.ts';
import { hasScope } from './api-tokens.ts';

export const AuthErrorCode = {
  Unauthorized: 'ERR_UNAUTHORIZED',
  Forbidden: 'ERR_FORBIDDEN',
  BadRequest: 'ERR_BAD_PARAMETER',
} as const;

export type HttpRefusal = 'missing' | 'malformed' | 'unknown' | 'expired' | 'revoked' | 'insufficient-scope' | 'token-in-query';

export interface ApiAuthOptions {
  tokens: ApiTokens;
  allowAnonymous: boolean;
  metrics: Metrics;
  logger: Logger;
  /** The clock tokens expire by (ms since the epoch). */
  now?: () => number;
  /** How often the tokens of open streams are checked again (ms). Default 1 s. */
  recheckMs?: number;
}

/** What the middleware found: the token that let the request in (undefined: anonymous). */
interface Admitted {
  token: string | undefined;
  tokenId: string | undefined;
}

interface Watched {
  token: string;
  tokenId: string;
  controller: AbortController;
}

const REALM = 'Bearer realm="tributary"';
const DEFAULT_RECHECK_MS = 1_000;

export class ApiAuth {
  readonly #o: ApiAuthOptions;
  readonly #now: () => number;
  readonly #refused = new Map<HttpRefusal, Counter>();
  readonly #admitted = new WeakMap<Request, Admitted>();
  readonly #watched = new Set<Watched>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #rechecking = false;

  constructor(options: ApiAuthOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    for (const reason of ['missing', 'malformed', 'unknown', 'expired', 'revoked', 'insufficient-scope', 'token-in-query'] as const) {
      this.#refused.set(reason, options.metrics.counter('tributary_cloud_http_refused_total', 'HTTP API requests refused for want of a valid token or scope, by reason.', { reason }));
    }
  }

  /**
   * Middleware that lets a request through only with a valid token that has `scope` (`admin` has every scope).
   * `queryToken`: the route also takes the token as `?access_token=` (event streams only).
   */
  requireScope(scope: Scope, options: { queryToken?: boolean } = {}): MiddlewareHandler {
    return async (c, next) => {
      const found = tokenOf(c, options.queryToken === true);
      if ('refusal' in found) return this.#refuse(c, found.refusal, found.message, found.status);
      if (found.token === undefined && this.#o.allowAnonymous) {
        this.#admitted.set(c.req.raw, { token: undefined, tokenId: undefined });
        await next();
        return;
      }
      await this.#o.tokens.refresh();
      const check = this.#o.tokens.check(found.token, this.#now());
      if (!check.ok) return this.#refuse(c, check.reason, check.message, 401);
      if (!hasScope(check.scopes, scope)) {
        const message = `the API token "${check.name}" (${check.tokenId}) does not have the scope "${scope}" that ${c.req.method} ${c.req.path} needs (it has ${check.scopes.join(', ')}); make a token with --scopes ${scope} (or admin)`;
        return this.#refuse(c, 'insufficient-scope', message, 403, scope);
      }
      this.#admitted.set(c.req.raw, { token: found.token, tokenId: check.tokenId });
      await next();
    };
  }

  /**
   * For a response that stays open (an event stream): a signal aborted once the token the request came in with
   * is revoked or expires. Undefined for an anonymous request (nothing to revoke).
   */
  watch(c: Context): AbortSignal | undefined {
    const admitted = this.#admitted.get(c.req.raw);
    if (!admitted?.token || !admitted.tokenId) return undefined;
    const watched: Watched = { token: admitted.token, tokenId: admitted.tokenId, controller: new AbortController() };
    this.#watched.add(watched);
    // The entry goes when the stream does, whatever ends it.
    c.req.raw.signal.addEventListener('abort', () => this.#watched.delete(watched), { once: true });
    this.#timer ??= setInterval(() => void this.#recheck(), this.#o.recheckMs ?? DEFAULT_RECHECK_MS);
    this.#timer.unref?.();
    return watched.controller.signal;
  }

  /** Stops watching open streams (the node is stopping). */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#watched.clear();
  }

  /** Ends the streams whose token no longer holds. */
  async #recheck(): Promise<void> {
    if (this.#rechecking) return;
    this.#rechecking = true;
    try {
      for (const w of this.#watched) if (w.controller.signal.aborted) this.#watched.delete(w);
      if (this.#watched.size === 0) {
        if (this.#timer) clearInterval(this.#timer);
        this.#timer = null;
        return;
      }
      await this.#o.tokens.refresh();
      const now = this.#now();
      for (const w of this.#watched) {
        const check: TokenCheck = this.#o.tokens.check(w.token, now);
        if (check.ok) continue;
        this.#watched.delete(w);
        this.#o.logger.info('event stream ended: its token no longer holds', { tokenId: w.tokenId, reason: check.reason });
        w.controller.abort();
      }
    } catch (err) {
      this.#o.logger.error('cannot check the tokens of open streams', { err });
    } finally {
      this.#rechecking = false;
    }
  }

  #refuse(c: Context, reason: HttpRefusal, message: string, status: 400 | 401 | 403, scope?: Scope): Response {
    this.#refused.get(reason)!.inc();
    this.#o.logger.debug('request refused', { method: c.req.method, path: c.req.path, reason });
    let challenge: string | undefined;
    if (status === 401) challenge = reason === 'missing' ? REALM : `${REALM}, error="invalid_token", error_description="the token is ${reason}"`;
    else if (status === 403) challenge = `${REALM}, error="insufficient_scope", scope="${scope}"`;
    const code = status === 401 ? AuthErrorCode.Unauthorized : status === 403 ? AuthErrorCode.Forbidden : AuthErrorCode.BadRequest;
    const error = status === 400 ? { code, message, parameter: 'access_token' } : { code, message };
    return c.json({ error }, status, challenge ? { 'www-authenticate': challenge } : {});
  }
}

/** The token of a request, or why the way it was sent is refused (and with which status). */
function tokenOf(c: Context, queryToken: boolean): { token: string | undefined } | { refusal: HttpRefusal; message: string; status: 400 | 401 } {
  const header = c.req.header('authorization');
  const query = c.req.queries('access_token');
  if (query !== undefined) {
    const refuse = (message: string) => ({ refusal: 'token-in-query' as const, message, status: 400 as const });
    if (!queryToken) return refuse(`${c.req.method} ${c.req.path} does not take the token as ?access_token= (only GET /v1/stream does, for browsers); send it as "Authorization: Bearer <token>"`);
    if (header !== undefined) return refuse('the token is both in the Authorization header and in ?access_token=; send it one way only (RFC 6750 §2)');
    if (query.length > 1) return refuse('query parameter "access_token" is given more than once; give it once');
    return { token: query[0] === '' ? undefined : query[0] };
  }
  if (header === undefined || header.trim() === '') return { token: undefined };
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (match) return { token: match[1] };
  return { refusal: 'malformed', message: 'the Authorization header must be "Bearer <token>" (RFC 6750); other schemes are not accepted', status: 401 };
}
