/**
 * The edge's status endpoint, for operators and monitoring (`tributary status --edge URL` reads it):
 *
 * - `GET /v1/status` → the status report as JSON (fields in shared/edge-status-report.ts).
 * - `GET /metrics` → every counter and gauge of the node in the Prometheus text exposition format 0.0.4
 *   (`Content-Type: text/plain; version=0.0.4; charset=utf-8`), for a Prometheus server to scrape.
 * - `GET /healthz` → `{status: "ok", edgeId, link}` while the node runs. A link that is down does not make the
 *   edge unhealthy: buffering through an outage is its job.
 *
 * Errors are JSON, `{error: {code, message}}`, as on the cloud's API: 404 for an unknown route, 500 (logged)
 * when building an answer fails.
 */
import { Hono } from 'hono';
import type { EdgeStatusReport } from '../shared/edge-status-report.ts';
import { errorMessage } from '../shared/errors.ts';
import type { RunningHttpServer } from '../shared/http-server.ts';
import { startHttpServer } from '../shared/http-server.ts';
import type { Logger } from '../shared/logger.ts';
import { silentLogger } from '../shared/logger.ts';
import type { Metrics } from '../shared/metrics.ts';

/** The content type of the Prometheus text exposition format, version 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface StatusApiOptions {
  report: () => EdgeStatusReport;
  metrics: Metrics;
  logger?: Logger;
}

export function createStatusApi(options: StatusApiOptions): Hono {
  const logger = options.logger ?? silentLogger;
  const app = new Hono();

  app.get('/healthz', (c) => {
    const report = options.report();
    return c.json({ status: 'ok', edgeId: report.edgeId, link: report.link.state });
  });

  app.get('/v1/status', (c) => c.json(options.report()));

  app.get('/metrics', (c) => c.body(options.metrics.prometheus(), 200, { 'content-type': PROMETHEUS_CONTENT_TYPE }));

  app.notFound((c) =>
    c.json({ error: { code: 'ERR_NOT_FOUND', message: `no route for ${c.req.method} ${c.req.path}; the edge serves GET /v1/status, /metrics and /healthz` } }, 404),
  );

  app.onError((err, c) => {
    logger.error('status request failed', { method: c.req.method, path: c.req.path, err });
    return c.json({ error: { code: 'ERR_INTERNAL', message: `${c.req.method} ${c.req.path} failed: ${err.message}` } }, 500);
  });

  return app;
}

/**
 * Serves the status endpoint on `host:port`; null (and nothing served) when `port` is null. The endpoint is for
 * watching the edge, not part of its data path: when its port is taken the edge runs on without it and says so in
 * a warning, rather than refusing to start and leaving its devices with nowhere to deliver.
 */
export async function startStatusServer(options: StatusApiOptions & { host: string; port: number | null }): Promise<RunningHttpServer | null> {
  if (options.port === null) return null;
  try {
    return await startHttpServer(createStatusApi(options), { host: options.host, port: options.port });
  } catch (err) {
    options.logger?.warn(`status endpoint off: ${errorMessage(err)} (config http.port, flag --http-port)`, { host: options.host, port: options.port });
    return null;
  }
}
