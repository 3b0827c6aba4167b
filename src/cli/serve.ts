import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { sha256Hex } from '../core/digest.js';
import { checkBootstrapToken } from '../core/token-strength.js';
import { openStore } from '../store/open-store.js';
import { createServer, type Server } from 'node:http';
import { createHttpServer, sendMetrics } from '../server/http-server.js';
import { ClientAddresses } from '../server/client-address.js';
import { Drain } from '../server/drain.js';
import { Writ } from '../app/writ.js';
import { WebhookNotifier } from '../service/webhooks.js';
import { flag, parseArgs, UsageError } from './args.js';
import { settingsOf } from './settings.js';
import { federationConfigFromEnv } from './federation-env.js';
import { escalationConfigFromEnv } from './escalation-env.js';
import { auditConfigFromEnv } from './audit-env.js';
import { limitsConfigFromEnv, windowLimitFromEnv } from './limits-env.js';
import { operatorConfigFromEnv } from './operator-env.js';
import { startWarnings } from './start-warnings.js';
import { createLogger, logFormatOf, logLevelFromEnv } from './logger.js';
import { redactTokens } from '../server/http-io.js';
import { tracingFromSettings } from './tracing-env.js';

export const serveUsage = 'writ serve [--host 127.0.0.1] [--port 8080] [--data-dir .writ] [--issuer URL] [--tls-cert cert.pem --tls-key key.pem] [--gateway gateway.json] [--log-format json|pretty] [--config settings.json]';

/** `writ serve`: the service on SQLite under --data-dir, or PostgreSQL from WRIT_DATABASE_URL. */
export async function serve(argv: string[]): Promise<void> {
  const args = parseArgs(argv, { values: ['host', 'port', 'data-dir', 'issuer', 'gateway', 'log-format', 'config', 'tls-cert', 'tls-key'] });
  // the one place the settings are read: flags over the environment over --config FILE (src/config/settings.ts)
  const env = settingsOf(args);
  const logger = createLogger({ level: logLevelFromEnv(env.WRIT_LOG_LEVEL), format: logFormatOf(flag(args, 'log-format')) });
  // OpenTelemetry: loaded and on only with an OTLP endpoint (src/cli/tracing-env.ts)
  const tracing = await tracingFromSettings(env, 'writ');
  const host = env.WRIT_HOST ?? '127.0.0.1';
  const port = Number(env.WRIT_PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('`--port` must be a port number');
  const bootToken = env.WRIT_BOOTSTRAP_TOKEN || undefined;
  // a weak WRIT_BOOTSTRAP_TOKEN (under 128 bits estimated) is refused, used or not, before the store is touched
  if (bootToken !== undefined) checkBootstrapToken(bootToken);
  const dataDir = resolve(env.WRIT_DATA_DIR ?? '.writ');
  // read and checked before the store is touched: a bad certificate never half-starts the service
  const tls = tlsFromSettings(env.WRIT_TLS_CERT, env.WRIT_TLS_KEY);
  const scheme = tls ? 'https' : 'http';
  const hostForUrl = host.includes(':') ? `[${host}]` : host;
  const store = await openStore({ databaseUrl: env.WRIT_DATABASE_URL, databaseSchema: env.WRIT_DATABASE_SCHEMA, databaseUser: env.PGUSER, dataDir });
  const issuerFlag = env.WRIT_ISSUER;
  const kek = env.WRIT_KEY_ENCRYPTION_KEY || undefined;
  const writ = new Writ(store, {
    ...escalationConfigFromEnv(env),
    ...auditConfigFromEnv(env),
    ...federationConfigFromEnv(env),
    // unset: `auto` (one Cedar worker when there is a second core)
    ...limitsConfigFromEnv({ ...env, WRIT_POLICY_WORKERS: env.WRIT_POLICY_WORKERS || 'auto' }),
    ...operatorConfigFromEnv(env),
    ...(kek ? { keyEncryptionKey: kek } : {}),
    ...policyLimitsFromEnv(env),
    issuer: issuerFlag ?? `${scheme}://${hostForUrl}:${port}`,
  });
  await writ.init();
  const boot = await writ.identity.bootstrapAdmin(bootToken);
  // The token only creates the first admin of a new store. Said out loud, because the
  // next thing that fails is the operator's first command (`invalid_token`), far from here.
  const existing = !boot && bootToken !== undefined ? await writ.store.findOperatorByTokenHash(sha256Hex(bootToken)) : null;
  const ignoredBootstrap = !boot && bootToken !== undefined && (!existing || existing.disabled || existing.expiresAt <= writ.clock.now());
  writ.startBackgroundWork();
  const webhooks = await startWebhooks(writ, env);
  const drain = new Drain();
  const graceMs = shutdownMsFromEnv('WRIT_SHUTDOWN_GRACE_MS', env.WRIT_SHUTDOWN_GRACE_MS, 30_000);
  const delayMs = shutdownMsFromEnv('WRIT_SHUTDOWN_DELAY_MS', env.WRIT_SHUTDOWN_DELAY_MS, 0);
  const metricsToken = env.WRIT_METRICS_TOKEN || undefined;
  if (metricsToken !== undefined && metricsToken.length < 32) throw new UsageError('WRIT_METRICS_TOKEN must be at least 32 characters (`openssl rand -base64 32`)');
  const server = createHttpServer(writ, {
    drain,
    // a fault's message, tokens redacted; never a request's headers or body
    log: (msg, err) => logger.error({ error: redactTokens(err instanceof Error ? err.message : String(err ?? '')).slice(0, 500) }, msg),
    // the access log: one line per response, the route's template (never the raw path: ids, junk)
    onResponse: ({ req, res, route, latencyMs }) => {
      const decisionId = res.getHeader('x-writ-decision-id');
      logger.info(
        {
          method: (req.method ?? '').slice(0, 16),
          route,
          status: res.statusCode,
          latency_ms: Math.round(latencyMs * 100) / 100,
          ...(typeof decisionId === 'string' ? { decision_id: decisionId } : {}),
        },
        'request',
      );
    },
    metricsToken,
    failureLimit: windowLimitFromEnv('WRIT_FAILURE_LIMIT', env.WRIT_FAILURE_LIMIT),
    credentialFailureLimit: windowLimitFromEnv('WRIT_CREDENTIAL_FAILURE_LIMIT', env.WRIT_CREDENTIAL_FAILURE_LIMIT),
    trustedProxies: trustedProxiesFromEnv(env.WRIT_TRUSTED_PROXIES),
    ...(tls ? { tls } : {}),
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => ok());
  });
  const addr = server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  if (!issuerFlag && actualPort !== port) (writ.config as { issuer: string }).issuer = `${scheme}://${hostForUrl}:${actualPort}`;
  for (const w of startWarnings({ host, issuer: writ.config.issuer, keysSealed: kek !== undefined, tls: tls !== undefined })) console.warn(w);
  // /metrics without a token only on a listener of its own that the operator asked for
  const metricsPort = env.WRIT_METRICS_PORT ? Number(env.WRIT_METRICS_PORT) : undefined;
  let metricsServer: Server | undefined;
  if (metricsPort !== undefined) {
    if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new UsageError('WRIT_METRICS_PORT must be a port number');
    const metricsHost = env.WRIT_METRICS_HOST || '127.0.0.1';
    metricsServer = createServer((req, res) => {
      if (req.method === 'GET' && (req.url ?? '').split('?')[0] === '/metrics') return void sendMetrics(res, writ).catch(() => res.destroy());
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    });
    await new Promise<void>((ok, fail) => {
      metricsServer!.once('error', fail);
      metricsServer!.listen(metricsPort, metricsHost, () => ok());
    });
    const a = metricsServer.address();
    console.log(`writ metrics on http://${metricsHost.includes(':') ? `[${metricsHost}]` : metricsHost}:${typeof a === 'object' && a ? a.port : metricsPort}/metrics (no authentication)`);
  }
  const where = store.backend === 'sqlite' ? `SQLite at ${dataDir}/writ.db` : 'PostgreSQL';
  console.log(`writ listening on ${scheme}://${hostForUrl}:${actualPort} (issuer ${writ.config.issuer}, store: ${where})`);
  if (boot?.generated) {
    console.log(`admin operator token (shown once, store it now): ${boot.token}`);
  } else if (boot) {
    console.log('admin operator created with WRIT_BOOTSTRAP_TOKEN');
  } else if (ignoredBootstrap) {
    const which = store.backend === 'sqlite' ? `the store in ${dataDir}` : 'the database';
    console.warn(
      `writ: warning: WRIT_BOOTSTRAP_TOKEN is ignored: ${which} already has operators, and the token is not one of an active operator. ` +
        'It only creates the first admin of a new store: use the token printed when this store was created, or start on a new --data-dir.',
    );
  } else if (existing) {
    console.log('WRIT_BOOTSTRAP_TOKEN is already an operator token of this store (nothing to create)');
  }
  // The MCP gateway inside the service: every tool call is decided in-process
  // (no HTTP hop to Writ), with the same store, policy and keys.
  const gatewayConfig = env.WRIT_GATEWAY_CONFIG;
  let closeGateway = async (): Promise<void> => undefined;
  if (gatewayConfig) {
    const [{ loadGatewayConfig }, { InProcessAuthorizer }, { McpGateway }, { serveMcpHttp }] = await Promise.all([
      import('../gateway/config.js'),
      import('../gateway/authorizer.js'),
      import('../gateway/mcp-gateway.js'),
      import('../gateway/mcp-serve.js'),
    ]);
    const config = loadGatewayConfig(gatewayConfig);
    // secret references resolve in the process's environment, read here at the edge (the gateway reads none);
    // the HTTP edge checks a bound token's DPoP proof against the gateway's URL before any call (src/gateway/dpop-edge.ts)
    const gw = new McpGateway({ config, authorizer: new InProcessAuthorizer(writ, { dpopProvenAtEdge: true }), env: process.env });
    await gw.start();
    const running = await serveMcpHttp(gw, {
      host: config.listen?.host ?? host,
      port: config.listen?.port ?? 8090,
      path: config.listen?.path ?? '/mcp',
      maxSessions: config.max_sessions,
      maxSessionsPerTask: config.max_sessions_per_task,
      maxSessionsPerAgent: config.max_sessions_per_agent,
      sessionCheckSeconds: config.session_check_seconds,
      idleSeconds: config.session_idle_seconds,
      metricsToken: env.WRIT_METRICS_TOKEN || undefined,
      publicUrl: config.listen?.public_url ? `${config.listen.public_url.replace(/\/+$/, '')}${config.listen.path}` : undefined,
    });
    gw.log('listening', { url: running.url, authorizer: 'in-process' });
    console.log(`writ gateway (in-process) listening on ${running.url}`);
    closeGateway = async () => {
      await running.close();
      await gw.close();
    };
  }
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    console.error(`writ: ${signal}: draining (${drain.pending} requests in flight, grace ${graceMs} ms)`);
    const started = Date.now();
    const gatewayClosed = closeGateway().catch(() => undefined);
    const webhooksClosed = webhooks?.close().catch(() => undefined);
    metricsServer?.close();
    metricsServer?.closeAllConnections();
    void drain
      .begin(server, { graceMs, delayMs })
      .then(async (clean) => {
        // in-flight requests have their answers; what they queued is committed before the store closes
        await gatewayClosed;
        await webhooksClosed;
        await writ.close().catch(() => undefined);
        await tracing?.shutdown();
        console.error(clean ? `writ: drained in ${Date.now() - started} ms` : `writ: grace period of ${graceMs} ms over: open connections were cut`);
        process.exit(clean ? 0 : 1);
      });
    // the backstop: nothing outlives the grace period by more than a few seconds (a store that hangs on close)
    setTimeout(() => process.exit(1), graceMs + 5000).unref();
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

/** `WRIT_WEBHOOK_URL`, `WRIT_WEBHOOK_SECRET`, `WRIT_WEBHOOK_EVENTS`: webhooks from the audit log (src/service/webhooks.ts). */
async function startWebhooks(writ: Writ, env: NodeJS.ProcessEnv): Promise<WebhookNotifier | null> {
  const url = env.WRIT_WEBHOOK_URL?.trim();
  if (!url) return null;
  const secret = env.WRIT_WEBHOOK_SECRET;
  if (!secret) throw new UsageError('WRIT_WEBHOOK_URL needs WRIT_WEBHOOK_SECRET (`echo whsec_$(openssl rand -base64 32)`)');
  const events = env.WRIT_WEBHOOK_EVENTS?.split(',').map((e) => e.trim()).filter((e) => e !== '');
  const format = env.WRIT_WEBHOOK_FORMAT?.trim() || 'standard';
  if (format !== 'standard' && format !== 'slack') throw new UsageError('WRIT_WEBHOOK_FORMAT is `standard` or `slack`');
  const approvalUrl = env.WRIT_WEBHOOK_APPROVAL_URL?.trim() || undefined;
  if (approvalUrl !== undefined && format !== 'slack') throw new UsageError('WRIT_WEBHOOK_APPROVAL_URL goes with WRIT_WEBHOOK_FORMAT=slack');
  let notifier: WebhookNotifier;
  try {
    notifier = new WebhookNotifier(writ.store, {
      url,
      secret,
      ...(events && events.length > 0 ? { events } : {}),
      format,
      slack: { issuer: writ.config.issuer, ...(approvalUrl ? { approvalUrl } : {}), maskRules: writ.config.auditMaskRules },
      record: (type, data, entry) => writ.audit.securityEvent(type, 'system', data, { ...(entry.taskId ? { taskId: entry.taskId } : {}), ...(entry.agentId ? { agentId: entry.agentId } : {}) }),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  await notifier.start();
  return notifier;
}

/**
 * `--tls-cert`/`--tls-key` (`WRIT_TLS_CERT`/`WRIT_TLS_KEY`): PEM files, both or neither. The
 * pair is checked here (a key that is not the certificate's is refused at start, not at the
 * first handshake). Read once: renewing the certificate takes a restart (a rolling one behind
 * a load balancer loses nothing, README "Graceful shutdown").
 */
export function tlsFromSettings(certPath: string | undefined, keyPath: string | undefined): { cert: Buffer; key: Buffer } | undefined {
  const c = certPath?.trim() || undefined;
  const k = keyPath?.trim() || undefined;
  if (c === undefined && k === undefined) return undefined;
  if (c === undefined || k === undefined) throw new UsageError('`--tls-cert` and `--tls-key` (WRIT_TLS_CERT, WRIT_TLS_KEY) go together');
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new UsageError(`cannot read the TLS ${what} \`${path}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const cert = read(c, 'certificate');
  const key = read(k, 'key');
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    // OpenSSL's reason (`key values mismatch`, `no start line`), never the key's bytes
    throw new UsageError(`the TLS certificate and key are not usable together: ${((err as Error).message || 'invalid').slice(0, 200)}`);
  }
  return { cert, key };
}

/** `WRIT_SHUTDOWN_GRACE_MS`, `WRIT_SHUTDOWN_DELAY_MS`: milliseconds, 0 to one hour. */
export function shutdownMsFromEnv(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n > 3_600_000) throw new UsageError(`${name} must be a whole number of milliseconds from 0 to 3600000`);
  return n;
}

/** `WRIT_TRUSTED_PROXIES=10.0.0.0/8,::1`: the proxies whose `X-Forwarded-For` names the client. */
export function trustedProxiesFromEnv(value: string | undefined): string[] {
  if (!value || value.trim() === '') return [];
  const list = value.split(',').map((v) => v.trim()).filter((v) => v !== '');
  try {
    new ClientAddresses(list);
  } catch (err) {
    throw new UsageError(`WRIT_TRUSTED_PROXIES: ${(err as Error).message}`);
  }
  return list;
}

/** `WRIT_POLICY_MAX_DEPTH`, `WRIT_POLICY_MAX_TOKENS`: the policy complexity limits (src/policy/complexity.ts). */
function policyLimitsFromEnv(env: NodeJS.ProcessEnv): { policyMaxDepth?: number; policyMaxTokens?: number } {
  const out: { policyMaxDepth?: number; policyMaxTokens?: number } = {};
  for (const [name, key, max] of [['WRIT_POLICY_MAX_DEPTH', 'policyMaxDepth', 64], ['WRIT_POLICY_MAX_TOKENS', 'policyMaxTokens', 1_000_000]] as const) {
    const v = env[name];
    if (!v) continue;
    const n = Number(v);
    // past 64 Cedar's own limits come close (73 nested brackets trap it): not configurable beyond
    if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`${name} must be a whole number from 1 to ${max}`);
    out[key] = n;
  }
  return out;
}

